//! The one way to start, retry and stop a turn, whatever asked for it: a mention and the buttons
//! today, an accepted suggestion, a Linear delegation or an IDE hand-off later. Each writes its
//! rows and the surface's first answer in the caller's transaction.

use super::{NewTask, Session, Task, TaskState, TurnMode};
use crate::binding::Binding;
use crate::config::Config;
use crate::connector::Reporter;
use crate::ids::{RepoName, UserId};
use anyhow::Context;
use sqlx::AnyConnection;

/// Options a person may give inline with a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TurnOptions {
    /// `repo=owner/name`: for a new session.
    pub repo: Option<RepoName>,
    /// `backend=name`: for a new session, among those allowed where it is asked.
    pub backend: Option<String>,
    /// `attempts=N`: run N attempts side by side (best-of-N), at most `agent.best_of_max`.
    pub attempts: Option<u32>,
    /// Where a new session's branch starts (the editor's workspace); never given inline.
    pub base: Option<crate::backend::Base>,
    /// The team the place belongs to (a Linear issue's), for per-team rules; never given inline.
    pub team: Option<String>,
}

impl TurnOptions {
    /// Splits inline `repo=owner/name`, `backend=name` and `attempts=N` out of a request; returns
    /// the rest.
    pub fn extract(text: &str) -> (String, TurnOptions) {
        let mut options = TurnOptions::default();
        let mut words = Vec::new();
        for word in text.split(' ') {
            let trimmed = word.trim_end_matches([',', '.', ';', ')', ':']);
            if let Some(rest) = trimmed.strip_prefix("repo=") {
                if let (None, Some(r)) = (&options.repo, RepoName::parse(rest)) {
                    options.repo = Some(r);
                    continue;
                }
            }
            if let Some(rest) = trimmed.strip_prefix("backend=") {
                let valid = !rest.is_empty()
                    && rest.len() <= 64
                    && rest
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if options.backend.is_none() && valid {
                    options.backend = Some(rest.to_string());
                    continue;
                }
            }
            if let Some(rest) = trimmed.strip_prefix("attempts=") {
                if let (None, Ok(n @ 1..=99)) = (options.attempts, rest.parse::<u32>()) {
                    options.attempts = Some(n);
                    continue;
                }
            }
            words.push(word);
        }
        (words.join(" ").trim().to_string(), options)
    }
}

/// One request for a turn.
pub struct TurnRequest<'a> {
    /// Names what asked, for idempotency: a replay finds the task it already made.
    pub source_event: &'a str,
    pub binding: &'a Binding,
    pub requester: &'a UserId,
    /// The message that asked, as its connector names it (acknowledged when given).
    pub message: Option<&'a str>,
    /// The request, without inline options. Untrusted text.
    pub prompt: &'a str,
    pub options: TurnOptions,
    /// The work items the surface says this place is about (a Linear issue's key), as
    /// [`super::links`] refs: a new session joins the one already about any of them.
    pub refs: Vec<String>,
}

/// What became of a request for a turn.
#[derive(Debug)]
pub enum Started {
    /// A new turn, queued or waiting for a repository; its status is shown.
    Turn(Box<Task>),
    /// This source event already made its turn.
    AlreadyMade,
    /// Not started, for a reason to tell the requester.
    Refused(String),
}

