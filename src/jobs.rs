//! Periodic work shared by every replica: each period of a [`Job`] is claimed with a row unique on
//! (job, period) in `job_runs`, so exactly one replica runs it however many tick. The janitor is
//! the first job; the weekly digest will be the second.

use crate::db::Db;
use crate::ids::now_ms;
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A piece of periodic work.
#[async_trait::async_trait]
pub trait Job: Send + Sync {
    /// Names the job in `job_runs` and in logs; never change it once released.
    fn name(&self) -> &'static str;
    /// Length of one period: periods are counted from the Unix epoch, so every replica agrees on
    /// which one it is.
    fn every(&self) -> Duration;
    /// Does the work of one period; returns a one-line summary kept on the claim row.
    async fn run(&self, db: &Db) -> anyhow::Result<String>;
}

/// The period `at_ms` falls in.
pub fn period_of(job: &dyn Job, at_ms: i64) -> i64 {
    at_ms / (job.every().as_millis().max(1) as i64)
}

/// Claims `period` of `job` for `owner` and, if this call won the claim, runs it. Returns whether
/// it ran. A run that fails keeps its claim (with the error): the period is not run twice, and the
/// next period tries again.
pub async fn tick(db: &Db, owner: &str, job: &dyn Job, period: i64) -> anyhow::Result<bool> {
    let claimed = sqlx::query(
        "INSERT INTO job_runs (job, period, claimed_by, claimed_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (job, period) DO NOTHING",
    )
    .bind(job.name())
    .bind(period)
    .bind(owner)
    .bind(now_ms())
    .execute(&db.pool)
    .await
    .with_context(|| format!("claiming period {period} of job {}", job.name()))?
    .rows_affected()
        == 1;
    if !claimed {
        return Ok(false);
    }
    let (result, error) = match job.run(db).await {
        Ok(summary) => (Some(summary), None),
        Err(e) => {
            tracing::warn!(job = job.name(), period, error = %format!("{e:#}"), "periodic job failed; the next period tries again");
            (None, Some(format!("{e:#}")))
        }
    };
    sqlx::query(
        "UPDATE job_runs SET finished_at = $1, result = $2, error = $3 WHERE job = $4 AND period = $5",
    )
    .bind(now_ms())
    .bind(result)
    .bind(error)
    .bind(job.name())
    .bind(period)
    .execute(&db.pool)
    .await
    .context("recording a job run")?;
    Ok(true)
}

/// Ticks every job once at start and then each minute until `shutdown`: a period that started
/// while no replica was up is still run, once, by the first to tick in it.
pub async fn run(db: Db, owner: String, jobs: Vec<Arc<dyn Job>>, shutdown: CancellationToken) {
    const TICK: Duration = Duration::from_secs(60);
    loop {
        for job in &jobs {
            let period = period_of(job.as_ref(), now_ms());
            if let Err(e) = tick(&db, &owner, job.as_ref(), period).await {
                tracing::warn!(job = job.name(), error = %format!("{e:#}"), "could not tick a periodic job");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
