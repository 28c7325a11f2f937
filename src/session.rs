//! Sessions (one conversation, bound to a thread) and their tasks (one turn each), as stored rows.

use crate::backend::{Outcome, TurnRecord};
use crate::db::{storable, Db, Row};
use crate::event::Surface;
use crate::ids::{now_ms, RepoName, SessionId, TaskId};
use anyhow::Context;
use sqlx::{AnyConnection, Row as _};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Waiting for someone to pick a repository.
    AwaitingRepo,
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingRepo => "awaiting_repo",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "awaiting_repo" => Self::AwaitingRepo,
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "cancelled" => Self::Cancelled,
            _ => Self::Failed,
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

#[derive(Clone, Debug)]
pub struct Session {
    pub id: SessionId,
    pub surface: Surface,
    pub repo: Option<RepoName>,
    pub backend: String,
}

#[derive(Clone, Debug)]
pub struct Task {
    pub id: TaskId,
    pub session_id: SessionId,
    pub turn_no: i64,
    pub prompt: String,
    pub requester: String,
    pub repo: Option<RepoName>,
    pub backend: String,
    pub surface: Surface,
    pub thread_key: String,
    pub message_ts: Option<String>,
    pub state: TaskState,
    pub attempts: i64,
    pub cancel_requested: bool,
    pub cancelled_by: Option<String>,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

const TASK_COLUMNS: &str = "t.id, t.session_id, t.turn_no, t.prompt, t.requester, t.repo, t.backend, \
    s.surface, t.thread_key, t.message_ts, t.state, t.attempts, t.cancel_requested, t.cancelled_by, \
    t.result, t.error, t.created_at, t.started_at, t.finished_at";

fn task_from_row(r: &Row) -> Task {
    let result: Option<String> = r.get("result");
    Task {
        id: TaskId(r.get("id")),
        session_id: SessionId(r.get("session_id")),
        turn_no: r.get("turn_no"),
        prompt: r.get("prompt"),
        requester: r.get("requester"),
        repo: r.get::<Option<String>, _>("repo").map(RepoName),
        backend: r.get("backend"),
        surface: Surface::parse(&r.get::<String, _>("surface")).unwrap_or(Surface::Slack),
        thread_key: r.get("thread_key"),
        message_ts: r.get("message_ts"),
        state: TaskState::parse(&r.get::<String, _>("state")),
        attempts: r.get("attempts"),
        cancel_requested: r.get::<i64, _>("cancel_requested") != 0,
        cancelled_by: r.get("cancelled_by"),
        outcome: result.and_then(|s| serde_json::from_str(&s).ok()),
        error: r.get("error"),
        created_at: r.get("created_at"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
    }
}

pub async fn find_by_binding(
    conn: &mut AnyConnection,
    surface: Surface,
    key: &str,
) -> anyhow::Result<Option<Session>> {
    let row = sqlx::query(
        "SELECT s.id, s.surface, s.repo, s.backend FROM sessions s \
         JOIN session_bindings b ON b.session_id = s.id WHERE b.surface = $1 AND b.external_key = $2",
    )
    .bind(surface.as_str())
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| Session {
        id: SessionId(r.get("id")),
        surface: Surface::parse(&r.get::<String, _>("surface")).unwrap_or(surface),
        repo: r.get::<Option<String>, _>("repo").map(RepoName),
        backend: r.get("backend"),
    }))
}