/// Starts a session's next turn at `req.binding` (a new session when none is bound there).
pub async fn start_turn(
    tx: &mut AnyConnection,
    config: &Config,
    reporter: &dyn Reporter,
    req: TurnRequest<'_>,
) -> anyhow::Result<Started> {
    if req.prompt.trim().is_empty() {
        return Ok(Started::Refused(
            "Mention me with what you need, for example: `@chime the retry client drops the last chunk on timeout repo=acme/api`".into(),
        ));
    }
    let existing = super::find_by_binding(tx, req.binding).await?;
    if let (None, Some(b)) = (&existing, &req.options.backend) {
        // `backend=` is access control too: a backend may carry privileged `env`.
        let allowed = config.inline_backends(req.binding.place());
        if !allowed.contains(&b.as_str()) {
            let listed = allowed
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            tracing::info!(backend = %b, binding = %req.binding, user = %req.requester, "refused an inline backend");
            return Ok(Started::Refused(if config.has_backend(b) {
                format!("The backend `{b}` can't be chosen in this channel. Backends you can choose here: {listed}.")
            } else {
                format!("I don't know the backend `{b}`, so it can't be chosen. Backends you can choose here: {listed}.")
            }));
        }
    }
    let variants = req.options.attempts.unwrap_or(1);
    let backend = existing
        .as_ref()
        .map(|s| s.backend.as_str())
        .or(req.options.backend.as_deref())
        .unwrap_or(&config.agent.default_backend);
    if let Some(why) = attempts_refusal(config, backend, variants) {
        return Ok(Started::Refused(why));
    }
    let session_id = existing.as_ref().map(|s| s.id.clone());
    if let Some(why) = crate::limits::refusal(
        tx,
        &config.limits,
        req.binding,
        req.requester.as_str(),
        session_id.as_ref(),
    )
    .await?
    {
        tracing::info!(binding = %req.binding, user = %req.requester, reason = %why, "refused a turn over a limit");
        return Ok(Started::Refused(why));
    }
    if let Some(why) = crate::spend::refusal(tx, config, req.binding, crate::ids::now_ms()).await? {
        tracing::info!(binding = %req.binding, user = %req.requester, reason = %why, "refused a turn over a budget");
        return Ok(Started::Refused(why));
    }
    let session = match existing {
        Some(s) => s,
        None => {
            // One session across tools: a place that names a work item another session is about
            // (a Slack thread naming ENG-123, ENG-123's Linear agent session) joins that session.
            let mut refs = req.refs.clone();
            refs.extend(super::links::refs_in(req.prompt));
            let joined = match super::links::find(tx, &refs).await? {
                Some(id) => super::get_session(tx, &id).await?,
                None => None,
            };
            let session = match joined {
                Some(s) => {
                    super::bind(tx, &s.id, req.binding).await?;
                    tracing::info!(session_id = %s.id, binding = %req.binding, "joined the session already about this work item");
                    s
                }
                None => {
                    // A session keeps the backend it started with; `backend=` picks it for a new one.
                    let backend = req
                        .options
                        .backend
                        .as_deref()
                        .unwrap_or(&config.agent.default_backend);
                    let s = super::create(tx, req.binding, req.requester.as_str(), None, backend)
                        .await
                        .context("creating a session")?;
                    if let Some(base) = &req.options.base {
                        super::set_base(tx, &s.id, base).await?;
                    }
                    s
                }
            };
            super::links::add(tx, &session.id, &refs).await?;
            session
        }
    };
    let known = config.known_repos();
    // A session keeps its repository: later turns build on the same branch.
    let repo = session
        .repo
        .clone()
        .or_else(|| resolve_repo(config, req.binding, req.options.repo.as_ref(), &known));
    if session.repo.is_none() {
        if let Some(r) = &repo {
            super::set_repo(tx, &session.id, r).await?;
        }
    }
    let new = NewTask {
        session: &session,
        source_event: req.source_event,
        prompt: req.prompt,
        requester: req.requester.as_str(),
        repo: repo.as_ref(),
        binding: req.binding,
        message: req.message,
        state: initial_state(repo.as_ref(), &known),
        variants,
        mode: if config.needs_plan_approval(req.binding.place(), req.options.team.as_deref()) {
            TurnMode::Plan
        } else {
            TurnMode::Work
        },
    };
    let Some(task) = insert(tx, new).await? else {
        return Ok(Started::AlreadyMade);
    };
    if let Some(message) = req.message {
        reporter.ack(tx, req.binding, message).await?;
    }
    show(tx, reporter, &task, &known).await?;
    Ok(Started::Turn(Box::new(task)))
}

