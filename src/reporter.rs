//! How Chime talks back on a surface: the small set of verbs every surface implements, and the
//! task cards (Block Kit) that chat surfaces share.
//!
//! Verbs write outbox rows inside the caller's transaction, so a reply exists exactly when the state
//! change that caused it does.

use crate::backend::QuotedMessage;
use crate::event::{Author, ThreadRef};
use crate::ids::{RepoName, TeamId};
use crate::session::{Task, TaskState};
use crate::templates::{chunk_for_blocks, truncate_chars, Rendered, Templates, MESSAGE_CHARS};
use async_trait::async_trait;
use serde_json::json;
use sqlx::AnyConnection;

/// Whether someone may start or stop work, and if not, why (shown to them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Membership {
    Allowed,
    Denied(String),
}

#[async_trait]
pub trait Reporter: Send + Sync {
    /// Shows the requester that Chime took the request (Slack: a reaction on the message).
    async fn ack(
        &self,
        conn: &mut AnyConnection,
        thread: &ThreadRef,
        message_ts: &str,
    ) -> anyhow::Result<()>;
    /// Posts the task's one status message.
    async fn show_status(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()>;
    /// Edits the status message in place with a milestone.
    async fn update_status(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        progress: &str,
    ) -> anyhow::Result<()>;
    /// Replaces the status message with the result, error or stop notice. Exactly once per task.
    async fn show_result(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()>;
    /// Asks which repository to use (as the task's status message).
    async fn ask_repo(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        repos: &[RepoName],
    ) -> anyhow::Result<()>;
    /// Says something to the thread: refusals and other user errors. `key` makes it idempotent.
    async fn tell(
        &self,
        conn: &mut AnyConnection,
        thread: &ThreadRef,
        key: &str,
        text: &str,
    ) -> anyhow::Result<()>;
    /// The thread's messages, quoted as data for the agent; empty when they cannot be read.
    async fn thread_context(&self, thread: &ThreadRef) -> Vec<QuotedMessage>;
    /// Whether this person may trigger work here.
    async fn check_member(&self, team: &TeamId, author: &Author) -> Membership;
}

pub fn status_key(task: &Task) -> String {
    format!("task:{}:status", task.id)
}

pub fn final_key(task: &Task) -> String {
    format!("task:{}:final", task.id)
}

fn repo_label(task: &Task) -> String {
    task.repo
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "none".into())
}

/// The status card: who asked, where, which backend, the latest milestone, and Stop.
pub fn status_card(t: &Templates, task: &Task, progress: Option<&str>) -> anyhow::Result<Rendered> {
    t.message(
        "status",
        &json!({
            "task_id": task.id,
            "requester": task.requester,
            "repo_label": repo_label(task),
            "backend": task.backend,
            "progress": progress.map(|p| truncate_chars(p, 1500)),
        }),
    )
}

pub fn repo_picker_card(
    t: &Templates,
    task: &Task,
    repos: &[RepoName],
) -> anyhow::Result<Rendered> {
    // A static select holds at most 100 options.
    let repos: Vec<&str> = repos.iter().take(100).map(|r| r.as_str()).collect();
    t.message(
        "repo_picker",
        &json!({ "task_id": task.id, "requester": task.requester, "repos": repos }),
    )
}

/// The final card, chosen by how the task ended.
pub fn result_card(t: &Templates, task: &Task) -> anyhow::Result<Rendered> {
    // Escaping (`&lt;`, JSON) makes rendered text longer than its source, so the budget for the
    // agent's text shrinks until the whole message fits.
    let mut budget = MESSAGE_CHARS - 2500;
    loop {
        let rendered = render_result(t, task, budget)?;
        let size = rendered.blocks.to_string().chars().count();
        if size <= MESSAGE_CHARS || budget < 500 {
            return Ok(rendered);
        }
        budget = budget * MESSAGE_CHARS / size * 9 / 10;
    }
}

fn render_result(t: &Templates, task: &Task, budget: usize) -> anyhow::Result<Rendered> {
    let base = json!({
        "task_id": task.id,
        "requester": task.requester,
        "repo_label": repo_label(task),
        "backend": task.backend,
        "turn_no": task.turn_no,
    });
    let mut view = base.as_object().cloned().unwrap_or_default();
    let name = match task.state {
        TaskState::Succeeded => {
            let outcome = task.outcome.clone().unwrap_or_default();
            let total = outcome.summary.chars().count();
            let (chunks, truncated) = chunk_for_blocks(&outcome.summary, budget);
            view.insert("summary_chunks".into(), json!(chunks));
            view.insert("truncated".into(), json!(truncated));
            view.insert("total_chars".into(), json!(total));
            view.insert(
                "headline".into(),
                json!(truncate_chars(
                    outcome.summary.lines().next().unwrap_or(""),
                    150
                )),
            );
            view.insert("branch".into(), json!(outcome.branch));
            view.insert(
                "commit".into(),
                json!(outcome
                    .commit
                    .map(|c| c.chars().take(12).collect::<String>())),
            );
            view.insert(
                "diff_stat".into(),
                json!(outcome
                    .diff_stat
                    .map(|d| truncate_chars(&d.replace("```", "ʼʼʼ"), 1500))),
            );
            view.insert("pr_url".into(), json!(outcome.pr_url));
            if outcome.dry_run {
                "dry_run"
            } else {
                "result"
            }
        }
        TaskState::Cancelled => {
            view.insert(
                "stopped_by".into(),
                json!(task
                    .cancelled_by
                    .clone()
                    .unwrap_or_else(|| task.requester.clone())),
            );
            "stopped"
        }
        _ => {
            let error = task.error.clone().unwrap_or_else(|| "unknown error".into());
            view.insert(
                "error".into(),
                json!(truncate_chars(&error.replace("```", "ʼʼʼ"), 2500)),
            );
            "failed"
        }
    };
    t.message(name, &view)
}

pub fn notice_card(t: &Templates, text: &str) -> anyhow::Result<Rendered> {
    t.message("notice", &json!({ "text": truncate_chars(text, 2800) }))
}
