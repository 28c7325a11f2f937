//! Delivers local outbox rows into the playground's own message store, as Slack's API would.

use super::{LocalWorkspace, BOT_USER};
use crate::db::Db;
use crate::event::Surface;
use crate::outbox::{self, Deliver, Delivery, Op, OutboxRow};
use async_trait::async_trait;
use std::sync::Arc;

pub struct LocalSender {
    pub workspace: Arc<LocalWorkspace>,
}

#[async_trait]
impl Deliver for LocalSender {
    fn surface(&self) -> Surface {
        Surface::Local
    }

    async fn deliver(&self, db: &Db, row: &OutboxRow) -> Delivery {
        let op = match &row.op {
            Ok(op) => op,
            Err(e) => return Delivery::Failed(format!("unreadable payload: {e}")),
        };
        let result = match op {
            Op::React { ts, name, .. } => self.workspace.add_reaction(ts, name).await.map(|_| None),
            Op::Post {
                channel,
                thread_ts,
                text,
                blocks,
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
            Op::Update { text, blocks, .. } => match outbox::update_target(db, row).await {
                Ok(ts) => self.workspace.update(&ts, text, blocks).await.map(|_| None),
                Err(delivery) => return delivery,
            },
        };
        match result {
            Ok(r) => Delivery::Sent(r),
            Err(e) => Delivery::RetryIn(outbox::backoff(row.attempts), format!("{e:#}")),
        }
    }
}
