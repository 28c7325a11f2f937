//! Delivers local outbox rows into the playground's own message store, as Slack's API would.

use super::{LocalWorkspace, BOT_USER};
use crate::binding::Surface;
use crate::db::Db;
use crate::queue::outbox::{self, Deliver, Delivery, OutboxRow};
use crate::slack::reporter::{SlackOp, ThreadReporter, STREAMED};
use async_trait::async_trait;
use std::sync::Arc;

pub struct LocalSender {
    pub workspace: Arc<LocalWorkspace>,
    /// Queues the fallback for a refused final card.
    pub reporter: Arc<ThreadReporter>,
}

#[async_trait]
impl Deliver for LocalSender {
    fn lane(&self) -> &'static str {
        Surface::Local.as_str()
    }

    async fn deliver(&self, db: &Db, row: &OutboxRow) -> Delivery {
        // The playground imitates Slack's Web API, so its rows are Slack's ops.
        let op: SlackOp = match row.op() {
            Ok(op) => op,
            Err(refused) => return refused,
        };
        let result = match &op {
            SlackOp::React { ts, name, .. } => {
                self.workspace.add_reaction(ts, name).await.map(|_| None)
            }
            // The playground has no per-person view: a private note shows in the thread like a
            // post.
            SlackOp::Post {
                channel,
                thread_ts,
                text,
                blocks,
            }
            | SlackOp::Ephemeral {
                channel,
                thread_ts,
                text,
                blocks,
                ..
            } => self
                .workspace
                // The outbox key makes a re-sent post find the first one instead of a duplicate.
                .insert(
                    channel,
                    thread_ts.as_deref(),
                    BOT_USER,
                    text,
                    Some(blocks),
                    Some(&row.idempotency_key),
                )
                .await
                .map(|m| Some(m.ts)),
            // Never written for the playground (it has no per-person page, nor DMs).
            SlackOp::Home { .. } => {
                return Delivery::Failed("the playground has no home page".into())
            }
            SlackOp::Direct { .. } => {
                return Delivery::Failed("the playground has no direct messages".into())
            }
            // Never written for the playground either: it has no agent sessions.
            SlackOp::AgentStatus { .. } => return Delivery::Sent(None),
            SlackOp::SuggestedPrompts { .. } => {
                return Delivery::Failed("the playground has no starters".into())
            }
            // The playground always streams: the status card shows the plan as it ticks over.
            SlackOp::StreamStart {
                channel,
                thread_ts,
                chunks,
                text,
                blocks,
                ..
            } => {
                let posted = self
                    .workspace
                    .insert(
                        channel,
                        Some(thread_ts),
                        BOT_USER,
                        text,
                        Some(blocks),
                        Some(&row.idempotency_key),
                    )
                    .await;
                match posted {
                    Ok(m) => self
                        .set_plan(&m.ts, chunks)
                        .await
                        .map(|_| Some(format!("{STREAMED}{}", m.ts))),
                    Err(e) => Err(e),
                }
            }
            SlackOp::StreamAppend {
                chunks,
                text,
                blocks,
                ..
            }
            | SlackOp::StreamStop {
                chunks,
                text,
                blocks,
                ..
            } => match outbox::update_target(db, row).await {
                Ok(target) => {
                    let ts = target.strip_prefix(STREAMED).unwrap_or(&target);
                    match self.workspace.update(ts, text, blocks).await {
                        Ok(_) => self.set_plan(ts, chunks).await.map(|_| None),
                        Err(e) => Err(e),
                    }
                }
                Err(delivery) => return delivery,
            },
            SlackOp::Update { text, blocks, .. } => match outbox::update_target(db, row).await {
                Ok(ts) => self.workspace.update(&ts, text, blocks).await.map(|_| None),
                Err(delivery) => return delivery,
            },
        };
        match result {
            Ok(r) => Delivery::Sent(r),
            Err(e) => Delivery::RetryIn(outbox::backoff(row.attempts), format!("{e:#}")),
        }
    }

    async fn refused(&self, db: &Db, row: &OutboxRow, why: &str) -> anyhow::Result<bool> {
        self.reporter.queue_fallback(db, row, why).await
    }
}

impl LocalSender {
    /// Keeps the plan's chunks (an empty list, as a refused card's fallback sends, keeps the last).
    async fn set_plan(
        &self,
        ts: &str,
        chunks: &[slack_morphism::prelude::SlackStreamChunk],
    ) -> anyhow::Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        self.workspace
            .set_plan(ts, &serde_json::to_value(chunks)?)
            .await
    }
}
