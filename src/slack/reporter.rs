//! How Chime's answers appear in a Slack thread: Block Kit cards, written as [`SlackOp`] outbox
//! rows that `sender.rs` delivers. The playground imitates a Slack workspace, so it reports
//! through this same reporter (its rows go to its own sender).

use super::blocks::{BlockKit, Rendered};
use super::cards::{
    fallback_for, final_key, final_key_task, notice_card, repo_picker_card, result_card,
    status_card, status_key, suggestion_answered_card, suggestion_card,
};
use crate::binding::{Binding, Place};
use crate::connector::Reporter;
use crate::db::Db;
use crate::guard::Guard;
use crate::ids::{ChannelId, RepoName, TaskId, TeamId, ThreadTs, UserId};
use crate::policy::live::{Offer, OfferAnswer};
use crate::queue::outbox::{self, NewRow, OutboxRow};
use crate::session::{self, Task};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slack_morphism::prelude::SlackStreamChunk;
use sqlx::AnyConnection;
use std::sync::Arc;

/// What a Slack outbox row asks the Web API to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SlackOp {
    /// Add a reaction to a message.
    React {
        channel: String,
        ts: String,
        name: String,
    },
    /// Post a message in a thread; its ts is kept as the row's `external_ref`.
    Post {
        channel: String,
        thread_ts: Option<String>,
        text: String,
        blocks: Value,
    },
    /// A message only `user` sees.
    Ephemeral {
        channel: String,
        user: String,
        thread_ts: Option<String>,
        text: String,
        blocks: Value,
    },
    /// Post in the direct conversation between Chime and `user` (conversations.open, then
    /// chat.postMessage there).
    Direct {
        user: String,
        text: String,
        blocks: Value,
    },
    /// Set the thread's agent session status (`agents.sessions.setStatus`).
    AgentStatus {
        channel: String,
        thread_ts: String,
        status: String,
    },
    /// Publish `user`'s App Home tab (`views.publish`).
    Home { user: String, view: Value },
    /// Starters atop an assistant thread (`assistant.threads.setSuggestedPrompts`), as
    /// (title, message) pairs.
    SuggestedPrompts {
        channel: String,
        thread_ts: String,
        title: String,
        prompts: Vec<(String, String)>,
    },
    /// Replace the message posted by the row whose key is the row's `ref_key`.
    Update {
        channel: String,
        text: String,
        blocks: Value,
    },
    /// Start a turn's streamed reply showing its plan (`chat.startStream`, plan display); its ts,
    /// as `stream:TS`, is the row's `external_ref`. Where the workspace refuses streams, `text`
    /// and `blocks` (the status card) are posted instead and the message's plain ts is kept.
    StreamStart {
        channel: String,
        thread_ts: String,
        recipient_user: String,
        recipient_team: Option<String>,
        chunks: Vec<SlackStreamChunk>,
        text: String,
        blocks: Value,
    },
    /// The plan as it stands, appended to the stream started by the row whose key is `ref_key`
    /// (`chat.appendStream`), or the status card edited in place when that row posted one.
    StreamAppend {
        channel: String,
        chunks: Vec<SlackStreamChunk>,
        text: String,
        blocks: Value,
    },
    /// The turn's end: the stream stopped with the final card (`chat.stopStream`), or the posted
    /// status card replaced by it.
    StreamStop {
        channel: String,
        chunks: Vec<SlackStreamChunk>,
        text: String,
        blocks: Value,
    },
}

impl SlackOp {
    /// The row's `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            SlackOp::React { .. } => "react",
            SlackOp::Post { .. } => "post",
            SlackOp::Update { .. } => "update",
            SlackOp::Ephemeral { .. } => "ephemeral",
            SlackOp::Home { .. } => "home",
            SlackOp::Direct { .. } => "direct",
            SlackOp::AgentStatus { .. } => "agent_status",
            SlackOp::SuggestedPrompts { .. } => "suggested_prompts",
            SlackOp::StreamStart { .. } => "stream_start",
            SlackOp::StreamAppend { .. } => "stream_append",
            SlackOp::StreamStop { .. } => "stream_stop",
        }
    }
}

