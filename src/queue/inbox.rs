//! The durable inbox: every accepted event is a row before the sender gets its 200.
//!
//! Inserts go through one writer task that commits whatever is waiting as one multi-row `INSERT`
//! (group commit), so a durable ack costs one statement and one commit per batch rather than one
//! per request. On SQLite the writer has its own native connection with automatic WAL checkpoints
//! off, and a checkpointer task on another connection keeps the WAL short, so no ack ever waits for
//! a checkpoint's writes and fsyncs.

use crate::db::Db;
use crate::event::Event;
use crate::ids::now_ms;
use anyhow::Context;
use sqlx::sqlite::SqliteConnection;
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

/// Largest batch one statement takes; bounds the latency of the first row in a batch.
const MAX_BATCH: usize = 512;
/// Batches up to this size run as prepared statements kept in the connection's cache; larger
/// (rarer) ones are prepared once and dropped, so the cache holds at most this many inbox inserts.
const CACHED_BATCH_SIZES: usize = 32;
/// SQLite: the checkpointer copies the WAL back into the database file this long after a commit.
/// Short, so that each pass is small: a pass is CPU work on the same core as the HTTP server, and
/// passes of 250 ms worth of pages showed up as 3-6 ms scheduling stalls (p99 at c=32 about 4.2 ms
/// instead of about 2 ms, at the same CPU per ack; see bench/RESULTS.md).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(10);
/// SQLite: once the WAL is this long (in pages: 128 MiB at 4 KiB), the writer finishes the
/// checkpointer's work itself between two batches, so that its next commit starts the WAL over
/// from the beginning of the file. See `checkpoint_loop`.
const WAL_RESTART_FRAMES: i64 = 32_768;
/// SQLite: before asking the writer to pause, the checkpointer repeats its pass until one copies
/// at most this many frames (or it made `MAX_CATCH_UP_PASSES`), so that the pause is short.
const CATCH_UP_FRAMES: i64 = 512;
const MAX_CATCH_UP_PASSES: u32 = 6;

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
        let accepted = rx
            .await
            .map_err(|_| anyhow::anyhow!("inbox writer dropped the request"))?
            .map_err(|e| anyhow::anyhow!("inbox insert failed: {e}"))?;
        match accepted {
            Accepted::New => crate::metrics::event_received(source),
            Accepted::Duplicate => crate::metrics::event_rejected(source, "duplicate"),
        }
        Ok(accepted)
    }
}

/// Where the writer commits.
enum Sink {
    /// SQLite: a dedicated native connection with automatic checkpoints off; each commit is
    /// signalled to the checkpointer.
    Sqlite {
        conn: SqliteConnection,
        committed: mpsc::Sender<()>,
        /// Set by the checkpointer when the WAL has grown long; see `WAL_RESTART_FRAMES`.
        restart_wal: Arc<AtomicBool>,
    },
    /// Postgres (or SQLite when the dedicated connections could not be opened): the shared pool.
    Pool,
}

async fn writer_loop(db: Db, mut rx: mpsc::Receiver<Pending>, wake: Arc<Notify>) {
    let mut sink = open_sqlite_sink(&db).await.unwrap_or(Sink::Pool);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = insert_batch(&db, &mut sink, &batch).await;
        let mut any_new = false;
        match result {
            Ok(outcomes) => {
                if let Sink::Sqlite { committed, .. } = &sink {
                    // A full channel means a checkpoint is already due.
                    let _ = committed.try_send(());
                }
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
        if let Sink::Sqlite {
            conn, restart_wal, ..
        } = &mut sink
        {
            if restart_wal.swap(false, Ordering::Relaxed) {
                // The checkpointer has copied nearly all of the WAL while this connection kept
                // appending, so the WAL never got back to its start. With no write in progress, a
                // passive checkpoint now copies the last few pages, and the next commit rewinds.
                if let Err(e) = checkpoint(conn, "PASSIVE").await {
                    tracing::warn!(error = %format!("{e:#}"), "WAL checkpoint on the inbox writer failed");
                }
            }
        }
    }
}

/// SQLite: opens the writer's connection and the checkpointer's, and starts the checkpointer.
/// None on Postgres, or (logged) when either connection cannot be opened.
async fn open_sqlite_sink(db: &Db) -> Option<Sink> {
    let opened = async {
        let Some(conn) = db.dedicated_sqlite("chime-inbox", false).await? else {
            return Ok(None);
        };
        let checkpointer = db
            .dedicated_sqlite("chime-checkpoint", true)
            .await?
            .context("no SQLite target for the checkpointer")?;
        anyhow::Ok(Some((conn, checkpointer)))
    }
    .await;
    match opened {
        Ok(Some((conn, checkpointer))) => {
            let (committed, commits) = mpsc::channel(1);
            let restart_wal = Arc::new(AtomicBool::new(false));
            tokio::spawn(checkpoint_loop(checkpointer, commits, restart_wal.clone()));
            Some(Sink::Sqlite {
                conn,
                committed,
                restart_wal,
            })
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "no dedicated SQLite connections for the inbox; writing through the pool");
            None
        }
    }
}

/// `INSERT ... VALUES (...), (...) ... ON CONFLICT DO NOTHING RETURNING ...` for `rows` rows;
/// `$1` is the shared `received_at`.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::with_capacity(120 + rows * 24);
    sql.push_str("INSERT INTO inbox (source, delivery_id, payload, received_at) VALUES ");
    for i in 0..rows {
        let n = 2 + 3 * i;
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("(${}, ${}, ${}, $1)", n, n + 1, n + 2));
    }
    sql.push_str(" ON CONFLICT (source, delivery_id) DO NOTHING RETURNING source, delivery_id");
    sql
}

