//! The durable inbox: every accepted event is a row before the sender gets its 200.
//!
//! Inserts go through one writer task that commits whatever is waiting in a single transaction
//! (group commit), so a durable ack costs one fsync per batch rather than one per request.

use crate::db::Db;
use crate::event::Event;
use crate::ids::now_ms;
use anyhow::Context;
use sqlx::Row;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify};

/// Largest batch one transaction takes; bounds the latency of the first row in a batch.
const MAX_BATCH: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    New,
    Duplicate,
}

struct Pending {
    source: &'static str,
    delivery_id: String,
    payload: String,
    reply: oneshot::Sender<Result<Accepted, String>>,
}

#[derive(Clone)]
pub struct InboxWriter {
    tx: mpsc::Sender<Pending>,
}

impl InboxWriter {
    /// Starts the writer task; `wake` is notified after every commit so workers pick rows up at once.
    pub fn spawn(db: Db, wake: Arc<Notify>) -> Self {
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(writer_loop(db, rx, wake));
        Self { tx }
    }

    /// Stores an event durably. Returns once it is committed, or tells that it was seen before.
    pub async fn accept(
        &self,
        source: &'static str,
        delivery_id: &str,
        event: &Event,
    ) -> anyhow::Result<Accepted> {
        let payload = serde_json::to_string(event).context("serialising event")?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending {
                source,
                delivery_id: delivery_id.to_string(),
                payload,
                reply,
            })
            .await
            .map_err(|_| anyhow::anyhow!("inbox writer has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("inbox writer dropped the request"))?
            .map_err(|e| anyhow::anyhow!("inbox insert failed: {e}"))
    }
}

async fn writer_loop(db: Db, mut rx: mpsc::Receiver<Pending>, wake: Arc<Notify>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = insert_batch(&db, &batch).await;
        let mut any_new = false;
        match result {
            Ok(outcomes) => {
                for (p, outcome) in batch.drain(..).zip(outcomes) {
                    any_new |= outcome == Accepted::New;
                    let _ = p.reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), rows = batch.len(), "inbox batch insert failed");
                for p in batch.drain(..) {
                    let _ = p.reply.send(Err(format!("{e:#}")));
                }
            }
        }
        if any_new {
            wake.notify_waiters();
            wake.notify_one();
        }
    }
}

async fn insert_batch(db: &Db, batch: &[Pending]) -> anyhow::Result<Vec<Accepted>> {
    let now = now_ms();
    let mut tx = db.pool.begin().await?;
    let mut out = Vec::with_capacity(batch.len());
    for p in batch {
        let row = sqlx::query(
            "INSERT INTO inbox (source, delivery_id, payload, received_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (source, delivery_id) DO NOTHING RETURNING id",
        )
        .bind(p.source)
        .bind(&p.delivery_id)
        .bind(&p.payload)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        out.push(if row.is_some() {
            Accepted::New
        } else {
            Accepted::Duplicate
        });
    }
    tx.commit().await?;
    Ok(out)
}

#[derive(Debug)]
pub struct InboxRow {
    pub id: i64,
    pub source: String,
    pub delivery_id: String,
    pub attempts: i64,
    pub event: Result<Event, String>,
}

/// Claims up to `limit` pending rows (or rows whose lease ran out) for `lease_ms`.
#[tracing::instrument(skip(db))]
pub async fn claim(db: &Db, limit: i64, lease_ms: i64) -> anyhow::Result<Vec<InboxRow>> {
    let now = now_ms();
    let sql = format!(
        "UPDATE inbox SET state = 'processing', lease_until = $1, attempts = attempts + 1 \
         WHERE id IN (SELECT id FROM inbox WHERE state IN ('pending', 'processing') AND lease_until <= $2 \
                      ORDER BY id LIMIT $3{}) \
         RETURNING id, source, delivery_id, payload, attempts",
        db.skip_locked()
    );
    let rows = sqlx::query(&sql)
        .bind(now + lease_ms)
        .bind(now)
        .bind(limit)
        .fetch_all(&db.pool)
        .await
        .context("claiming inbox rows")?;
    let mut out: Vec<InboxRow> = rows
        .into_iter()
        .map(|r| {
            let payload: String = r.get("payload");
            InboxRow {
                id: r.get("id"),
                source: r.get("source"),
                delivery_id: r.get("delivery_id"),
                attempts: r.get("attempts"),
                event: serde_json::from_str(&payload).map_err(|e| e.to_string()),
            }
        })
        .collect();
    out.sort_by_key(|r| r.id);
    Ok(out)
}

pub async fn complete(db: &Db, id: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE inbox SET state = 'done', last_error = NULL WHERE id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Records a failure. The row is retried with backoff (capped at five minutes) for as long as it
/// takes: an accepted event is never dropped. Only a row that cannot even be read is parked as
/// `failed`, kept for an operator.
pub async fn fail(db: &Db, row: &InboxRow, error: &str) -> anyhow::Result<()> {
    let permanent = row.event.is_err();
    let backoff = (250 * (1i64 << row.attempts.clamp(0, 11))).min(300_000);
    sqlx::query("UPDATE inbox SET state = $1, last_error = $2, lease_until = $3 WHERE id = $4")
        .bind(if permanent { "failed" } else { "pending" })
        .bind(error)
        .bind(now_ms() + backoff)
        .bind(row.id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

pub async fn count(db: &Db) -> anyhow::Result<i64> {
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM inbox")
        .fetch_one(&db.pool)
        .await?
        .get("n"))
}

/// Marks a row handled inside the handler's own transaction, so its effects and its completion
/// commit together.
pub async fn complete_in(conn: &mut sqlx::AnyConnection, id: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE inbox SET state = 'done', last_error = NULL WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}