/// How a streamed reply's ts is kept as its row's `external_ref` (a posted card keeps its bare ts).
pub const STREAMED: &str = "stream:";

/// The channel and thread root of a thread binding.
pub fn thread_of(b: &Binding) -> (String, String) {
    match b {
        Binding::SlackThread {
            channel, thread, ..
        }
        | Binding::LocalThread { channel, thread } => (channel.to_string(), thread.to_string()),
        // Never written by this reporter: a Linear binding has its own (an empty channel is
        // refused by the sender, never guessed).
        Binding::Linear { .. } | Binding::Ide { .. } => (String::new(), String::new()),
    }
}

/// Block Kit cards in a thread.
pub struct ThreadReporter {
    pub cards: Arc<BlockKit>,
    /// Scans every row this reporter writes (the output guard's outbox choke point).
    pub guard: Arc<Guard>,
    /// The reaction that acknowledges a request.
    pub ack_reaction: String,
    /// The Slack workspace Chime serves, once auth.test has said (None: the playground, which
    /// has no direct messages).
    pub home_team: Option<Arc<std::sync::RwLock<Option<String>>>>,
    /// A turn's progress is one streamed reply (`slack.progress = "stream"`), not an edited card.
    pub stream: bool,
}

impl ThreadReporter {
    async fn write(
        &self,
        conn: &mut AnyConnection,
        target: &Binding,
        key: &str,
        ref_key: Option<&str>,
        op: SlackOp,
        last: bool,
    ) -> anyhow::Result<bool> {
        let row = NewRow {
            target,
            kind: op.kind(),
            op: &op,
            key,
            ref_key,
            last,
        };
        outbox::enqueue(conn, &self.guard, row).await
    }

    /// Slack's own status of the thread's agent session: `processing` while a turn runs, `active`
    /// once it answered. Only for Slack threads (the playground has no agent sessions).
    async fn agent_status(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        status: &str,
    ) -> anyhow::Result<()> {
        if !matches!(task.binding, Binding::SlackThread { .. }) {
            return Ok(());
        }
        let (channel, thread_ts) = thread_of(&task.binding);
        let op = SlackOp::AgentStatus {
            channel,
            thread_ts,
            status: status.to_string(),
        };
        let key = format!("task:{}:agent-status:{status}", task.id);
        self.write(conn, &task.binding, &key, None, op, false)
            .await?;
        Ok(())
    }

    /// The task with the agent's text scanned before the card cuts it to Block Kit's sizes, so a
    /// secret is never cut in half past the guard's notice (the row is scanned again as written).
    fn uncut(&self, task: &Task) -> Task {
        let mut task = task.clone();
        let clean = |s: &str| self.guard.redact(s, "result").into_owned();
        task.error = task.error.as_deref().map(clean);
        if let Some(o) = &mut task.outcome {
            o.summary = clean(&o.summary);
            o.diff_stat = o.diff_stat.as_deref().map(clean);
            for a in &mut o.attempts {
                a.summary = clean(&a.summary);
                a.checks = a.checks.as_deref().map(clean);
                a.error = a.error.as_deref().map(clean);
                a.diff_stat = a.diff_stat.as_deref().map(clean);
            }
        }
        task
    }

    async fn post_card(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        card: Rendered,
    ) -> anyhow::Result<()> {
        let (channel, thread) = thread_of(&task.binding);
        let op = SlackOp::Post {
            channel,
            thread_ts: Some(thread),
            text: card.text,
            blocks: card.blocks,
        };
        self.write(conn, &task.binding, &status_key(task), None, op, false)
            .await?;
        Ok(())
    }

    async fn edit_card(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        key: &str,
        card: Rendered,
        last: bool,
    ) -> anyhow::Result<()> {
        let (channel, _) = thread_of(&task.binding);
        let op = SlackOp::Update {
            channel,
            text: card.text,
            blocks: card.blocks,
        };
        let status = status_key(task);
        self.write(conn, &task.binding, key, Some(&status), op, last)
            .await?;
        Ok(())
    }