/// A new turn that asks `task`'s request again, in the name of `by`. At most one per ended turn:
/// None when it was already retried (or has not ended in a way that can be retried).
pub async fn retry_turn(
    tx: &mut AnyConnection,
    config: &Config,
    reporter: &dyn Reporter,
    task: &Task,
    by: &UserId,
) -> anyhow::Result<Option<Task>> {
    if !matches!(task.state, TaskState::Failed | TaskState::Cancelled) {
        return Ok(None);
    }
    // Named by the turn it retries, not by the click: a second press finds the first one's task.
    let retry_of = format!("retry:{}", task.id);
    let message = task.message.as_deref();
    ask_again(
        tx,
        config,
        reporter,
        task,
        by,
        &retry_of,
        message,
        task.variants,
        task.mode,
    )
    .await
}

/// The turn that carries out the plan `task` proposed, in the name of `by` (who approved it).
/// At most one per plan: None when it was already approved.
pub async fn approve_plan(
    tx: &mut AnyConnection,
    config: &Config,
    reporter: &dyn Reporter,
    task: &Task,
    by: &UserId,
) -> anyhow::Result<Option<Task>> {
    if task.mode != TurnMode::Plan || task.state != TaskState::Succeeded {
        return Ok(None);
    }
    let source = format!("approve:{}", task.id);
    ask_again(
        tx,
        config,
        reporter,
        task,
        by,
        &source,
        task.message.as_deref(),
        task.variants,
        TurnMode::Work,
    )
    .await
}

/// A new turn of `task`'s session asking its request again, in the name of `by`, made once per
/// `source`; shown like any new turn. None when `source` already made its turn.
#[allow(clippy::too_many_arguments)]
async fn ask_again(
    tx: &mut AnyConnection,
    config: &Config,
    reporter: &dyn Reporter,
    task: &Task,
    by: &UserId,
    source: &str,
    message: Option<&str>,
    variants: u32,
    mode: TurnMode,
) -> anyhow::Result<Option<Task>> {
    let known = config.known_repos();
    let session = Session {
        id: task.session_id.clone(),
        entry: task.binding.surface(),
        repo: task.repo.clone(),
        backend: task.backend.clone(),
    };
    let new = NewTask {
        session: &session,
        source_event: source,
        prompt: &task.prompt,
        requester: by.as_str(),
        repo: task.repo.as_ref(),
        binding: &task.binding,
        message,
        state: initial_state(task.repo.as_ref(), &known),
        variants,
        mode,
    };
    let Some(turn) = insert(tx, new).await? else {
        return Ok(None);
    };
    show(tx, reporter, &turn, &known).await?;
    Ok(Some(turn))
}

/// Why `n` attempts cannot run on `backend`, if they cannot: best-of-N runs each attempt in a
/// worktree of its own, which only the `command` backend has, and at most `agent.best_of_max`.
pub fn attempts_refusal(config: &Config, backend: &str, n: u32) -> Option<String> {
    if n <= 1 {
        return None;
    }
    let max = config.agent.best_of_max;
    if !matches!(
        config.backends.get(backend),
        Some(crate::config::BackendConfig::Command { .. })
    ) {
        return Some(format!(
            "Several attempts (`attempts={n}`) run only on a `command` backend; this session uses `{backend}`."
        ));
    }
    (n > max).then(|| {
        format!(
            "At most {max} attempts can run for one request here (`attempts={n}` asked for more)."
        )
    })
}

/// A new turn that asks `task`'s request again as `n` attempts side by side (**Try 3 ways**), in
/// the name of `by`. At most one per turn: None when it was already asked.
pub async fn try_ways(
    tx: &mut AnyConnection,
    config: &Config,
    reporter: &dyn Reporter,
    task: &Task,
    by: &UserId,
    n: u32,
) -> anyhow::Result<Result<Option<Task>, String>> {
    if let Some(why) = attempts_refusal(config, &task.backend, n) {
        return Ok(Err(why));
    }
    let source = format!("ways:{}", task.id);
    Ok(Ok(ask_again(
        tx, config, reporter, task, by, &source, None, n, task.mode,
    )
    .await?))
}

