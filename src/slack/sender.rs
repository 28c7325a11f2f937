//! Delivers Slack outbox rows: reactions, threaded posts and in-place edits.

use super::api::{SendError, SlackApi};
use super::reporter::{SlackOp, ThreadReporter};
use crate::binding::{Binding, Surface};
use crate::db::Db;
use crate::queue::outbox::{self, backoff, Deliver, Delivery, OutboxRow};
use async_trait::async_trait;
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
                if row.attempts > 1 {
                    // An earlier attempt may have posted before the process died: adopt that message.
                    if let Some(ts) = self
                        .find_posted(&team, channel, thread_ts.as_deref(), &row.idempotency_key)
                        .await
                    {
                        tracing::info!(ts = %ts, "adopted a message posted by an earlier attempt");
                        return Delivery::Sent(Some(ts));
                    }
                }
                self.api
                    .post_message(
                        channel,
                        thread_ts.as_deref(),
                        text,
                        blocks,
                        &row.idempotency_key,
                    )
                    .await
            }
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

impl SlackSender {
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
