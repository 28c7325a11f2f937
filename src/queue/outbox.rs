//! The durable outbox: every write to a platform is a row first, sent later by a sender that
//! honours rate limits and retries until the platform takes it.

use crate::binding::Binding;
use crate::db::Db;
use crate::guard::Guard;
use crate::ids::now_ms;
use anyhow::Context;
use serde::Serialize;
use sqlx::{AnyConnection, Row};

/// One stored write. The core knows where it goes (`target`, a binding), whether it ends a
/// message (`last`) and how to order it; what it does (`kind`, `payload`) belongs to the connector
/// that queued it, which alone parses it.
#[derive(Clone, Debug)]
pub struct OutboxRow {
    pub id: i64,
    /// Who sends it: a surface's name, or [`CODE_HOST_LANE`].
    pub lane: &'static str,
    /// The binding it is written to, in its text form (parsed by the sender that owns the row).
    pub target: String,
    pub kind: String,
    pub payload: String,
    pub idempotency_key: String,
    /// For an edit: the key of the row that posted the message it edits.
    pub ref_key: Option<String>,
    pub attempts: i64,
    /// The last edit of a message: never superseded, and supersedes every edit after it.
    pub last: bool,
}

impl OutboxRow {
    /// The row's binding; an error (the row is refused for good) when it names none.
    pub fn binding(&self) -> Result<Binding, Delivery> {
        self.target
            .parse()
            .map_err(|e| Delivery::Failed(format!("the row's target is not a binding: {e}")))
    }

    /// The connector's op, parsed from the payload; an unreadable one is refused for good.
    pub fn op<T: serde::de::DeserializeOwned>(&self) -> Result<T, Delivery> {
        serde_json::from_str(&self.payload)
            .map_err(|e| Delivery::Failed(format!("unreadable {} payload: {e}", self.kind)))
    }
}

/// A write to queue: see [`OutboxRow`].
pub struct NewRow<'a, T: Serialize> {
    pub target: &'a Binding,
    pub kind: &'a str,
    pub op: &'a T,
    pub key: &'a str,
    pub ref_key: Option<&'a str>,
    pub last: bool,
}

/// The lane of writes to the code host (pushes and pull requests of a thread's turns); the other
/// lanes are the surfaces', named like them.
pub const CODE_HOST_LANE: &str = "code_host";

/// Queues a platform write inside the caller's transaction. A second row with the same key is a
/// no-op, which is what makes a replayed event or a retried task post only once.
pub async fn enqueue<T: Serialize>(
    conn: &mut AnyConnection,
    guard: &Guard,
    row: NewRow<'_, T>,
) -> anyhow::Result<bool> {
    let lane = row.target.surface().as_str();
    enqueue_in(conn, guard, lane, row).await
}

