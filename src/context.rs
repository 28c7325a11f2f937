//! What every handler and worker shares: the store, the config, templates, surfaces and backends.

use crate::backend::Backend;
use crate::config::Config;
use crate::db::Db;
use crate::event::Surface;
use crate::failure::Permanent;
use crate::reporter::Reporter;
use crate::templates::Templates;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

pub struct Ctx {
    pub db: Db,
    pub config: Arc<Config>,
    pub templates: Arc<Templates>,
    pub reporters: HashMap<Surface, Arc<dyn Reporter>>,
    pub backends: HashMap<String, Arc<dyn Backend>>,
    /// Names this process in task leases.
    pub worker_id: String,
    pub inbox_wake: Arc<Notify>,
    pub task_wake: Arc<Notify>,
    pub outbox_wake: Arc<Notify>,
}

impl Ctx {
    /// The reporter of `surface`; a [`Permanent`] error when that surface is not running here.
    pub fn reporter(&self, surface: Surface) -> anyhow::Result<&Arc<dyn Reporter>> {
        self.reporters
            .get(&surface)
            .ok_or_else(|| Permanent::SurfaceNotRunning(surface).into())
    }

    /// Wakes the workers after a commit that queued tasks or outbox rows.
    pub fn wake(&self) {
        self.task_wake.notify_one();
        self.outbox_wake.notify_waiters();
        self.outbox_wake.notify_one();
    }
}
