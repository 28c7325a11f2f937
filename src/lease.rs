//! A running task's lease: renewed from the moment of the claim until the task is finished, and
//! the signals a runner obeys (the lease was lost, someone pressed Stop, Chime is shutting down).

use crate::db::Db;
use crate::ids::TaskId;
use crate::session::{self, LeaseToken};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How often a running task renews its lease and looks for a Stop.
pub const HEARTBEAT_EVERY: Duration = Duration::from_millis(700);

/// The lease of one claim. Its heartbeat runs until [`Lease::end`], across the thread fetch, the
/// agent's run and the finish, so the lease never runs out while this runner still works on it.
pub struct Lease {
    /// Fired when the agent must stop: the lease was lost, a Stop was requested, or shutdown.
    pub cancel: CancellationToken,
    lost: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    done: CancellationToken,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Starts heartbeating the claim `token` of task `id` at once.
    pub fn start(
        db: Db,
        id: TaskId,
        token: LeaseToken,
        lease: Duration,
        abort: CancellationToken,
    ) -> Self {
        let cancel = CancellationToken::new();
        let lost = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        let done = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat_loop(
            db,
            id,
            token,
            lease,
            abort,
            cancel.clone(),
            lost.clone(),
            stopped.clone(),
            done.clone(),
        ));
        Self {
            cancel,
            lost,
            stopped,
            done,
            heartbeat,
        }
    }

    /// Another claim holds the task now (or this one could not be renewed in time).
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Someone asked to stop the task.
    pub fn stop_requested(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The flag behind [`Lease::stop_requested`], for a backend that must tell a Stop (end the
    /// remote run) from a shutdown (leave it running for the next claim to resume).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stopped.clone()
    }

    /// Stops the heartbeat; the lease then runs out unless the task was finished or released.
    pub async fn end(self) {
        self.done.cancel();
        let _ = self.heartbeat.await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn heartbeat_loop(
    db: Db,
    id: TaskId,
    token: LeaseToken,
    lease: Duration,
    abort: CancellationToken,
    cancel: CancellationToken,
    lost: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    done: CancellationToken,
) {
    let lease_ms = lease.as_millis() as i64;
    // The claim itself renewed the lease just now.
    let mut renewed = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            _ = abort.cancelled(), if !cancel.is_cancelled() => { cancel.cancel(); continue; }
            _ = done.cancelled() => return,
        }
        // A renewal that hangs (a locked or unreachable database) must not outlive the lease.
        let beat = tokio::time::timeout(lease / 2, session::heartbeat(&db, &id, &token, lease_ms));
        match beat.await {
            Ok(Ok(hb)) if !hb.still_owner => {
                tracing::warn!(task_id = %id, "the task's lease went to another claim; stopping its agent");
                lost.store(true, Ordering::SeqCst);
                cancel.cancel();
                return;
            }
            Ok(Ok(hb)) => {
                renewed = Instant::now();
                if hb.cancel_requested && !stopped.swap(true, Ordering::SeqCst) {
                    cancel.cancel();
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(task_id = %id, error = %format!("{e:#}"), "heartbeat failed")
            }
            Err(_) => tracing::warn!(task_id = %id, "heartbeat timed out"),
        }
        // Unrenewed for (nearly) a whole lease: another worker may claim it any moment, so this
        // runner steps back rather than risk two agents in one worktree.
        if renewed.elapsed() + HEARTBEAT_EVERY >= lease {
            tracing::error!(task_id = %id, "could not renew the task's lease in time; stopping its agent");
            lost.store(true, Ordering::SeqCst);
            cancel.cancel();
            return;
        }
    }
}
