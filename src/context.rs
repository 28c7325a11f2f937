//! What every handler and worker shares: the store, the config, templates, connectors and backends.

use crate::backend::Backend;
use crate::config::Config;
use crate::connector::Connectors;
use crate::db::Db;
use crate::guard::Guard;
use crate::policy::Policy;
use crate::templates::Templates;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Notify;

pub struct Ctx {
    pub db: Db,
    pub config: Arc<Config>,
    pub templates: Arc<Templates>,
    /// The output guard: every outbox row and every agent input goes through it.
    pub guard: Arc<Guard>,
    pub connectors: Arc<Connectors>,
    pub backends: HashMap<String, Arc<dyn Backend>>,
    /// The relevance policy, when suggestions are on.
    pub policy: Option<Arc<Policy>>,
    /// Names this process in task leases.
    pub worker_id: String,
    pub inbox_wake: Arc<Notify>,
    pub task_wake: Arc<Notify>,
    pub outbox_wake: Arc<Notify>,
}

impl Ctx {
    /// Wakes the workers after a commit that queued tasks or outbox rows.
    pub fn wake(&self) {
        self.task_wake.notify_one();
        self.outbox_wake.notify_waiters();
        self.outbox_wake.notify_one();
    }
}