    /// When a task's final card is refused for good (`invalid_blocks`, `msg_too_long`, or
    /// transient errors past the attempt cap), queues a minimal card in its place, so whoever
    /// asked always learns how the task ended. A fallback's own key does not end in `:final`,
    /// so a refused fallback is not followed by another.
    pub async fn queue_fallback(
        &self,
        db: &Db,
        row: &OutboxRow,
        refusal: &str,
    ) -> anyhow::Result<bool> {
        let Some(task_id) = final_key_task(&row.idempotency_key).filter(|_| row.last) else {
            return Ok(false);
        };
        let mut conn = db.pool.acquire().await?;
        let Some(task) = session::get_task(&mut conn, &TaskId::new(task_id)).await? else {
            return Ok(false);
        };
        let card = fallback_for(&self.cards, &task, refusal)?;
        let key = format!("{}:fallback", row.idempotency_key);
        // Edit the status message in place when it exists; when it was never posted, post.
        let posted = match &row.ref_key {
            Some(k) => outbox::external_ref(db, k).await?,
            None => None,
        };
        let (channel, thread) = thread_of(&task.binding);
        let (op, ref_key) = match posted {
            Some((state, Some(r))) if state == "done" && r.starts_with(STREAMED) => (
                SlackOp::StreamStop {
                    channel,
                    chunks: vec![],
                    text: card.text,
                    blocks: card.blocks,
                },
                row.ref_key.as_deref(),
            ),
            Some((state, Some(_))) if state == "done" => (
                SlackOp::Update {
                    channel,
                    text: card.text,
                    blocks: card.blocks,
                },
                row.ref_key.as_deref(),
            ),
            _ => (
                SlackOp::Post {
                    channel,
                    thread_ts: Some(thread),
                    text: card.text,
                    blocks: card.blocks,
                },
                None,
            ),
        };
        self.write(&mut conn, &task.binding, &key, ref_key, op, true)
            .await
    }
}

#[async_trait]
impl Reporter for ThreadReporter {
    async fn ack(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        message: &str,
    ) -> anyhow::Result<()> {
        let (channel, _) = thread_of(binding);
        let op = SlackOp::React {
            channel,
            ts: message.to_string(),
            name: self.ack_reaction.clone(),
        };
        let key = format!("ack:{binding}:{message}");
        self.write(conn, binding, &key, None, op, false).await?;
        Ok(())
    }

