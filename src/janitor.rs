//! Deletes rows that have done their job, so the inbox, the outbox, the job claims and what
//! editors reported and were sent do not grow without bound. The first periodic [`Job`]: one replica sweeps each hour.
//!
//! Inbox rows are kept for `worker.retention_days` after they were handled: long past any platform
//! retry (Slack retries for minutes, Linear for hours), so dedupe still holds while it matters.
//! Parked (failed) rows are kept for an operator (`chime inspect failed`).

use crate::db::Db;
use crate::ids::now_ms;
use crate::jobs::Job;
use std::time::Duration;

pub struct Janitor {
    pub retention_days: u64,
}

#[async_trait::async_trait]
impl Job for Janitor {
    fn name(&self) -> &'static str {
        "janitor"
    }

    fn every(&self) -> Duration {
        Duration::from_secs(3600)
    }

    async fn run(&self, db: &Db) -> anyhow::Result<String> {
        let (inbox, outbox) = sweep(db, self.retention_days).await?;
        if inbox + outbox > 0 {
            tracing::info!(inbox, outbox, "removed handled rows past retention");
        }
        Ok(format!("removed {inbox} inbox and {outbox} outbox rows"))
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
    // Editors' signals past every policy window (a week at most), and what editors were sent:
    // one offline for longer than retention resumes with what came after.
    for sql in [
        "DELETE FROM job_runs WHERE claimed_at < $1",
        "DELETE FROM ide_signals WHERE at < $1",
        "DELETE FROM ide_outbound WHERE created_at < $1",
    ] {
        sqlx::query(sql).bind(cutoff).execute(&db.pool).await?;
    }
    Ok((inbox, outbox))
}
