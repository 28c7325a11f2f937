//! Delivers Slack outbox rows: reactions, threaded posts and in-place edits.

use super::api::{SendError, SlackApi};
use crate::db::Db;
use crate::event::Surface;
use crate::outbox::{self, backoff, Deliver, Delivery, Op, OutboxRow};
use crate::reporter::parse_key;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

pub struct SlackSender {
    pub api: Arc<SlackApi>,
}

#[async_trait]
impl Deliver for SlackSender {
    fn surface(&self) -> Surface {
        Surface::Slack
    }

    async fn deliver(&self, db: &Db, row: &OutboxRow) -> Delivery {
        let op = match &row.op {
            Ok(op) => op,
            Err(e) => return Delivery::Failed(format!("unreadable payload: {e}")),
        };
        let team = parse_key(&row.target)
            .map(|(t, _, _)| t)
            .unwrap_or_default();
        let result = match op {
            Op::React { channel, ts, name } => self
                .api
                .add_reaction(&team, channel, ts, name)
                .await
                .map(|_| None),
            Op::Post {
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
            Op::Update {
                channel,
                text,
                blocks,
                ..
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