/// Asks a task to stop: a task no worker holds yet stops here (and shows so); a running one
/// stops at its worker's next heartbeat. Returns whether this call asked.
pub async fn stop_task(
    tx: &mut AnyConnection,
    reporter: &dyn Reporter,
    task: &Task,
    by: &UserId,
) -> anyhow::Result<bool> {
    if !super::request_cancel(tx, &task.id, by.as_str()).await? {
        return Ok(false);
    }
    if super::finish_task(tx, &task.id, None, TaskState::Cancelled, None, None).await? {
        let task = super::get_task(tx, &task.id)
            .await?
            .context("task vanished")?;
        reporter.show_result(tx, &task).await?;
    }
    Ok(true)
}

/// Gives a task that waits for a repository its repository, when it is one the config knows.
pub async fn pick_repo(
    tx: &mut AnyConnection,
    config: &Config,
    reporter: &dyn Reporter,
    task: &Task,
    repo: &RepoName,
) -> anyhow::Result<bool> {
    if !config.known_repos().contains(repo) || !super::assign_repo(tx, &task.id, repo).await? {
        return Ok(false);
    }
    super::set_repo(tx, &task.session_id, repo).await?;
    let task = super::get_task(tx, &task.id)
        .await?
        .context("task vanished")?;
    reporter
        .update_status(tx, &task, &format!("Repository: {repo}"))
        .await?;
    Ok(true)
}

fn initial_state(repo: Option<&RepoName>, known: &[RepoName]) -> TaskState {
    if repo.is_some() || known.is_empty() {
        TaskState::Queued
    } else {
        TaskState::AwaitingRepo
    }
}

/// Inserts the turn; None when its source event already made one.
async fn insert(tx: &mut AnyConnection, new: NewTask<'_>) -> anyhow::Result<Option<Task>> {
    let Some(id) = super::insert_task(tx, new).await? else {
        return Ok(None);
    };
    super::get_task(tx, &id)
        .await?
        .context("task vanished inside its transaction")
        .map(Some)
}

/// Shows a new turn: its status, or the repository picker when it waits for one.
async fn show(
    tx: &mut AnyConnection,
    reporter: &dyn Reporter,
    task: &Task,
    known: &[RepoName],
) -> anyhow::Result<()> {
    if task.state == TaskState::AwaitingRepo {
        reporter.ask_repo(tx, task, known).await
    } else {
        reporter.show_status(tx, task).await
    }
}

/// The repository for a new session: inline `repo=`, then the place's map, then the default.
/// An inline repository must be one the config knows, when it knows any.
fn resolve_repo(
    config: &Config,
    binding: &Binding,
    inline: Option<&RepoName>,
    known: &[RepoName],
) -> Option<RepoName> {
    if let Some(r) = inline {
        if known.is_empty() || known.contains(r) {
            return Some(r.clone());
        }
        tracing::info!(repo = %r, "inline repo is not configured; asking instead");
        return None;
    }
    let routing = &config.routing;
    routing
        .channels
        .get(binding.place())
        .or(routing.default_repo.as_ref())
        .and_then(|r| RepoName::parse(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_options_are_extracted() {
        let (p, o) =
            TurnOptions::extract("fix the retry client repo=acme/api, backend=codex please");
        assert_eq!(p, "fix the retry client please");
        assert_eq!(o.repo.unwrap().as_str(), "acme/api");
        assert_eq!(o.backend.as_deref(), Some("codex"));
        let (p, o) = TurnOptions::extract("repo=../etc backend=$(rm) fix");
        assert_eq!(o, TurnOptions::default());
        assert_eq!(p, "repo=../etc backend=$(rm) fix");
    }
}
