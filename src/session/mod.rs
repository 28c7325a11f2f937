//! Sessions (one conversation, bound to one or more places) and their tasks (one turn each), as
//! stored rows. `turns` starts and stops turns, `input` builds what an agent is given, `claim`
//! hands tasks to workers under leases, and `view` is the read model of the Sessions view.

pub mod claim;
pub mod direct;
pub mod input;
pub mod links;
pub mod plan;
pub mod publish;
pub mod pulls;
pub mod turns;
pub mod view;

pub use claim::{
    claim_task, finish_task, heartbeat, record_outcome, release_leases, Claim, Heartbeat,
    LeaseToken,
};

use crate::backend::{Outcome, TurnRecord};
use crate::binding::{BadValue, Binding, Surface};
use crate::db::{storable, Db, Row};
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

    pub fn parse(s: &str) -> Result<Self, BadValue> {
        Ok(match s {
            "awaiting_repo" => Self::AwaitingRepo,
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => return Err(BadValue::new("task state", s)),
        })
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

#[derive(Clone, Debug)]
pub struct Session {
    pub id: SessionId,
    /// Where it started.
    pub entry: Surface,
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
    /// Where this turn was asked, and where its answer goes.
    pub binding: Binding,
    /// The message that asked, as its connector names it.
    pub message: Option<String>,
    pub state: TaskState,
    pub attempts: i64,
    pub cancel_requested: bool,
    pub cancelled_by: Option<String>,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Attempts this turn runs, each on its own branch (best-of-N); 1 for an ordinary turn.
    pub variants: u32,
    /// The attempt someone chose with **Use this one**, and who.
    pub chosen_attempt: Option<u32>,
    /// The steps the agent has taken so far (`plan`), once it started.
    pub plan: Option<plan::Plan>,
    /// Whether the turn does the work or only proposes a plan for approval.
    pub mode: TurnMode,
}

/// What a turn is for. Where `approval = "plan"`, a request first makes a [`TurnMode::Plan`]
/// turn; only its approval makes the [`TurnMode::Work`] turn that changes anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnMode {
    #[default]
    Work,
    Plan,
}

impl TurnMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Work => "work",
            Self::Plan => "plan",
        }
    }
}

const TASK_COLUMNS: &str =
    "t.id, t.session_id, t.turn_no, t.prompt, t.requester, t.repo, t.backend, \
    t.binding, t.message_ts, t.state, t.attempts, t.cancel_requested, t.cancelled_by, \
    t.result, t.error, t.created_at, t.started_at, t.finished_at, t.variants, t.chosen_attempt, t.plan, t.mode";

/// A stored task; an unknown state or binding is an error, never a guess.
fn task_from_row(r: &Row) -> anyhow::Result<Task> {
    let result: Option<String> = r.get("result");
    Ok(Task {
        id: TaskId(r.get("id")),
        session_id: SessionId(r.get("session_id")),
        turn_no: r.get("turn_no"),
        prompt: r.get("prompt"),
        requester: r.get("requester"),
        repo: r.get::<Option<String>, _>("repo").map(RepoName),
        backend: r.get("backend"),
        binding: r.get::<String, _>("binding").parse()?,
        message: r.get("message_ts"),
        state: TaskState::parse(&r.get::<String, _>("state"))?,
        attempts: r.get("attempts"),
        cancel_requested: r.get::<i64, _>("cancel_requested") != 0,
        cancelled_by: r.get("cancelled_by"),
        outcome: result
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .context("reading a task's stored outcome")?,
        error: r.get("error"),
        created_at: r.get("created_at"),
        started_at: r.get("started_at"),
        finished_at: r.get("finished_at"),
        variants: u32::try_from(r.get::<i64, _>("variants"))
            .unwrap_or(1)
            .max(1),
        chosen_attempt: r
            .get::<Option<i64>, _>("chosen_attempt")
            .and_then(|n| u32::try_from(n).ok()),
        // A plan is shown, never acted on: one that no longer reads is left out.
        plan: r
            .get::<Option<String>, _>("plan")
            .and_then(|p| serde_json::from_str(&p).ok()),
        mode: match r.get::<String, _>("mode").as_str() {
            "work" => TurnMode::Work,
            "plan" => TurnMode::Plan,
            other => anyhow::bail!("a task has the unknown mode {other:?}"),
        },
    })
}

/// A stored session (`id, surface, repo, backend`); an unknown surface is an error.
fn session_from_row(r: &Row) -> anyhow::Result<Session> {
    Ok(Session {
        id: SessionId(r.get("id")),
        entry: r.get::<String, _>("surface").parse()?,
        repo: r.get::<Option<String>, _>("repo").map(RepoName),
        backend: r.get("backend"),
    })
}

/// The session bound to `binding`, if any.
pub async fn find_by_binding(
    conn: &mut AnyConnection,
    binding: &Binding,
) -> anyhow::Result<Option<Session>> {
    let row = sqlx::query(
        "SELECT s.id, s.surface, s.repo, s.backend FROM sessions s \
         JOIN session_bindings b ON b.session_id = s.id WHERE b.binding = $1",
    )
    .bind(binding.to_string())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(session_from_row).transpose()
}

