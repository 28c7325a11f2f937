//! Thumbs up or down on a turn's result: recorded per turn and person (pressing the other one
//! changes the vote), counted in the digest, and, for a turn a suggestion started, taught to the
//! policy once per person (a vote changed back and forth moves no threshold again).

use crate::context::Ctx;
use crate::ids::now_ms;
use crate::policy::live;
use crate::session::Task;
use sqlx::AnyConnection;

pub async fn handle(
    ctx: &Ctx,
    tx: &mut AnyConnection,
    task: &Task,
    by: &str,
    positive: bool,
) -> anyhow::Result<()> {
    let now = now_ms();
    let first = sqlx::query(
        "INSERT INTO task_feedback (task_id, user_id, positive, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $4) ON CONFLICT (task_id, user_id) DO NOTHING",
    )
    .bind(task.id.as_str())
    .bind(by)
    .bind(i64::from(positive))
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !first {
        sqlx::query(
            "UPDATE task_feedback SET positive = $1, updated_at = $2 WHERE task_id = $3 AND user_id = $4",
        )
        .bind(i64::from(positive))
        .bind(now)
        .bind(task.id.as_str())
        .bind(by)
        .execute(&mut *tx)
        .await?;
    }
    tracing::info!(task_id = %task.id, by, positive, first, "feedback on a result");
    let Some(policy) = ctx.policy.as_ref().filter(|_| first) else {
        return Ok(());
    };
    let offered: Option<(String, String)> =
        sqlx::query_as("SELECT place, action FROM suggestions WHERE task_id = $1")
            .bind(task.id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
    if let Some((place, action)) = offered {
        live::learn(tx, policy, &place, &action, positive).await?;
    }
    Ok(())
}
