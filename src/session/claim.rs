//! Handing tasks to workers: a claim under a lease token, its heartbeat, recording how the agent's
//! run ended, and finishing the task exactly once.

use super::{get_task, Task, TaskState};
use crate::backend::Outcome;
use crate::binding::BadValue;
use crate::db::{storable, Db};
use crate::ids::{now_ms, TaskId};
use anyhow::Context;
use sqlx::{AnyConnection, Row as _};

/// One claim of a task: the token that proves it is still this runner's, and the state its agent
/// already reached if an earlier claim recorded one (then the agent must not run again).
#[derive(Debug)]
pub struct Claim {
    pub task: Task,
    pub token: LeaseToken,
    pub recorded: Option<TaskState>,
}

/// Names one claim of a task. Every claim writes a fresh one, so a runner whose lease ran out and
/// was claimed again (by another replica or by this same process) no longer matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseToken(String);

impl LeaseToken {
    fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The remote run (a cloud agent's) an earlier claim of this task recorded, if any.
pub async fn remote_ref(db: &Db, task: &TaskId) -> anyhow::Result<Option<String>> {
    let r: Option<Option<String>> =
        sqlx::query_scalar("SELECT remote_ref FROM tasks WHERE id = $1")
            .bind(task.as_str())
            .fetch_optional(&db.pool)
            .await
            .context("reading a task's remote run")?;
    Ok(r.flatten())
}

/// Records the remote run this claim started, if the claim still holds the task.
pub async fn record_remote(
    db: &Db,
    task: &TaskId,
    token: &LeaseToken,
    remote: &str,
) -> anyhow::Result<bool> {
    let n = sqlx::query(
        "UPDATE tasks SET remote_ref = $1 WHERE id = $2 AND lease_token = $3 AND state = 'running'",
    )
    .bind(remote)
    .bind(task.as_str())
    .bind(token.as_str())
    .execute(&db.pool)
    .await
    .context("recording a task's remote run")?
    .rows_affected();
    Ok(n == 1)
}

/// The reports a `webhook` backend's service sent for a task, after `seq`.
pub async fn reports(
    db: &Db,
    task: &TaskId,
    seq: i64,
) -> anyhow::Result<Vec<crate::backend::Report>> {
    let rows = sqlx::query(
        "SELECT seq, kind, text, pr_url, branch, remote FROM backend_updates          WHERE task_id = $1 AND seq > $2 ORDER BY seq LIMIT 100",
    )
    .bind(task.as_str())
    .bind(seq)
    .fetch_all(&db.pool)
    .await
    .context("reading a task's reports")?;
    Ok(rows
        .iter()
        .map(|r| crate::backend::Report {
            seq: r.get("seq"),
            kind: r.get("kind"),
            text: r.get("text"),
            pr_url: r.get("pr_url"),
            branch: r.get("branch"),
            remote: r.get("remote"),
        })
        .collect())
}

/// Claims the oldest runnable task: queued, or running under a lease that ran out (its worker died).
/// A session's turns run one at a time, in order. `owner` names the process (for handing leases
/// back at shutdown); the returned token names this one claim.
#[tracing::instrument(skip(db))]
pub async fn claim_task(db: &Db, owner: &str, lease_ms: i64) -> anyhow::Result<Option<Claim>> {
    let now = now_ms();
    // An idle poll reads instead of writing (an empty UPDATE still takes SQLite's write lock).
    let open = sqlx::query(
        "SELECT 1 FROM tasks WHERE state IN ('queued', 'running') AND (state = 'queued' OR lease_until < $1) LIMIT 1",
    )
    .bind(now)
    .fetch_optional(&db.pool)
    .await
    .context("looking for runnable tasks")?;
    if open.is_none() {
        return Ok(None);
    }
    let token = LeaseToken::generate();
    let sql = format!(
        "UPDATE tasks SET state = 'running', lease_owner = $1, lease_until = $2, heartbeat_at = $3, lease_token = $4, \
         attempts = attempts + 1, started_at = COALESCE(started_at, $3) \
         WHERE id = (SELECT t.id FROM tasks t WHERE t.state IN ('queued', 'running') AND (t.state = 'queued' OR (t.state = 'running' AND t.lease_until < $3)) \
           AND NOT EXISTS (SELECT 1 FROM tasks p WHERE p.session_id = t.session_id AND p.turn_no < t.turn_no \
                           AND p.state IN ('queued', 'running', 'awaiting_repo')) \
           ORDER BY t.created_at LIMIT 1{}) \
         RETURNING id, outcome_state",
        db.skip_locked()
    );
    let row = sqlx::query(&sql)
        .bind(owner)
        .bind(now + lease_ms)
        .bind(now)
        .bind(token.as_str())
        .fetch_optional(&db.pool)
        .await
        .context("claiming a task")?;
    let Some(row) = row else { return Ok(None) };
    let id = TaskId(row.get("id"));
    let recorded = row
        .get::<Option<String>, _>("outcome_state")
        .map(|s| TaskState::parse(&s))
        .transpose()?;
    // The task is ours now; failing to read it back would strand it until its lease ran out.
    let task = match crate::db::retry("reading a claimed task", || async {
        let mut conn = db.pool.acquire().await?;
        get_task(&mut conn, &id).await
    })
    .await
    {
        // A row this version cannot read would be claimed again every lease: it ends here.
        Err(e) if e.chain().any(|c| c.is::<BadValue>()) => {
            let why = format!("this task's stored row cannot be read: {e:#}");
            tracing::error!(task_id = %id, reason = %why, "failing a task that cannot be read");
            sqlx::query(
                "UPDATE tasks SET state = 'failed', error = $1, finished_at = $2, lease_owner = NULL, \
                 lease_until = 0, lease_token = NULL WHERE id = $3 AND lease_token = $4",
            )
            .bind(storable(&why).as_ref())
            .bind(now_ms())
            .bind(id.as_str())
            .bind(token.as_str())
            .execute(&db.pool)
            .await?;
            return Ok(None);
        }
        other => other?,
    };
    Ok(task.map(|task| Claim {
        task,
        token,
        recorded,
    }))
}

pub struct Heartbeat {
    pub still_owner: bool,
    pub cancel_requested: bool,
}

/// Renews the lease of one claim and reads whether someone asked to stop the task.
pub async fn heartbeat(
    db: &Db,
    id: &TaskId,
    token: &LeaseToken,
    lease_ms: i64,
) -> anyhow::Result<Heartbeat> {
    let now = now_ms();
    let row = sqlx::query(
        "UPDATE tasks SET lease_until = $1, heartbeat_at = $2 \
         WHERE id = $3 AND lease_token = $4 AND state = 'running' RETURNING cancel_requested",
    )
    .bind(now + lease_ms)
    .bind(now)
    .bind(id.as_str())
    .bind(token.as_str())
    .fetch_optional(&db.pool)
    .await?;
    Ok(match row {
        Some(r) => Heartbeat {
            still_owner: true,
            cancel_requested: r.get::<i64, _>("cancel_requested") != 0,
        },
        None => Heartbeat {
            still_owner: false,
            cancel_requested: false,
        },
    })
}

/// Records how the agent's run ended, before the task is finished, if the claim is still held.
/// Should finishing fail until the lease is lost (or the process dies), the next claim finds the
/// record and finishes from it instead of running the agent again.
pub async fn record_outcome(
    db: &Db,
    id: &TaskId,
    token: &LeaseToken,
    state: TaskState,
    outcome: Option<&Outcome>,
    error: Option<&str>,
) -> anyhow::Result<bool> {
    let result = outcome.map(serde_json::to_string).transpose()?;
    let n = sqlx::query(
        "UPDATE tasks SET outcome_state = $1, result = $2, error = $3 \
         WHERE id = $4 AND lease_token = $5 AND state = 'running'",
    )
    .bind(state.as_str())
    .bind(result)
    .bind(error.map(storable).as_deref())
    .bind(id.as_str())
    .bind(token.as_str())
    .execute(&db.pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Ends a task, only if the claim `token` still holds it (or, with `token` None, if it is not
/// running). Returns whether this call ended it, so exactly one caller posts the final message.
pub async fn finish_task(
    conn: &mut AnyConnection,
    id: &TaskId,
    token: Option<&LeaseToken>,
    state: TaskState,
    outcome: Option<&Outcome>,
    error: Option<&str>,
) -> anyhow::Result<bool> {
    let result = outcome.map(serde_json::to_string).transpose()?;
    let done = sqlx::query(
        "UPDATE tasks SET state = $1, result = $2, error = $3, finished_at = $4, lease_owner = NULL, lease_until = 0, \
         lease_token = NULL, outcome_state = NULL \
         WHERE id = $5 AND ((lease_token = $6 AND state = 'running') OR ($6 IS NULL AND state IN ('queued', 'awaiting_repo')))",
    )
    .bind(state.as_str())
    .bind(result)
    .bind(error.map(storable).as_deref())
    .bind(now_ms())
    .bind(id.as_str())
    .bind(token.map(LeaseToken::as_str))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// On shutdown: hands this worker's running tasks back to the queue for another worker.
pub async fn release_leases(db: &Db, owner: &str) -> anyhow::Result<u64> {
    Ok(sqlx::query(
        "UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_until = 0, lease_token = NULL, \
         attempts = attempts - 1 WHERE lease_owner = $1 AND state = 'running'",
    )
    .bind(owner)
    .execute(&db.pool)
    .await?
    .rows_affected())
}
