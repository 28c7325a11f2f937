//! Deletes rows that have done their job, so the inbox and outbox do not grow without bound.
//!
//! Inbox rows are kept for `worker.retention_days` after they were handled: long past any platform
//! retry (Slack retries for minutes, Linear for hours), so dedupe still holds while it matters.

use crate::db::Db;
use crate::ids::now_ms;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const EVERY: Duration = Duration::from_secs(3600);

pub async fn run(db: Db, retention_days: u64, shutdown: CancellationToken) {
    loop {
        match sweep(&db, retention_days).await {
            Ok((0, 0)) => {}
            Ok((inbox, outbox)) => {
                tracing::info!(inbox, outbox, "removed handled rows past retention")
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "retention sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

pub async fn sweep(db: &Db, retention_days: u64) -> anyhow::Result<(u64, u64)> {
    let cutoff = now_ms() - (retention_days as i64) * 86_400_000;
    let inbox = sqlx::query("DELETE FROM inbox WHERE state = 'done' AND received_at < $1")
        .bind(cutoff)
        .execute(&db.pool)
        .await?
        .rows_affected();
    let outbox =
        sqlx::query("DELETE FROM outbox WHERE state IN ('done', 'superseded') AND sent_at < $1")
            .bind(cutoff)
            .execute(&db.pool)
            .await?
            .rows_affected();
    Ok((inbox, outbox))
}
