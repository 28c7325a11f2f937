//! The store: one sqlx pool over SQLite (embedded default) or Postgres (several replicas).
//!
//! Queries are written once in the SQL both databases share (`$n` placeholders, `ON CONFLICT`,
//! `RETURNING`); the few places that differ ask [`Db::kind`].

use crate::config::{redact_url, DatabaseConfig};
use anyhow::Context;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AnyPool, ConnectOptions, Executor};
use std::str::FromStr;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct Db {
    pub pool: AnyPool,
    pub kind: DbKind,
    /// SQLite only: how to open a dedicated connection beside the pool (the inbox writer's).
    sqlite: Option<SqliteTarget>,
}

#[derive(Clone, Debug)]
struct SqliteTarget {
    url: String,
    full_sync: bool,
}

pub type Row = AnyRow;

impl Db {
    #[tracing::instrument(skip_all, fields(url = %redact_url(&config.url)))]
    pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let (kind, url) = normalize_url(&config.url)?;
        let synchronous = if config.sqlite_synchronous == "full" {
            "FULL"
        } else {
            "NORMAL"
        };
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if kind == DbKind::Sqlite {
                        // WAL lets readers run beside the one writer; the busy timeout makes writers
                        // queue instead of failing when another connection holds the write lock.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute(format!("PRAGMA synchronous = {synchronous}").as_str())
                            .await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .with_context(|| format!("cannot open database {}", redact_url(&config.url)))?;
        let sqlite = (kind == DbKind::Sqlite).then(|| SqliteTarget {
            url: url.clone(),
            full_sync: synchronous == "FULL",
        });
        Ok(Self { pool, kind, sqlite })
    }

    /// SQLite only (None on Postgres): a dedicated native connection outside the pool, with the
    /// same pragmas as the pool's. The inbox writer uses one, so its hot path skips the `Any`
    /// layer and never waits for a pool slot. With `autocheckpoint` false, this connection never
    /// runs a WAL checkpoint itself at commit; another connection must (see `inbox`).
    pub async fn dedicated_sqlite(
        &self,
        name: &'static str,
        autocheckpoint: bool,
    ) -> anyhow::Result<Option<SqliteConnection>> {
        let Some(target) = &self.sqlite else {
            return Ok(None);
        };
        let mut options = SqliteConnectOptions::from_str(&target.url)
            .context("parsing the SQLite URL")?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if target.full_sync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // A batch's RETURNING rows come back without stalling the SQLite thread.
            .row_buffer_size(1024)
            .thread_name(move |id| format!("{name}-{id}"));
        if !autocheckpoint {
            options = options.pragma("wal_autocheckpoint", "0");
        }
        let conn = options
            .connect()
            .await
            .with_context(|| format!("opening a dedicated SQLite connection for {name}"))?;
        Ok(Some(conn))
    }

    #[tracing::instrument(skip_all)]
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.kind {
            DbKind::Sqlite => sqlx::migrate!("migrations/sqlite"),
            DbKind::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator
            .run(&self.pool)
            .await
            .context("applying database migrations")?;
        Ok(())
    }

    /// The row-locking clause of a claim: Postgres skips rows another replica is claiming; SQLite
    /// has one writer at a time, so the claiming UPDATE is already exclusive.
    pub fn skip_locked(&self) -> &'static str {
        match self.kind {
            DbKind::Postgres => " FOR UPDATE SKIP LOCKED",
            DbKind::Sqlite => "",
        }
    }

    /// Starts a write transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`):
    /// a deferred transaction that reads first and writes later fails with SQLITE_BUSY_SNAPSHOT,
    /// which no busy timeout cures, whenever another process wrote in between.
    pub async fn begin(&self) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.kind {
            DbKind::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            DbKind::Postgres => self.pool.begin().await,
        }
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

/// Untrusted text (a chat message, an agent's output or stderr) may hold U+0000, which Postgres
/// refuses in a TEXT column; bind such text through this, which stores U+FFFD instead, as invalid
/// UTF-8 already is.
pub fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}").into()
    } else {
        text.into()
    }
}

/// Retries a store operation a few times with a short backoff. For steps whose failure would
/// otherwise leave work to a lease that must expire first (recording a delivery, ending a task):
/// a database that is briefly busy or out of connections should cost milliseconds, not a lease.
pub async fn retry<T, F, Fut>(what: &str, mut op: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    for attempt in 1.. {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 6 => {
                tracing::warn!(error = %format!("{e:#}"), attempt, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

fn normalize_url(url: &str) -> anyhow::Result<(DbKind, String)> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((DbKind::Postgres, url.to_string()));
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        // Create the file on first start; an explicit `mode=` in the URL wins.
        let url = if rest.contains("mode=") || rest.contains(":memory:") {
            url.to_string()
        } else if rest.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        return Ok((DbKind::Sqlite, url));
    }
    anyhow::bail!(
        "DATABASE_URL must start with sqlite: or postgres://, got {}",
        redact_url(url)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_the_file() {
        assert_eq!(
            normalize_url("sqlite://chime.db").unwrap().1,
            "sqlite://chime.db?mode=rwc"
        );
        assert_eq!(
            normalize_url("sqlite://x.db?mode=ro").unwrap().1,
            "sqlite://x.db?mode=ro"
        );
        assert_eq!(
            normalize_url("postgres://h/db").unwrap().0,
            DbKind::Postgres
        );
        assert!(normalize_url("mysql://h/db").is_err());
    }
}
