//! Delivers Slack outbox rows: reactions, threaded posts and in-place edits.

use super::api::{SendError, SlackApi};
use super::reporter::{thread_of, SlackOp, ThreadReporter, STREAMED};
use super::stream;
use crate::binding::{Binding, Surface};
use crate::db::Db;
use crate::queue::outbox::{self, backoff, Deliver, Delivery, OutboxRow};
use async_trait::async_trait;
use slack_morphism::prelude::SlackStreamChunk;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct SlackSender {
    pub api: Arc<SlackApi>,
    /// Slack refused agent session statuses (the app is not an agent): none are sent again.
    pub no_agent_sessions: Arc<AtomicBool>,
    /// Queues the fallback for a refused final card.
    pub reporter: Arc<ThreadReporter>,
}

#[async_trait]
impl Deliver for SlackSender {
    fn lane(&self) -> &'static str {
        Surface::Slack.as_str()
    }

    async fn deliver(&self, db: &Db, row: &OutboxRow) -> Delivery {
        let op: SlackOp = match row.op() {
            Ok(op) => op,
            Err(refused) => return refused,
        };
        let team = match row.binding() {
            Ok(Binding::SlackThread { team, .. }) => team.to_string(),
            Ok(other) => {
                return Delivery::Failed(format!("a Slack row for another surface: {other}"))
            }
            Err(refused) => return refused,
        };
        let result = match &op {
            SlackOp::React { channel, ts, name } => self
                .api
                .add_reaction(&team, channel, ts, name)
                .await
                .map(|_| None),
            SlackOp::Post {
                channel,
                thread_ts,
                text,
                blocks,
            } => {
                self.post_once(&team, channel, thread_ts.as_deref(), text, blocks, row)
                    .await
            }
            SlackOp::StreamStart {
                channel,
                thread_ts,
                recipient_user,
                recipient_team,
                chunks,
                text,
                blocks,
            } => {
                let start = StreamStart {
                    channel,
                    thread_ts,
                    recipient_user,
                    recipient_team: recipient_team.as_deref(),
                    chunks,
                };
                match self.start_stream(db, &team, &start).await {
                    Ok(Some(ts)) => Ok(Some(format!("{STREAMED}{ts}"))),
                    Ok(None) => {
                        self.post_once(&team, channel, Some(thread_ts), text, blocks, row)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            SlackOp::StreamAppend {
                channel,
                chunks,
                text,
                blocks,
            } => match outbox::update_target(db, row).await {
                Ok(target) => match target.strip_prefix(STREAMED) {
                    Some(ts) => match self.api.append_stream(&team, channel, ts, chunks).await {
                        // Progress only: the stop (or the result posted in its place) says the rest.
                        Err(SendError::Permanent(why)) => {
                            tracing::warn!(reason = %why, "Slack refused a plan update; the final result still follows");
                            Ok(None)
                        }
                        other => other.map(|_| None),
                    },
                    None => self
                        .api
                        .update_message(&team, channel, &target, text, blocks)
                        .await
                        .map(|_| None),
                },
                Err(delivery) => return delivery,
            },
            SlackOp::StreamStop {
                channel,
                chunks,
                text,
                blocks,
            } => match outbox::update_target(db, row).await {
                Ok(target) => match target.strip_prefix(STREAMED) {
                    Some(ts) => {
                        self.stop_stream(&team, channel, ts, chunks, text, blocks, row)
                            .await
                    }
                    None => self
                        .api
                        .update_message(&team, channel, &target, text, blocks)
                        .await
                        .map(|_| None),
                },
                Err(delivery) => return delivery,
            },
            SlackOp::Ephemeral {
                channel,
                user,
                thread_ts,
                text,
                blocks,
            } => self
                .api
                .post_ephemeral(&team, channel, user, thread_ts.as_deref(), text, blocks)
                .await
                .map(|_| None),
            SlackOp::Direct { user, text, blocks } => {
                match self
                    .api
                    .open_dm(&team, &crate::ids::UserId::new(user))
                    .await
                {
                    Ok(dm) => {
                        self.api
                            .post_message(&dm, None, text, blocks, &row.idempotency_key)
                            .await
                    }
                    Err(e) => Err(e),
                }
            }
            SlackOp::AgentStatus {
                channel,
                thread_ts,
                status,
            } => {
                if self.no_agent_sessions.load(Ordering::Relaxed) {
                    return Delivery::Sent(None);
                }
                match self
                    .api
                    .set_agent_status(&team, channel, thread_ts, status)
                    .await
                {
                    // An app not declared as an agent (or an older workspace) has no agent
                    // sessions: the status card already says everything; stop asking.
                    Err(SendError::Permanent(why)) => {
                        if !self.no_agent_sessions.swap(true, Ordering::Relaxed) {
                            tracing::warn!(reason = %why, "Slack refused agents.sessions.setStatus; Chime stops setting agent session statuses until restarted (declare the app as an agent to get Slack's stop button)");
                        }
                        Ok(None)
                    }
                    other => other.map(|_| None),
                }
            }
            SlackOp::SuggestedPrompts {
                channel,
                thread_ts,
                title,
                prompts,
            } => self
                .api
                .set_suggested_prompts(&team, channel, thread_ts, title, prompts)
                .await
                .map(|_| None),
            SlackOp::Home { user, view } => {
                self.api.publish_home(&team, user, view).await.map(|_| None)
            }
            SlackOp::Update {
                channel,
                text,
                blocks,
            } => match outbox::update_target(db, row).await {
                Ok(ts) => self
                    .api
                    .update_message(&team, channel, &ts, text, blocks)
                    .await
                    .map(|_| None),
                Err(delivery) => return delivery,
            },
        };
        match result {
            Ok(r) => Delivery::Sent(r),
            Err(SendError::RateLimited(after)) => Delivery::Wait(
                after.unwrap_or(Duration::from_secs(1)),
                "rate limited (429)".into(),
            ),
            Err(SendError::Transient(e)) => Delivery::RetryIn(backoff(row.attempts), e),
            Err(SendError::Permanent(e)) => Delivery::Failed(e),
        }
    }

    async fn refused(&self, db: &Db, row: &OutboxRow, why: &str) -> anyhow::Result<bool> {
        self.reporter.queue_fallback(db, row, why).await
    }
}

/// What a [`SlackOp::StreamStart`] asks of Slack.
struct StreamStart<'a> {
    channel: &'a str,
    thread_ts: &'a str,
    recipient_user: &'a str,
    recipient_team: Option<&'a str>,
    chunks: &'a [SlackStreamChunk],
}

impl SlackSender {
    /// Posts a message, unless an earlier attempt of the same row already did (after a crash
    /// between Slack taking it and the row being marked sent): then it adopts that message.
    async fn post_once(
        &self,
        team: &str,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: &serde_json::Value,
        row: &OutboxRow,
    ) -> Result<Option<String>, SendError> {
        if row.attempts > 1 {
            if let Some(ts) = self
                .find_posted(team, channel, thread_ts, &row.idempotency_key)
                .await
            {
                tracing::info!(ts = %ts, "adopted a message posted by an earlier attempt");
                return Ok(Some(ts));
            }
        }
        self.api
            .post_message(channel, thread_ts, text, blocks, &row.idempotency_key)
            .await
    }

    /// Starts a streamed reply: its ts, or `None` when the workspace refuses streams (now, or
    /// recently: remembered per workspace), so the caller posts the status card instead.
    async fn start_stream(
        &self,
        db: &Db,
        team: &str,
        s: &StreamStart<'_>,
    ) -> Result<Option<String>, SendError> {
        match stream::refused(db, team).await {
            Ok(true) => return Ok(None),
            Ok(false) => {}
            Err(e) => return Err(SendError::Transient(format!("{e:#}"))),
        }
        let started = self
            .api
            .start_stream(
                team,
                s.channel,
                s.thread_ts,
                s.recipient_user,
                s.recipient_team,
                s.chunks,
            )
            .await;
        let (reason, for_ms) = match started {
            Ok(ts) => return Ok(Some(ts)),
            Err(SendError::Permanent(why)) => (why, stream::REFUSAL_MS),
            Err(SendError::RateLimited(_)) => ("rate limited".to_string(), stream::RATE_LIMITED_MS),
            Err(e) => return Err(e),
        };
        tracing::warn!(team, reason = %reason, "Slack refused a streamed reply; this workspace's turns show an edited status message instead");
        stream::remember_refusal(db, team, &reason, for_ms)
            .await
            .map_err(|e| SendError::Transient(format!("{e:#}")))?;
        Ok(None)
    }

    /// Ends a streamed reply with the final card. When the message no longer streams, an earlier
    /// attempt of this row stopped it (it died before recording that), or Slack closed it (a turn
    /// resumed long after a crash): then the result is posted in the thread, once.
    #[allow(clippy::too_many_arguments)]
    async fn stop_stream(
        &self,
        team: &str,
        channel: &str,
        ts: &str,
        chunks: &[SlackStreamChunk],
        text: &str,
        blocks: &serde_json::Value,
        row: &OutboxRow,
    ) -> Result<Option<String>, SendError> {
        match self
            .api
            .stop_stream(team, channel, ts, chunks, text, blocks)
            .await
        {
            Err(SendError::Permanent(code)) if stream::not_streaming(&code) => {
                if row.attempts > 1 {
                    tracing::info!("the stream was already stopped by an earlier attempt");
                    return Ok(None);
                }
                let thread = row.binding().ok().map(|b| thread_of(&b).1);
                tracing::warn!(reason = %code, "the streamed reply was closed before its result; posting the result in the thread");
                self.post_once(team, channel, thread.as_deref(), text, blocks, row)
                    .await
            }
            other => other.map(|_| None),
        }
    }

    async fn find_posted(
        &self,
        team: &str,
        channel: &str,
        thread_ts: Option<&str>,
        key: &str,
    ) -> Option<String> {
        let thread_ts = thread_ts?;
        let messages = self.api.replies(team, channel, thread_ts).await.ok()?;
        messages.into_iter().find_map(|m| {
            let md = m.metadata?;
            let found = md.get("event_payload")?.get("chime_key")?.as_str()? == key;
            found.then_some(m.ts).flatten()
        })
    }
}
