//! The local workspace: a built-in connector that takes Slack's place when Chime runs without
//! Slack credentials, or runs beside it (`chime serve --playground`). People write in its
//! channels through the playground page; mentions become the same `Event`s a Slack mention does
//! and go through the same inbox, router, tasks and outbox.
//!
//! The playground imitates a Slack workspace, so it shows Chime's Block Kit cards and stores
//! Slack's ops: `local` uses `slack::blocks` and `slack::reporter`, the one
//! deliberate exception to "no connector imports another" (see `tests/house.rs`).

pub mod connector;
pub mod guard;
pub mod http;
pub mod sender;

pub use connector::LocalConnector;

use crate::backend::QuotedMessage;
use crate::connector::Membership;
use crate::db::Db;
use crate::event::Author;
use crate::ids::{now_ms, ChannelId, ThreadTs};
use crate::templates::truncate_chars;
use serde::Serialize;
use serde_json::Value;
use sqlx::Row;
use std::sync::atomic::{AtomicI64, Ordering};
use tokio::sync::broadcast;

pub const TEAM: &str = "TLOCAL";
pub const BOT_USER: &str = "UCHIME";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Guest,
    External,
}

#[derive(Clone, Debug, Serialize)]
pub struct Person {
    pub id: &'static str,
    pub name: &'static str,
    pub role: Role,
}

#[derive(Clone, Debug, Serialize)]
pub struct Channel {
    pub id: &'static str,
    pub name: &'static str,
    /// A direct conversation with Chime: every message there is a request.
    pub is_dm: bool,
}

pub const PEOPLE: &[Person] = &[
    Person {
        id: "U0ANA",
        name: "ana",
        role: Role::Member,
    },
    Person {
        id: "U0BEN",
        name: "ben",
        role: Role::Member,
    },
    Person {
        id: "U0GUS",
        name: "gus (guest)",
        role: Role::Guest,
    },
    Person {
        id: "U0EVE",
        name: "eve (external)",
        role: Role::External,
    },
];