    async fn show_status(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()> {
        let card = status_card(&self.cards, task, None)?;
        if self.stream {
            let (channel, thread_ts) = thread_of(&task.binding);
            let recipient_team = match &task.binding {
                Binding::SlackThread { team, .. } => Some(team.to_string()),
                _ => None,
            };
            let op = SlackOp::StreamStart {
                channel,
                thread_ts,
                recipient_user: task.requester.clone(),
                recipient_team,
                chunks: super::stream::plan_chunks(task, &self.guard),
                text: card.text,
                blocks: card.blocks,
            };
            self.write(conn, &task.binding, &status_key(task), None, op, false)
                .await?;
        } else {
            self.post_card(conn, task, card).await?;
        }
        self.agent_status(conn, task, "processing").await
    }

    async fn update_status(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        progress: &str,
    ) -> anyhow::Result<()> {
        let progress = self.guard.redact(progress, "progress");
        let card = status_card(&self.cards, task, Some(&progress))?;
        let key = format!(
            "task:{}:progress:{}",
            task.id,
            uuid::Uuid::new_v4().simple()
        );
        if self.stream {
            let (channel, _) = thread_of(&task.binding);
            let op = SlackOp::StreamAppend {
                channel,
                chunks: super::stream::plan_chunks(task, &self.guard),
                text: card.text,
                blocks: card.blocks,
            };
            self.write(
                conn,
                &task.binding,
                &key,
                Some(&status_key(task)),
                op,
                false,
            )
            .await?;
            return Ok(());
        }
        self.edit_card(conn, task, &key, card, false).await
    }

    async fn show_result(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()> {
        let card = result_card(&self.cards, &self.uncut(task))?;
        if self.stream {
            let (channel, _) = thread_of(&task.binding);
            let op = SlackOp::StreamStop {
                channel,
                chunks: super::stream::plan_chunks(task, &self.guard),
                text: card.text,
                blocks: card.blocks,
            };
            let status = status_key(task);
            self.write(
                conn,
                &task.binding,
                &final_key(task),
                Some(&status),
                op,
                true,
            )
            .await?;
        } else {
            self.edit_card(conn, task, &final_key(task), card, true)
                .await?;
        }
        self.agent_status(conn, task, "active").await
    }

    async fn ask_repo(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        repos: &[RepoName],
    ) -> anyhow::Result<()> {
        let card = repo_picker_card(&self.cards, task, repos)?;
        self.post_card(conn, task, card).await
    }

    async fn tell(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        key: &str,
        to: &UserId,
        text: &str,
    ) -> anyhow::Result<()> {
        let card = notice_card(&self.cards, Some(to), text)?;
        let (channel, thread) = thread_of(binding);
        let op = SlackOp::Post {
            channel,
            thread_ts: Some(thread),
            text: card.text,
            blocks: card.blocks,
        };
        self.write(conn, binding, key, None, op, false).await?;
        Ok(())
    }

    async fn tell_privately(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        key: &str,
        to: &UserId,
        text: &str,
    ) -> anyhow::Result<()> {
        let card = notice_card(&self.cards, None, text)?;
        let (channel, thread) = thread_of(binding);
        let op = SlackOp::Ephemeral {
            channel,
            user: to.to_string(),
            thread_ts: Some(thread),
            text: card.text,
            blocks: card.blocks,
        };
        self.write(conn, binding, key, None, op, false).await?;
        Ok(())
    }

    async fn show_home(
        &self,
        conn: &mut AnyConnection,
        workspace: &TeamId,
        key: &str,
        home: &crate::home::Home,
    ) -> anyhow::Result<()> {
        let view = super::home::home_view(&self.cards, home)?;
        // One lane per person's home, so that their pages are published in the order made.
        let target = Binding::SlackThread {
            team: workspace.clone(),
            channel: ChannelId::new(home.user.as_str()),
            thread: ThreadTs::new("home"),
        };
        let op = SlackOp::Home {
            user: home.user.to_string(),
            view,
        };
        self.write(conn, &target, key, None, op, false).await?;
        Ok(())
    }

    async fn offer_starters(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        key: &str,
        starters: &[crate::connector::Starter],
    ) -> anyhow::Result<()> {
        let (channel, thread_ts) = thread_of(binding);
        let op = SlackOp::SuggestedPrompts {
            channel,
            thread_ts,
            title: "Start with one of these".into(),
            prompts: starters
                .iter()
                .map(|s| (s.title.clone(), s.message.clone()))
                .collect(),
        };
        self.write(conn, binding, key, None, op, false).await?;
        Ok(())
    }

    async fn post_digest(
        &self,
        conn: &mut AnyConnection,
        place: &Place,
        key: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        let message = super::blocks::text_message(text);
        // A top-level message: its own lane (the "thread" names the digest, never a real ts).
        let lane = ThreadTs::new(key.replace([':', '/'], "-"));
        let (target, channel) = match place {
            Place::Slack { team, channel } => (
                Binding::SlackThread {
                    team: team.clone(),
                    channel: channel.clone(),
                    thread: lane,
                },
                channel,
            ),
            Place::Local { channel } => (
                Binding::LocalThread {
                    channel: channel.clone(),
                    thread: lane,
                },
                channel,
            ),
            other => anyhow::bail!("not a chat place: {other:?}"),
        };
        let op = SlackOp::Post {
            channel: channel.to_string(),
            thread_ts: None,
            text: message["text"].as_str().unwrap_or_default().to_string(),
            blocks: message["blocks"].clone(),
        };
        self.write(conn, &target, key, None, op, false).await?;
        Ok(())
    }

    async fn show_mirrored(
        &self,
        conn: &mut AnyConnection,
        at: &Binding,
        task: &Task,
        origin: &str,
        result: bool,
    ) -> anyhow::Result<()> {
        let task = self.uncut(task);
        let Some(text) = session::links::mirrored_text(&task, origin, result) else {
            return Ok(());
        };
        let card = notice_card(&self.cards, None, &text)?;
        let (channel, thread) = thread_of(at);
        let op = SlackOp::Post {
            channel,
            thread_ts: Some(thread),
            text: card.text,
            blocks: card.blocks,
        };
        let key = format!("task:{}:mirror:{at}", task.id);
        self.write(conn, at, &key, None, op, false).await?;
        Ok(())
    }

    async fn show_direct(
        &self,
        conn: &mut AnyConnection,
        to: &UserId,
        task: &Task,
        origin: &str,
        result: bool,
    ) -> anyhow::Result<()> {
        let task = self.uncut(task);
        let Some(text) = session::links::mirrored_text(&task, origin, result) else {
            return Ok(());
        };
        let key = format!("task:{}:direct:{to}", task.id);
        self.tell_directly(conn, to, &key, &text).await
    }

    async fn tell_directly(
        &self,
        conn: &mut AnyConnection,
        to: &UserId,
        key: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        let team = self
            .home_team
            .as_ref()
            .and_then(|t| t.read().ok().and_then(|g| g.clone()));
        let Some(team) = team else {
            anyhow::bail!("no direct messages: Chime does not know its Slack workspace yet");
        };
        let card = notice_card(&self.cards, None, text)?;
        // A lane of its own: the "thread" names this message, never a real ts.
        let target = Binding::SlackThread {
            team: crate::ids::TeamId::new(&team),
            channel: ChannelId::new(to.as_str()),
            thread: ThreadTs::new(key.replace([':', '/'], "-")),
        };
        let op = SlackOp::Direct {
            user: to.to_string(),
            text: card.text,
            blocks: card.blocks,
        };
        self.write(conn, &target, key, None, op, false).await?;
        Ok(())
    }

    async fn offer(&self, conn: &mut AnyConnection, offer: &Offer) -> anyhow::Result<()> {
        let card = suggestion_card(&self.cards, offer)?;
        let (channel, thread) = thread_of(&offer.binding);
        let op = match &offer.private_to {
            // Under a message that starts its thread, a private offer shows in the channel,
            // where its author is looking, not inside a thread nobody has opened.
            Some(user) => SlackOp::Ephemeral {
                channel,
                user: user.to_string(),
                thread_ts: (thread != offer.message).then_some(thread),
                text: card.text,
                blocks: card.blocks,
            },
            None => SlackOp::Post {
                channel,
                thread_ts: Some(thread),
                text: card.text,
                blocks: card.blocks,
            },
        };
        let key = format!("suggestion:{}:offer", offer.id);
        self.write(conn, &offer.binding, &key, None, op, false)
            .await?;
        Ok(())
    }

    async fn offer_answered(
        &self,
        conn: &mut AnyConnection,
        offer: &Offer,
        answer: &OfferAnswer,
    ) -> anyhow::Result<()> {
        let card = suggestion_answered_card(&self.cards, offer, answer)?;
        let (channel, thread) = thread_of(&offer.binding);
        if let Some(user) = &offer.private_to {
            // Slack cannot edit an ephemeral message: its author is told privately instead.
            let op = SlackOp::Ephemeral {
                channel,
                user: user.to_string(),
                thread_ts: (thread != offer.message).then_some(thread),
                text: card.text,
                blocks: card.blocks,
            };
            let key = format!("suggestion:{}:answer", offer.id);
            self.write(conn, &offer.binding, &key, None, op, true)
                .await?;
            return Ok(());
        }
        let op = SlackOp::Update {
            channel,
            text: card.text,
            blocks: card.blocks,
        };
        let key = format!("suggestion:{}:answer", offer.id);
        let posted = format!("suggestion:{}:offer", offer.id);
        self.write(conn, &offer.binding, &key, Some(&posted), op, true)
            .await?;
        Ok(())
    }
}