/// [`enqueue`] for a lane other than the target's surface: GitHub writes about a thread.
///
/// This is the output guard's first choke point: every string of the row's payload (chat text
/// and blocks, a pull request's title and body, whatever a later surface writes) is scanned for
/// secrets before it is stored, so nothing the agent or a thread leaked can leave.
pub async fn enqueue_in<T: Serialize>(
    conn: &mut AnyConnection,
    guard: &Guard,
    lane: &str,
    row: NewRow<'_, T>,
) -> anyhow::Result<bool> {
    let mut payload = serde_json::to_value(row.op)?;
    guard.redact_json(&mut payload, row.kind);
    let n = sqlx::query(
        "INSERT INTO outbox (surface, target, kind, payload, idempotency_key, ref_key, last, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(lane)
    .bind(row.target.to_string())
    .bind(row.kind)
    .bind(payload.to_string())
    .bind(row.key)
    .bind(row.ref_key)
    .bind(i64::from(row.last))
    .bind(now_ms())
    .execute(conn)
    .await
    .context("queueing an outbox row")?
    .rows_affected();
    Ok(n == 1)
}

/// Open rows a claim looks at. Rows of one target go in id order, so only the oldest open row of
/// each target (its head) may be sent; the heads all lie in this window unless more rows than this
/// wait at once, and then the later ones simply wait for the next claim.
const CLAIM_WINDOW: i64 = 512;

/// Claims the next row that may be sent now: rows of one target (a thread) go strictly in order.
///
/// Two steps instead of one clever statement: read the oldest open rows, pick the heads of their
/// targets in Rust, then claim one with a conditional UPDATE. Losing a race to another sender
/// (in this process or another replica) just means trying the next head. This stays cheap however
/// the planner feels, where an anti-join per candidate row did not.
#[tracing::instrument(skip(db))]
pub async fn claim(
    db: &Db,
    lane: &'static str,
    lease_ms: i64,
) -> anyhow::Result<Option<OutboxRow>> {
    let now = now_ms();
    let open = sqlx::query(
        "SELECT id, target, state, next_at, lease_until FROM outbox \
         WHERE state IN ('pending', 'sending') AND surface = $1 ORDER BY id LIMIT $2",
    )
    .bind(lane)
    .bind(CLAIM_WINDOW)
    .fetch_all(&db.pool)
    .await
    .context("reading open outbox rows")?;
    let mut seen = std::collections::HashSet::new();
    for r in &open {
        let target: String = r.get("target");
        if !seen.insert(target) {
            continue; // Not the head of its target.
        }
        let state: String = r.get("state");
        let ready = match state.as_str() {
            "pending" => r.get::<i64, _>("next_at") <= now,
            _ => r.get::<i64, _>("lease_until") < now,
        };
        if !ready {
            continue;
        }
        let claimed = sqlx::query(
            "UPDATE outbox SET state = 'sending', lease_until = $1, attempts = attempts + 1 \
             WHERE id = $2 AND ((state = 'pending' AND next_at <= $3) OR (state = 'sending' AND lease_until < $3)) \
             RETURNING id, target, kind, idempotency_key, ref_key, attempts, payload, last",
        )
        .bind(now + lease_ms)
        .bind(r.get::<i64, _>("id"))
        .bind(now)
        .fetch_optional(&db.pool)
        .await
        .context("claiming an outbox row")?;
        if let Some(r) = claimed {
            return Ok(Some(OutboxRow {
                id: r.get("id"),
                lane,
                target: r.get("target"),
                kind: r.get("kind"),
                payload: r.get("payload"),
                idempotency_key: r.get("idempotency_key"),
                ref_key: r.get("ref_key"),
                attempts: r.get("attempts"),
                last: r.get::<i64, _>("last") != 0,
            }));
        }
    }
    Ok(None)
}

pub async fn mark_sent(db: &Db, id: i64, external_ref: Option<&str>) -> anyhow::Result<()> {
    sqlx::query("UPDATE outbox SET state = 'done', external_ref = $1, sent_at = $2, last_error = NULL WHERE id = $3")
        .bind(external_ref)
        .bind(now_ms())
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// An update made pointless by a later one to the same message.
pub async fn mark_superseded(db: &Db, id: i64) -> anyhow::Result<()> {
    sqlx::query("UPDATE outbox SET state = 'superseded', sent_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// Puts a row back for later. A `refund` gives back the attempt its claim counted: waiting for a
/// rate limit or for the message it edits is not a failure, so it never uses up the row's attempts.
pub async fn retry_later(
    db: &Db,
    id: i64,
    delay_ms: i64,
    error: &str,
    refund: bool,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE outbox SET state = 'pending', next_at = $1, last_error = $2, attempts = attempts - $3 WHERE id = $4",
    )
    .bind(now_ms() + delay_ms)
    .bind(error)
    .bind(i64::from(refund))
    .bind(id)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// The platform refused the write for good (e.g. the channel is gone); the row stays for operators.
pub async fn mark_failed(db: &Db, id: i64, error: &str) -> anyhow::Result<()> {
    sqlx::query("UPDATE outbox SET state = 'failed', last_error = $1 WHERE id = $2")
        .bind(error)
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The platform id of the message a row posted, once it is posted.
pub async fn external_ref(db: &Db, key: &str) -> anyhow::Result<Option<(String, Option<String>)>> {
    let row = sqlx::query("SELECT state, external_ref FROM outbox WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(&db.pool)
        .await?;
    Ok(row.map(|r| (r.get("state"), r.get("external_ref"))))
}

/// Whether an update row is pointless: a later update of the same message waits, or the message's
/// last update has already gone out.
pub async fn is_superseded(db: &Db, row: &OutboxRow) -> anyhow::Result<bool> {
    let Some(ref_key) = &row.ref_key else {
        return Ok(false);
    };
    if row.last {
        return Ok(false);
    }
    let n: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM outbox WHERE ref_key = $1 AND id <> $2 \
         AND ((id > $2 AND state IN ('pending', 'sending')) OR (state = 'done' AND last = 1))",
    )
    .bind(ref_key)
    .bind(row.id)
    .fetch_one(&db.pool)
    .await?
    .get("n");
    Ok(n > 0)
}

/// For an update row: the platform id of the message it edits, or what to do instead (it was
/// superseded, its message is not posted yet, or never will be).
pub async fn update_target(db: &Db, row: &OutboxRow) -> Result<String, Delivery> {
    match is_superseded(db, row).await {
        Ok(true) => return Err(Delivery::Superseded),
        Ok(false) => {}
        Err(e) => {
            return Err(Delivery::RetryIn(
                std::time::Duration::from_secs(1),
                format!("{e:#}"),
            ))
        }
    }
    let Some(ref_key) = &row.ref_key else {
        return Err(Delivery::Failed(
            "update without the key of the message it edits".into(),
        ));
    };
    match external_ref(db, ref_key).await {
        Ok(Some((state, Some(posted)))) if state == "done" => Ok(posted),
        Ok(Some((state, _))) if state == "failed" || state == "done" => Err(Delivery::Failed(
            format!("the message to edit ({ref_key}) was never posted"),
        )),
        Ok(_) => Err(Delivery::Wait(
            std::time::Duration::from_millis(500),
            "the message to edit is not posted yet".into(),
        )),
        Err(e) => Err(Delivery::RetryIn(
            std::time::Duration::from_secs(1),
            format!("{e:#}"),
        )),
    }
}

/// What became of one delivery attempt.
pub enum Delivery {
    Sent(Option<String>),
    Superseded,
    /// A transient failure: try again after the delay, up to `worker.max_send_attempts` attempts.
    RetryIn(std::time::Duration, String),
    /// Not a failure (rate limited, or waiting for the message to edit): try again after the delay
    /// without using up an attempt.
    Wait(std::time::Duration, String),
    Failed(String),
}

/// How a sender treats rows that keep failing.
#[derive(Clone)]
pub struct SendPolicy {
    /// Transient failures are retried with backoff this many times in all, then the row fails.
    pub max_attempts: i64,
}

/// Sends outbox rows to one surface's platform.
#[async_trait::async_trait]
pub trait Deliver: Send + Sync {
    /// The rows it sends: a surface's name, or [`CODE_HOST_LANE`].
    fn lane(&self) -> &'static str;
    async fn deliver(&self, db: &Db, row: &OutboxRow) -> Delivery;
    /// Called once after `row` was refused for good, so that whoever waits on it still learns
    /// what it was for (a task's final card gives way to a minimal one). Returns whether it
    /// queued something.
    async fn refused(&self, _db: &Db, _row: &OutboxRow, _why: &str) -> anyhow::Result<bool> {
        Ok(false)
    }
}

/// Rows this process parked as failed since it started, for the log line that parks one (the
/// rows themselves stay in the table: `chime inspect failed` lists them).
static PARKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Drains the outbox for one surface until `shutdown` fires. Several of these may run, in this
/// process and in other replicas: claims keep each row with one sender at a time.
pub async fn run_sender(
    db: Db,
    deliver: std::sync::Arc<dyn Deliver>,
    wake: std::sync::Arc<tokio::sync::Notify>,
    shutdown: tokio_util::sync::CancellationToken,
    poll: std::time::Duration,
    policy: SendPolicy,
) {
    let lane = deliver.lane();
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let row = match claim(&db, lane, 60_000).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "outbox claim failed");
                None
            }
        };
        let Some(row) = row else {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.cancelled() => return,
            }
            continue;
        };
        let span = tracing::info_span!("outbox", id = row.id, key = %row.idempotency_key, lane);
        let outcome = tokio::select! {
            d = tracing::Instrument::instrument(deliver.deliver(&db, &row), span.clone()) => d,
            // Leaving mid-send is safe: the lease runs out and the row is retried (posts are
            // matched to an earlier attempt by their metadata before being re-sent).
            _ = shutdown.cancelled() => return,
        };
        // A transient failure that keeps coming back would hold its thread's queue forever.
        let outcome = match outcome {
            Delivery::RetryIn(_, why) if row.attempts >= policy.max_attempts => {
                Delivery::Failed(format!("gave up after {} attempts: {why}", row.attempts))
            }
            other => other,
        };
        // Record the outcome inside the row's span. The span is attached to the future, never
        // entered across an await: a guard held over an await can be dropped on another thread,
        // which corrupts the subscriber's span bookkeeping (it panicked here under load).
        let record = async {
            let (db, id) = (&db, row.id);
            let result = crate::db::retry("recording a delivery outcome", || async {
                match &outcome {
                    Delivery::Sent(r) => mark_sent(db, id, r.as_deref()).await,
                    Delivery::Superseded => mark_superseded(db, id).await,
                    Delivery::RetryIn(d, why) => {
                        retry_later(db, id, d.as_millis() as i64, why, false).await
                    }
                    Delivery::Wait(d, why) => {
                        retry_later(db, id, d.as_millis() as i64, why, true).await
                    }
                    Delivery::Failed(why) => mark_failed(db, id, why).await,
                }
            })
            .await;
            match &outcome {
                Delivery::RetryIn(d, why) | Delivery::Wait(d, why) => {
                    tracing::info!(retry_in_ms = d.as_millis() as u64, reason = %why, "delivery postponed")
                }
                Delivery::Failed(why) => {
                    let parked = PARKED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    tracing::error!(reason = %why, parked_since_start = parked, "delivery refused for good; row parked as failed (see `chime inspect failed`)");
                }
                _ => {}
            }
            if let Err(e) = result {
                tracing::error!(error = %format!("{e:#}"), "recording delivery outcome failed");
            } else if let Delivery::Failed(why) = &outcome {
                // Whoever asked must still learn how their task ended.
                match deliver.refused(db, &row, why).await {
                    Ok(true) => {
                        tracing::warn!("queued a fallback card in place of the refused final card");
                        wake.notify_one();
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "could not queue a fallback card")
                    }
                }
            }
        };
        tracing::Instrument::instrument(record, span).await;
    }
}

/// Exponential backoff for transient failures: 1 s, 2 s, 4 s … capped at five minutes.
pub fn backoff(attempts: i64) -> std::time::Duration {
    std::time::Duration::from_secs(1u64 << attempts.clamp(0, 8) as u64)
        .min(std::time::Duration::from_secs(300))
}