/// A session by id.
pub async fn get_session(
    conn: &mut AnyConnection,
    id: &SessionId,
) -> anyhow::Result<Option<Session>> {
    let row = sqlx::query("SELECT id, surface, repo, backend FROM sessions WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(session_from_row).transpose()
}

/// Records where a new session's branch starts.
pub async fn set_base(
    conn: &mut AnyConnection,
    id: &SessionId,
    base: &crate::backend::Base,
) -> anyhow::Result<()> {
    sqlx::query("UPDATE sessions SET base_commit = $1, base_branch = $2 WHERE id = $3")
        .bind(&base.commit)
        .bind(&base.branch)
        .bind(id.as_str())
        .execute(conn)
        .await
        .context("recording where the session starts")?;
    Ok(())
}

/// Where a session's branch starts, when its first request said.
pub async fn base(db: &Db, id: &SessionId) -> anyhow::Result<Option<crate::backend::Base>> {
    let row: Option<(Option<String>, Option<String>)> =
        sqlx::query_as("SELECT base_commit, base_branch FROM sessions WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&db.pool)
            .await?;
    Ok(match row {
        Some((Some(commit), branch)) => Some(crate::backend::Base {
            commit,
            branch: branch.unwrap_or_default(),
        }),
        _ => None,
    })
}

/// Creates a session bound to `binding`. A concurrent creator makes the binding insert fail, and
/// the caller's transaction is retried, then finds this session.
pub async fn create(
    conn: &mut AnyConnection,
    binding: &Binding,
    requester: &str,
    repo: Option<&RepoName>,
    backend: &str,
) -> anyhow::Result<Session> {
    let id = SessionId::generate();
    let now = now_ms();
    let entry = binding.surface();
    sqlx::query(
        "INSERT INTO sessions (id, surface, requester, repo, backend, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(id.as_str())
    .bind(entry.as_str())
    .bind(requester)
    .bind(repo.map(|r| r.as_str()))
    .bind(backend)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO session_bindings (session_id, surface, binding, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(id.as_str())
    .bind(entry.as_str())
    .bind(binding.to_string())
    .bind(now)
    .execute(&mut *conn)
    .await
    .context("binding the session to its place")?;
    Ok(Session {
        id,
        entry,
        repo: repo.cloned(),
        backend: backend.to_string(),
    })
}

/// Binds one more place to a session, so that a turn asked there continues it (and is answered
/// there). A place belongs to at most one session: binding one that is taken is an error.
pub async fn bind(
    conn: &mut AnyConnection,
    session: &SessionId,
    binding: &Binding,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO session_bindings (session_id, surface, binding, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(session.as_str())
    .bind(binding.surface().as_str())
    .bind(binding.to_string())
    .bind(now_ms())
    .execute(conn)
    .await
    .with_context(|| format!("binding {binding} to session {session}"))?;
    Ok(())
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
    pub binding: &'a Binding,
    pub message: Option<&'a str>,
    pub state: TaskState,
    /// Attempts to run (best-of-N); 1 for an ordinary turn.
    pub variants: u32,
    pub mode: TurnMode,
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
         binding, message_ts, state, created_at, variants, mode) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
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
    .bind(t.binding.to_string())
    .bind(t.message)
    .bind(t.state.as_str())
    .bind(now_ms())
    .bind(i64::from(t.variants.max(1)))
    .bind(t.mode.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|_| id))
}

/// Records that `by` chose attempt `n` of a finished best-of-N turn. False when an attempt was
/// already chosen (the first choice stands) or the turn has no such attempt.
pub async fn choose_attempt(
    conn: &mut AnyConnection,
    id: &TaskId,
    n: u32,
    by: &str,
) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "UPDATE tasks SET chosen_attempt = $1, chosen_by = $2 \
         WHERE id = $3 AND chosen_attempt IS NULL AND state = 'succeeded' AND variants >= $1",
    )
    .bind(i64::from(n))
    .bind(by)
    .bind(id.as_str())
    .execute(conn)
    .await
    .context("recording the chosen attempt")?
    .rows_affected();
    Ok(done == 1)
}

pub async fn get_task(conn: &mut AnyConnection, id: &TaskId) -> anyhow::Result<Option<Task>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = $1");
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(task_from_row).transpose()
}

/// The latest turn asked at `binding`, if any.
pub async fn latest_task_at(
    conn: &mut AnyConnection,
    binding: &Binding,
) -> anyhow::Result<Option<Task>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.binding = $1 ORDER BY t.created_at DESC, t.turn_no DESC LIMIT 1"
    );
    let row = sqlx::query(&sql)
        .bind(binding.to_string())
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(task_from_row).transpose()
}

/// The task an inbox event made, if it made one.
pub async fn task_for_event(db: &Db, source_event: &str) -> anyhow::Result<Option<TaskId>> {
    let id: Option<String> = sqlx::query_scalar("SELECT id FROM tasks WHERE source_event = $1")
        .bind(source_event)
        .fetch_optional(&db.pool)
        .await?;
    Ok(id.map(TaskId::new))
}

/// Every turn of a session before `turn_no`, oldest first, but those asked at `hidden` (private
/// places, when the turn is for a public one).
pub async fn history(
    db: &Db,
    session: &SessionId,
    before_turn: i64,
    hidden: &[Binding],
) -> anyhow::Result<Vec<TurnRecord>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t WHERE t.session_id = $1 AND t.turn_no < $2 ORDER BY t.turn_no"
    );
    let rows = sqlx::query(&sql)
        .bind(session.as_str())
        .bind(before_turn)
        .fetch_all(&db.pool)
        .await?;
    let turns: Vec<Task> = rows
        .iter()
        .map(task_from_row)
        .collect::<anyhow::Result<_>>()?;
    turns
        .into_iter()
        .filter(|t| !hidden.contains(&t.binding))
        .map(|t| {
            Ok(TurnRecord {
                turn_no: t.turn_no,
                requester: t.requester,
                prompt: t.prompt,
                state: t.state.as_str().to_string(),
                outcome: t.outcome,
                error: t.error,
            })
        })
        .collect()
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
