//! Putting a turn's work up for review: after a `command` turn that changed files in a
//! repository, its branch is pushed and a pull request opened (a later turn of the session pushes
//! to the same one). The core only queues the step, in the transaction that ends the turn, on the
//! outbox's code-host lane; the code host's sender (`github::publish`) pushes, opens and tells the
//! thread, retrying until it is done. Nothing of it runs inside the agent's turn.

use super::Task;
use crate::config::{BackendConfig, Config};
use crate::guard::Guard;
use crate::ids::RepoName;
use crate::queue::outbox::{self, NewRow, CODE_HOST_LANE};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

/// A step for the code host, stored as an outbox row's payload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum CodeHostOp {
    /// Push the turn's branch; open its pull request unless the branch has one already.
    Publish(Box<Publish>),
    /// Push the branches of a best-of-N turn's attempts, so they can be looked at (and CI runs).
    PushBranches {
        repo: RepoName,
        branches: Vec<String>,
    },
    /// Delete branches nobody chose (the other attempts of a best-of-N turn).
    DeleteBranches {
        repo: RepoName,
        branches: Vec<String>,
    },
}

/// What a pull request is made of: facts only; the code host words it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Publish {
    pub task_id: String,
    pub turn_no: i64,
    pub repo: RepoName,
    pub branch: String,
    /// The branch to merge into: the repository's configured default, else the code host's.
    pub base: Option<String>,
    /// The request and the agent's summary: untrusted text.
    pub prompt: String,
    pub summary: String,
    pub diff_stat: String,
    /// Who asked, and where (the surface's name), and a link back to the thread.
    pub requester: String,
    pub surface: String,
    /// The requester's accounts on other surfaces, as linked (`identity`): "slack user `U1`".
    #[serde(default)]
    pub also: Vec<String>,
    pub thread_link: Option<String>,
    pub draft: bool,
}

/// `op` naming the requester's linked accounts on other surfaces, for the pull request's body.
async fn attributed(
    conn: &mut AnyConnection,
    task: &Task,
    mut op: CodeHostOp,
) -> anyhow::Result<CodeHostOp> {
    if let CodeHostOp::Publish(p) = &mut op {
        let surface = task.binding.surface().as_str();
        p.also = crate::identity::accounts(conn, surface, &task.requester)
            .await?
            .into_iter()
            .skip(1)
            .map(|(s, u)| format!("{s} user `{u}`"))
            .collect();
    }
    Ok(op)
}

/// Whether Chime opens pull requests at all here: the config allows it and a token is set.
pub fn enabled(config: &Config) -> bool {
    config.github.pull_requests && config.secrets.github_token.is_some()
}

/// Queues publishing `task`'s work if it is a `command` turn in a repository that changed files
/// and did not report a pull request of its own. Idempotent per task.
pub async fn queue_for_turn(
    conn: &mut AnyConnection,
    guard: &Guard,
    config: &Config,
    task: &Task,
    thread_link: Option<String>,
) -> anyhow::Result<bool> {
    let (Some(outcome), Some(repo)) = (&task.outcome, &task.repo) else {
        return Ok(false);
    };
    let is_command = matches!(
        config.backends.get(&task.backend),
        Some(BackendConfig::Command { .. })
    );
    if !is_command || !enabled(config) || outcome.pr_url.is_some() {
        return Ok(false);
    }
    if !outcome.attempts.is_empty() {
        let branches = outcome
            .attempts
            .iter()
            .filter(|a| a.error.is_none())
            .filter_map(|a| a.branch.clone())
            .collect();
        let op = CodeHostOp::PushBranches {
            repo: repo.clone(),
            branches,
        };
        return queue(
            conn,
            guard,
            task,
            &op,
            &format!("push-attempts:{}", task.id),
        )
        .await;
    }
    let changed = outcome
        .diff_stat
        .as_deref()
        .is_some_and(|s| s != "no changes");
    let (Some(branch), true) = (&outcome.branch, changed) else {
        return Ok(false);
    };
    let op = publish_op(
        config,
        task,
        repo,
        branch,
        &outcome.summary,
        outcome.diff_stat.as_deref(),
        thread_link,
    );
    let op = attributed(conn, task, op).await?;
    let key = format!("publish:{}", task.id);
    queue(conn, guard, task, &op, &key).await
}

/// Someone chose attempt `n` of best-of-N `task`: its pull request is opened (with a token) and
/// the other attempts' branches are deleted, here and where they were pushed.
pub async fn queue_choice(
    conn: &mut AnyConnection,
    guard: &Guard,
    config: &Config,
    task: &Task,
    n: u32,
    thread_link: Option<String>,
) -> anyhow::Result<()> {
    let (Some(outcome), Some(repo)) = (&task.outcome, &task.repo) else {
        return Ok(());
    };
    let Some(chosen) = outcome.attempts.iter().find(|a| a.n == n) else {
        return Ok(());
    };
    if let (Some(branch), true) = (&chosen.branch, enabled(config)) {
        let op = publish_op(
            config,
            task,
            repo,
            branch,
            &chosen.summary,
            chosen.diff_stat.as_deref(),
            thread_link,
        );
        let op = attributed(conn, task, op).await?;
        queue(conn, guard, task, &op, &format!("publish:{}", task.id)).await?;
    }
    let others: Vec<String> = outcome
        .attempts
        .iter()
        .filter(|a| a.n != n)
        .filter_map(|a| a.branch.clone())
        .collect();
    if !others.is_empty() {
        let op = CodeHostOp::DeleteBranches {
            repo: repo.clone(),
            branches: others,
        };
        queue(
            conn,
            guard,
            task,
            &op,
            &format!("drop-attempts:{}", task.id),
        )
        .await?;
    }
    Ok(())
}

/// The step that pushes `branch` of `task` and opens its pull request with `summary`.
fn publish_op(
    config: &Config,
    task: &Task,
    repo: &RepoName,
    branch: &str,
    summary: &str,
    diff_stat: Option<&str>,
    thread_link: Option<String>,
) -> CodeHostOp {
    CodeHostOp::Publish(Box::new(Publish {
        task_id: task.id.to_string(),
        turn_no: task.turn_no,
        repo: repo.clone(),
        branch: branch.to_string(),
        base: config
            .repos
            .get(repo.as_str())
            .and_then(|r| r.default_branch.clone()),
        prompt: task.prompt.clone(),
        summary: summary.to_string(),
        diff_stat: diff_stat.unwrap_or_default().to_string(),
        requester: task.requester.clone(),
        surface: task.binding.surface().as_str().to_string(),
        also: vec![],
        thread_link,
        draft: config.github.draft,
    }))
}

/// Queues a code-host step about `task`'s thread under `key` (a second one is a no-op).
pub async fn queue(
    conn: &mut AnyConnection,
    guard: &Guard,
    task: &Task,
    op: &CodeHostOp,
    key: &str,
) -> anyhow::Result<bool> {
    let row = NewRow {
        target: &task.binding,
        kind: "code_host",
        op,
        key,
        ref_key: None,
        last: false,
    };
    outbox::enqueue_in(conn, guard, CODE_HOST_LANE, row).await
}
