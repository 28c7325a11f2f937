//! A remote service reported on a turn (a `webhook` backend's callback, or a remote agent's own
//! status webhook): the report is stored for the worker running that turn, which reads its task's
//! reports in order. Reports for a turn that is not running (finished, stopped, unknown) are
//! dropped.

use crate::context::Ctx;
use crate::event::{BackendUpdate, RemoteStatus};
use crate::ids::now_ms;
use crate::queue::inbox;

pub async fn handle_backend_update(
    ctx: &Ctx,
    inbox_id: i64,
    u: BackendUpdate,
) -> anyhow::Result<()> {
    let mut tx = ctx.db.begin().await?;
    let n = sqlx::query(
        "INSERT INTO backend_updates (task_id, kind, text, pr_url, branch, remote, at) \
         SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS \
           (SELECT 1 FROM tasks WHERE id = $1 AND state IN ('queued', 'running'))",
    )
    .bind(u.task.as_str())
    .bind(&u.kind)
    .bind(crate::db::storable(&u.text).as_ref())
    .bind(u.pr_url.as_deref())
    .bind(u.branch.as_deref())
    .bind(u.remote.as_deref())
    .bind(now_ms())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        tracing::info!(task_id = %u.task, kind = %u.kind, "report for a turn that is not running; dropped");
    }
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    Ok(())
}

/// A remote agent's status webhook names its run, not Chime's task: the running task whose
/// recorded remote run is that agent's gets the report.
pub async fn handle_remote_status(ctx: &Ctx, inbox_id: i64, s: RemoteStatus) -> anyhow::Result<()> {
    // Running turns are few; their remote runs are `<agent>` or `<agent>/<run>`.
    let running: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, remote_ref FROM tasks WHERE state = 'running' AND remote_ref IS NOT NULL",
    )
    .fetch_all(&ctx.db.pool)
    .await?;
    let task = running
        .into_iter()
        .find(|(_, r)| r.split('/').next() == Some(s.remote.as_str()))
        .map(|(id, _)| id);
    let Some(task) = task else {
        tracing::info!(remote = %s.remote, "status for no running turn; dropped");
        return inbox::complete(&ctx.db, inbox_id).await;
    };
    let u = BackendUpdate {
        task: crate::ids::TaskId::new(task),
        kind: s.kind,
        text: s.text,
        pr_url: s.pr_url,
        branch: s.branch,
        remote: Some(s.remote),
    };
    handle_backend_update(ctx, inbox_id, u).await
}
