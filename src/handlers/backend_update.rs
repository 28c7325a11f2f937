//! A `webhook` backend's service reported on a turn: the report is stored for the worker running
//! that turn, which reads its task's reports in order. Reports for a turn that is not running
//! (finished, stopped, unknown) are dropped.

use crate::context::Ctx;
use crate::event::BackendUpdate;
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