pub const CHANNELS: &[Channel] = &[
    Channel {
        id: "CGENERAL",
        name: "general",
        is_dm: false,
    },
    Channel {
        id: "CBACKEND",
        name: "backend",
        is_dm: false,
    },
    Channel {
        id: "DCHIME",
        name: "chime",
        is_dm: true,
    },
];

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LocalMessage {
    pub ts: String,
    pub channel: String,
    pub thread_ts: Option<String>,
    pub user: String,
    pub text: String,
    pub blocks: Option<Value>,
    pub reactions: Vec<String>,
    pub reply_count: i64,
    /// A streamed reply's plan: Slack's `plan_update` / `task_update` chunks as last sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Value>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What the page is told, live, over server-sent events.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // Sent once per change; boxing buys nothing here.
pub enum LocalEvent {
    Message { message: LocalMessage },
    Task { task_id: String },
}

pub struct LocalWorkspace {
    pub db: Db,
    pub events: broadcast::Sender<LocalEvent>,
    last_ts: AtomicI64,
    allow_guests: bool,
    allow_external: bool,
}

const COLUMNS: &str = "m.ts, m.channel, m.thread_ts, m.user_id, m.text, m.blocks, m.reactions, m.plan, m.created_at, m.updated_at, \
    (SELECT COUNT(*) FROM local_messages r WHERE r.thread_ts = m.ts) AS reply_count";

fn from_row(r: &crate::db::Row) -> LocalMessage {
    let blocks: Option<String> = r.get("blocks");
    let reactions: String = r.get("reactions");
    LocalMessage {
        ts: r.get("ts"),
        channel: r.get("channel"),
        thread_ts: r.get("thread_ts"),
        user: r.get("user_id"),
        text: r.get("text"),
        blocks: blocks.and_then(|b| serde_json::from_str(&b).ok()),
        reactions: serde_json::from_str(&reactions).unwrap_or_default(),
        reply_count: r.get("reply_count"),
        plan: r
            .get::<Option<String>, _>("plan")
            .and_then(|p| serde_json::from_str(&p).ok()),
        created_at: r.get("created_at"),
        updated_at: r.get("updated_at"),
    }
}

impl LocalWorkspace {
    pub fn new(db: Db, allow_guests: bool, allow_external: bool) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            db,
            events,
            last_ts: AtomicI64::new(0),
            allow_guests,
            allow_external,
        }
    }

    pub fn person(id: &str) -> Option<&'static Person> {
        PEOPLE.iter().find(|p| p.id == id)
    }

    pub fn channel(id: &str) -> Option<&'static Channel> {
        CHANNELS.iter().find(|c| c.id == id)
    }

    /// A Slack-style timestamp, unique within this process and increasing.
    fn next_ts(&self) -> String {
        let now = now_ms() * 1000;
        let mut prev = self.last_ts.load(Ordering::SeqCst);
        loop {
            let next = now.max(prev + 1);
            match self
                .last_ts
                .compare_exchange(prev, next, Ordering::SeqCst, Ordering::SeqCst)
            {
                Ok(_) => return format!("{}.{:06}", next / 1_000_000, next % 1_000_000),
                Err(p) => prev = p,
            }
        }
    }

    fn publish(&self, message: LocalMessage) {
        // Nobody listening is fine: the page reloads what it missed.
        let _ = self.events.send(LocalEvent::Message { message });
    }

    /// Stores a message; with `chime_key`, a second insert of the same key returns the first.
    pub async fn insert(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        user: &str,
        text: &str,
        blocks: Option<&Value>,
        chime_key: Option<&str>,
    ) -> anyhow::Result<LocalMessage> {
        let ts = self.next_ts();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO local_messages (ts, channel, thread_ts, user_id, text, blocks, chime_key, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (chime_key) DO NOTHING",
        )
        .bind(&ts)
        .bind(channel)
        .bind(thread_ts)
        .bind(user)
        .bind(crate::db::storable(text).as_ref())
        .bind(blocks.map(|b| b.to_string()))
        .bind(chime_key)
        .bind(now)
        .execute(&self.db.pool)
        .await?;
        let message = match chime_key {
            Some(key) => self.by_key(key).await?,
            None => self.get(&ts).await?,
        }
        .ok_or_else(|| anyhow::anyhow!("message vanished after insert"))?;
        self.publish(message.clone());
        if let Some(root) = thread_ts {
            if let Some(parent) = self.get(root).await? {
                self.publish(parent); // Its reply count changed.
            }
        }
        Ok(message)
    }

    pub async fn update(
        &self,
        ts: &str,
        text: &str,
        blocks: &Value,
    ) -> anyhow::Result<Option<LocalMessage>> {
        sqlx::query(
            "UPDATE local_messages SET text = $1, blocks = $2, updated_at = $3 WHERE ts = $4",
        )
        .bind(crate::db::storable(text).as_ref())
        .bind(blocks.to_string())
        .bind(now_ms())
        .bind(ts)
        .execute(&self.db.pool)
        .await?;
        let m = self.get(ts).await?;
        if let Some(m) = &m {
            self.publish(m.clone());
        }
        Ok(m)
    }

    /// Sets a streamed reply's plan (the whole list: each update replaces it, as in Slack).
    pub async fn set_plan(&self, ts: &str, plan: &Value) -> anyhow::Result<()> {
        sqlx::query("UPDATE local_messages SET plan = $1, updated_at = $2 WHERE ts = $3")
            .bind(plan.to_string())
            .bind(now_ms())
            .bind(ts)
            .execute(&self.db.pool)
            .await?;
        if let Some(m) = self.get(ts).await? {
            self.publish(m);
        }
        Ok(())
    }

    pub async fn add_reaction(&self, ts: &str, name: &str) -> anyhow::Result<()> {
        let Some(mut m) = self.get(ts).await? else {
            return Ok(());
        };
        if !m.reactions.iter().any(|r| r == name) {
            m.reactions.push(name.to_string());
            sqlx::query("UPDATE local_messages SET reactions = $1 WHERE ts = $2")
                .bind(serde_json::to_string(&m.reactions)?)
                .bind(ts)
                .execute(&self.db.pool)
                .await?;
            self.publish(m);
        }
        Ok(())
    }

    pub async fn get(&self, ts: &str) -> anyhow::Result<Option<LocalMessage>> {
        let sql = format!("SELECT {COLUMNS} FROM local_messages m WHERE m.ts = $1");
        Ok(sqlx::query(&sql)
            .bind(ts)
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(from_row))
    }

    async fn by_key(&self, key: &str) -> anyhow::Result<Option<LocalMessage>> {
        let sql = format!("SELECT {COLUMNS} FROM local_messages m WHERE m.chime_key = $1");
        Ok(sqlx::query(&sql)
            .bind(key)
            .fetch_optional(&self.db.pool)
            .await?
            .as_ref()
            .map(from_row))
    }

    /// A channel's top-level messages, oldest first (the newest 200).
    pub async fn channel_messages(&self, channel: &str) -> anyhow::Result<Vec<LocalMessage>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM local_messages m WHERE m.channel = $1 AND m.thread_ts IS NULL ORDER BY m.ts DESC LIMIT 200"
        );
        let mut out: Vec<LocalMessage> = sqlx::query(&sql)
            .bind(channel)
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(from_row)
            .collect();
        out.reverse();
        Ok(out)
    }

    /// A thread: its root, then its replies in order.
    pub async fn thread(&self, channel: &str, root: &str) -> anyhow::Result<Vec<LocalMessage>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM local_messages m WHERE m.channel = $1 AND (m.ts = $2 OR m.thread_ts = $2) ORDER BY m.ts"
        );
        Ok(sqlx::query(&sql)
            .bind(channel)
            .bind(root)
            .fetch_all(&self.db.pool)
            .await?
            .iter()
            .map(from_row)
            .collect())
    }

    pub async fn thread_context(&self, channel: &ChannelId, root: &ThreadTs) -> Vec<QuotedMessage> {
        let messages = match self.thread(channel.as_str(), root.as_str()).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the local thread");
                return vec![];
            }
        };
        messages
            .into_iter()
            .filter(|m| m.user != BOT_USER)
            .map(|m| QuotedMessage {
                author: format!("<@{}>", m.user),
                is_bot: false,
                text: truncate_chars(&m.text, 2000),
            })
            .collect()
    }

    pub fn check_member(&self, author: &Author) -> Membership {
        match Self::person(author.user.as_str()).map(|p| p.role) {
            Some(Role::Member) => Membership::Allowed,
            Some(Role::Guest) if self.allow_guests => Membership::Allowed,
            Some(Role::External) if self.allow_external => Membership::Allowed,
            Some(Role::Guest) => Membership::Denied(
                "guests cannot start or stop Chime tasks in this workspace".into(),
            ),
            Some(Role::External) => Membership::Denied(
                "people from other organisations cannot start or stop Chime tasks here".into(),
            ),
            None => Membership::Denied("unknown people cannot start or stop Chime tasks".into()),
        }
    }
}

/// Whether a message asks for Chime, and the request without the mention.
pub fn mention_text(text: &str, is_dm: bool) -> Option<String> {
    let lower = text.to_lowercase();
    let mentioned = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '@' || c == '_'))
        .any(|w| w == "@chime");
    if !mentioned && !is_dm {
        return None;
    }
    let stripped: Vec<&str> = text
        .split(' ')
        .filter(|w| !w.eq_ignore_ascii_case("@chime"))
        .collect();
    Some(stripped.join(" ").trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_found_and_stripped() {
        assert_eq!(
            mention_text("@chime add a health check", false).as_deref(),
            Some("add a health check")
        );
        assert_eq!(
            mention_text("hey @Chime, look", false).as_deref(),
            Some("hey @Chime, look")
        );
        assert_eq!(mention_text("no mention here", false), None);
        assert_eq!(mention_text("email me@chime.dev", false), None);
        assert_eq!(
            mention_text("just do it", true).as_deref(),
            Some("just do it")
        );
    }
}