/// Creates a session bound to `key`. A concurrent creator makes the binding insert fail, and the
/// caller's transaction is retried, then finds this session.
pub async fn create(
    conn: &mut AnyConnection,
    surface: Surface,
    key: &str,
    requester: &str,
    repo: Option<&RepoName>,
    backend: &str,
) -> anyhow::Result<Session> {
    let id = SessionId::generate();
    let now = now_ms();
    sqlx::query(
        "INSERT INTO sessions (id, surface, requester, repo, backend, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(id.as_str())
    .bind(surface.as_str())
    .bind(requester)
    .bind(repo.map(|r| r.as_str()))
    .bind(backend)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO session_bindings (session_id, surface, external_key, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.as_str())
    .bind(surface.as_str())
    .bind(key)
    .bind(now)
    .execute(&mut *conn)
    .await
    .context("binding the session to its thread")?;
    Ok(Session {
        id,
        surface,
        repo: repo.cloned(),
        backend: backend.to_string(),
    })
}

pub async fn set_repo(
    conn: &mut AnyConnection,
    session: &SessionId,
    repo: &RepoName,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE sessions SET repo = $1, updated_at = $2 WHERE id = $3")
        .bind(repo.as_str())
        .bind(now_ms())
        .bind(session.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

pub struct NewTask<'a> {
    pub session: &'a Session,
    pub source_event: &'a str,
    pub prompt: &'a str,
    pub requester: &'a str,
    pub repo: Option<&'a RepoName>,
    pub thread_key: &'a str,
    pub message_ts: Option<&'a str>,
    pub state: TaskState,
}

/// Inserts the next turn of a session. Returns None when this source event already made a task.
pub async fn insert_task(
    conn: &mut AnyConnection,
    t: NewTask<'_>,
) -> anyhow::Result<Option<TaskId>> {
    let turn: i64 =
        sqlx::query("SELECT COALESCE(MAX(turn_no), 0) + 1 AS n FROM tasks WHERE session_id = $1")
            .bind(t.session.id.as_str())
            .fetch_one(&mut *conn)
            .await?
            .get("n");
    let id = TaskId::generate();
    let row = sqlx::query(
        "INSERT INTO tasks (id, session_id, turn_no, source_event, prompt, requester, repo, backend, \
         thread_key, message_ts, state, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (source_event) DO NOTHING RETURNING id",
    )
    .bind(id.as_str())
    .bind(t.session.id.as_str())
    .bind(turn)
    .bind(t.source_event)
    .bind(storable(t.prompt).as_ref())
    .bind(t.requester)
    .bind(t.repo.map(|r| r.as_str()))
    .bind(&t.session.backend)
    .bind(t.thread_key)
    .bind(t.message_ts)
    .bind(t.state.as_str())
    .bind(now_ms())
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|_| id))
}

pub async fn get_task(conn: &mut AnyConnection, id: &TaskId) -> anyhow::Result<Option<Task>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t JOIN sessions s ON s.id = t.session_id WHERE t.id = $1"
    );
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(row.as_ref().map(task_from_row))
}

/// Every turn of a session before `turn_no`, oldest first.
pub async fn history(
    db: &Db,
    session: &SessionId,
    before_turn: i64,
) -> anyhow::Result<Vec<TurnRecord>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t JOIN sessions s ON s.id = t.session_id \
         WHERE t.session_id = $1 AND t.turn_no < $2 ORDER BY t.turn_no"
    );
    let rows = sqlx::query(&sql)
        .bind(session.as_str())
        .bind(before_turn)
        .fetch_all(&db.pool)
        .await?;
    Ok(rows
        .iter()
        .map(task_from_row)
        .map(|t| TurnRecord {
            turn_no: t.turn_no,
            requester: t.requester,
            prompt: t.prompt,
            state: t.state.as_str().to_string(),
            outcome: t.outcome,
            error: t.error,
        })
        .collect())
}

/// Every task, newest first (for the sessions view and tests).
pub async fn list_tasks(db: &Db, limit: i64) -> anyhow::Result<Vec<Task>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t JOIN sessions s ON s.id = t.session_id \
         ORDER BY t.created_at DESC, t.turn_no DESC LIMIT $1"
    );
    let rows = sqlx::query(&sql).bind(limit).fetch_all(&db.pool).await?;
    Ok(rows.iter().map(task_from_row).collect())
}

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
        .map(|s| TaskState::parse(&s));
    // The task is ours now; failing to read it back would strand it until its lease ran out.
    let task = crate::db::retry("reading a claimed task", || async {
        let mut conn = db.pool.acquire().await?;
        get_task(&mut conn, &id).await
    })
    .await?;
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

/// Marks a task to be stopped; its worker notices at the next heartbeat.
pub async fn request_cancel(
    conn: &mut AnyConnection,
    id: &TaskId,
    by: &str,
) -> anyhow::Result<bool> {
    let n = sqlx::query(
        "UPDATE tasks SET cancel_requested = 1, cancelled_by = $1 \
         WHERE id = $2 AND state IN ('queued', 'running', 'awaiting_repo') AND cancel_requested = 0",
    )
    .bind(by)
    .bind(id.as_str())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Moves a task that waited for a repository into the queue.
pub async fn assign_repo(
    conn: &mut AnyConnection,
    id: &TaskId,
    repo: &RepoName,
) -> anyhow::Result<bool> {
    let n = sqlx::query(
        "UPDATE tasks SET repo = $1, state = 'queued' WHERE id = $2 AND state = 'awaiting_repo'",
    )
    .bind(repo.as_str())
    .bind(id.as_str())
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
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
