//! How Chime talks back on a surface: the small set of verbs every surface implements, and the
//! task cards (Block Kit) that chat surfaces share.
//!
//! Verbs write outbox rows inside the caller's transaction, so a reply exists exactly when the state
//! change that caused it does.

use crate::backend::QuotedMessage;
use crate::event::{Author, Surface, ThreadRef};
use crate::ids::{RepoName, TeamId, UserId};
use crate::local::LocalWorkspace;
use crate::outbox::{self, Op};
use crate::session::{Task, TaskState};
use crate::slack::people::SlackPeople;
use crate::templates::{chunk_for_blocks, truncate_chars, Rendered, Templates, MESSAGE_CHARS};
use async_trait::async_trait;
use serde_json::json;
use sqlx::AnyConnection;
use std::sync::Arc;

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
    /// Says something to someone in the thread: refusals and other user errors. `key` makes it
    /// idempotent; `to` is mentioned before the (escaped) text.
    async fn tell(
        &self,
        conn: &mut AnyConnection,
        thread: &ThreadRef,
        key: &str,
        to: &UserId,
        text: &str,
    ) -> anyhow::Result<()>;
    /// The thread's messages, quoted as data for the agent; empty when they cannot be read.
    async fn thread_context(&self, thread: &ThreadRef) -> Vec<QuotedMessage>;
    /// Whether this person may trigger work here.
    async fn check_member(&self, team: &TeamId, author: &Author) -> Membership;
}

/// Splits a thread key `T/C/ts` back into its parts.
pub fn parse_key(key: &str) -> Option<(String, String, String)> {
    let mut it = key.splitn(3, '/');
    Some((
        it.next()?.to_string(),
        it.next()?.to_string(),
        it.next()?.to_string(),
    ))
}

/// Where a chat surface looks up people and threads.
pub enum People {
    Slack(SlackPeople),
    Local(Arc<LocalWorkspace>),
}

/// A chat surface (Slack, or the local playground that stands in for it): Block Kit cards in a
/// thread, sent through the outbox by that surface's sender.
pub struct ChatReporter {
    pub surface: Surface,
    pub templates: Arc<Templates>,
    pub ack_reaction: String,
    pub people: People,
}

impl ChatReporter {
    async fn enqueue(
        &self,
        conn: &mut AnyConnection,
        target: &str,
        key: &str,
        ref_key: Option<&str>,
        op: Op,
    ) -> anyhow::Result<()> {
        outbox::enqueue(conn, self.surface, target, key, ref_key, &op).await?;
        Ok(())
    }

    async fn post_card(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        card: Rendered,
    ) -> anyhow::Result<()> {
        let (_, channel, thread_ts) = parse_key(&task.thread_key)
            .ok_or_else(|| anyhow::anyhow!("bad thread key {}", task.thread_key))?;
        let op = Op::Post {
            channel,
            thread_ts: Some(thread_ts),
            text: card.text,
            blocks: card.blocks,
        };
        self.enqueue(conn, &task.thread_key, &status_key(task), None, op)
            .await
    }

    async fn edit_card(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        key: &str,
        card: Rendered,
        last: bool,
    ) -> anyhow::Result<()> {
        let (_, channel, _) = parse_key(&task.thread_key)
            .ok_or_else(|| anyhow::anyhow!("bad thread key {}", task.thread_key))?;
        let op = Op::Update {
            channel,
            text: card.text,
            blocks: card.blocks,
            last,
        };
        self.enqueue(conn, &task.thread_key, key, Some(&status_key(task)), op)
            .await
    }
}

#[async_trait]
impl Reporter for ChatReporter {
    async fn ack(
        &self,
        conn: &mut AnyConnection,
        thread: &ThreadRef,
        message_ts: &str,
    ) -> anyhow::Result<()> {
        let op = Op::React {
            channel: thread.channel.to_string(),
            ts: message_ts.to_string(),
            name: self.ack_reaction.clone(),
        };
        let key = format!(
            "ack:{}:{}:{}:{}",
            self.surface.as_str(),
            thread.team,
            thread.channel,
            message_ts
        );
        self.enqueue(conn, &thread.key(), &key, None, op).await
    }

    async fn show_status(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()> {
        let card = status_card(&self.templates, task, None)?;
        self.post_card(conn, task, card).await
    }

    async fn update_status(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        progress: &str,
    ) -> anyhow::Result<()> {
        let card = status_card(&self.templates, task, Some(progress))?;
        let key = format!(
            "task:{}:progress:{}",
            task.id,
            uuid::Uuid::new_v4().simple()
        );
        self.edit_card(conn, task, &key, card, false).await
    }

    async fn show_result(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()> {
        let card = result_card(&self.templates, task)?;
        self.edit_card(conn, task, &final_key(task), card, true)
            .await
    }

    async fn ask_repo(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        repos: &[RepoName],
    ) -> anyhow::Result<()> {
        let card = repo_picker_card(&self.templates, task, repos)?;
        self.post_card(conn, task, card).await
    }

    async fn tell(
        &self,
        conn: &mut AnyConnection,
        thread: &ThreadRef,
        key: &str,
        to: &UserId,
        text: &str,
    ) -> anyhow::Result<()> {
        let card = notice_card(&self.templates, Some(to), text)?;
        let op = Op::Post {
            channel: thread.channel.to_string(),
            thread_ts: Some(thread.thread_ts.to_string()),
            text: card.text,
            blocks: card.blocks,
        };
        self.enqueue(conn, &thread.key(), key, None, op).await
    }

    async fn thread_context(&self, thread: &ThreadRef) -> Vec<QuotedMessage> {
        match &self.people {
            People::Slack(p) => p.thread_context(thread).await,
            People::Local(w) => w.thread_context(thread).await,
        }
    }

    async fn check_member(&self, team: &TeamId, author: &Author) -> Membership {
        match &self.people {
            People::Slack(p) => p.check_member(team, author).await,
            People::Local(w) => w.check_member(author),
        }
    }
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

/// A notice, optionally addressed to someone: the mention is Chime's own markup, the text is
/// escaped like everything else.
pub fn notice_card(t: &Templates, to: Option<&UserId>, text: &str) -> anyhow::Result<Rendered> {
    t.message(
        "notice",
        &json!({ "to": to, "text": truncate_chars(text, 2800) }),
    )
}