/// Inserts a batch as one statement (one implicit transaction: all rows commit or none do) and
/// says, per request, whether its row is new. A delivery id seen twice in one batch is new once.
async fn insert_batch(
    db: &Db,
    sink: &mut Sink,
    batch: &[Pending],
) -> anyhow::Result<Vec<Accepted>> {
    // The first request for each key goes into the statement; repeats are duplicates of it.
    let mut unique: Vec<&Pending> = Vec::with_capacity(batch.len());
    if batch.len() > 1 {
        let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(batch.len());
        unique.extend(
            batch
                .iter()
                .filter(|p| seen.insert((p.source, p.delivery_id.as_str()))),
        );
    } else {
        unique.extend(batch);
    }

    let sql = insert_sql(unique.len());
    let now = now_ms();
    let persistent = unique.len() <= CACHED_BATCH_SIZES;
    // The same statement for either driver; sqlx types a query by its database.
    macro_rules! batch_query {
        ($db:ty) => {{
            let mut q = sqlx::query::<$db>(&sql).persistent(persistent).bind(now);
            for p in &unique {
                q = q
                    .bind(p.source)
                    .bind(p.delivery_id.as_str())
                    .bind(p.payload.as_str());
            }
            q
        }};
    }
    // Rows come back for the keys that were new.
    let inserted: Vec<(String, String)> = match sink {
        Sink::Sqlite { conn, .. } => batch_query!(sqlx::Sqlite)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
        Sink::Pool => batch_query!(sqlx::Any)
            .fetch_all(&db.pool)
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
    };

    if inserted.len() == batch.len() {
        // The usual case: every request was new.
        return Ok(vec![Accepted::New; batch.len()]);
    }
    let mut fresh: HashMap<(&str, &str), bool> = inserted
        .iter()
        .map(|(s, d)| ((s.as_str(), d.as_str()), true))
        .collect();
    Ok(batch
        .iter()
        .map(|p| {
            // Only the first request for a new key is new; a later one in the batch is its duplicate.
            match fresh.get_mut(&(p.source, p.delivery_id.as_str())) {
                Some(first @ true) => {
                    *first = false;
                    Accepted::New
                }
                _ => Accepted::Duplicate,
            }
        })
        .collect())
}

/// SQLite: copies committed WAL frames back into the database file from its own connection (and
/// thread), so the writer never pays for a checkpoint inside an ack. Runs a passive checkpoint
/// `CHECKPOINT_EVERY` after a commit. Ends, after a last checkpoint, when the writer stops.
///
/// A passive checkpoint cannot rewind the WAL while the writer keeps appending (under sustained
/// load there is no gap between batches), so the WAL file would only grow. Once it is longer than
/// `WAL_RESTART_FRAMES`, passes are repeated until one has little left to copy, and then the writer
/// is asked to copy that last bit itself between two batches: a short pause, after which its next
/// commit starts the WAL over.
async fn checkpoint_loop(
    mut conn: SqliteConnection,
    mut commits: mpsc::Receiver<()>,
    restart_wal: Arc<AtomicBool>,
) {
    let mut open = true;
    while open {
        open = commits.recv().await.is_some();
        if open {
            tokio::time::sleep(CHECKPOINT_EVERY).await;
        }
        let mut previous: Option<i64> = None;
        for pass in 1..=MAX_CATCH_UP_PASSES {
            let (log, backfilled) = match checkpoint(&mut conn, "PASSIVE").await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "WAL checkpoint failed; retrying after the next commit");
                    break;
                }
            };
            if log < WAL_RESTART_FRAMES {
                break;
            }
            // Frames this pass copied: about what the writer appended during the pass before.
            let copied = previous.map(|p| backfilled - p);
            if copied.is_some_and(|c| (0..=CATCH_UP_FRAMES).contains(&c))
                || pass == MAX_CATCH_UP_PASSES
            {
                restart_wal.store(true, Ordering::Relaxed);
                break;
            }
            previous = Some(backfilled);
        }
    }
}

/// Runs one checkpoint; returns the frames in the WAL and how many of them are in the database.
async fn checkpoint(conn: &mut SqliteConnection, mode: &str) -> anyhow::Result<(i64, i64)> {
    let row = sqlx::query(&format!("PRAGMA wal_checkpoint({mode})"))
        .fetch_one(&mut *conn)
        .await?;
    let (busy, log, backfilled): (i64, i64, i64) =
        (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
    tracing::debug!(mode, busy, log, backfilled, "WAL checkpoint");
    Ok((log, backfilled))
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
    // An idle poll reads instead of writing: on SQLite even an UPDATE that matches nothing takes
    // the write lock, which the ingest writer needs.
    let open = sqlx::query("SELECT 1 FROM inbox WHERE state IN ('pending', 'processing') AND lease_until <= $1 LIMIT 1")
        .bind(now)
        .fetch_optional(&db.pool)
        .await
        .context("looking for inbox rows")?;
    if open.is_none() {
        return Ok(vec![]);
    }
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

/// Records a failure. A transient one is retried with backoff (capped at five minutes) for as long
/// as it takes: an accepted event is never dropped. A `permanent` one (see [`crate::failure`]), or
/// a row that cannot even be read, is parked as `failed` with its reason, kept for an operator
/// (`chime inspect failed`).
pub async fn fail(db: &Db, row: &InboxRow, error: &str, permanent: bool) -> anyhow::Result<()> {
    let permanent = permanent || row.event.is_err();
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
