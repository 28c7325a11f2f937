//! The sessions read model: every session from every surface, newest first, with its turns. The
//! playground's Sessions view shows it today; the digest and App Home will read it too.

use crate::binding::{Binding, Surface};
use crate::db::Db;
use anyhow::Context;
use serde::Serialize;
use sqlx::Row;

#[derive(Clone, Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    /// Where the session started.
    pub entry_point: Surface,
    pub requester: String,
    pub repo: Option<String>,
    pub backend: String,
    pub created_at: i64,
    /// Every place the session is bound to, the first one first.
    pub bindings: Vec<Binding>,
    pub turns: Vec<TurnView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct TurnView {
    pub task_id: String,
    pub turn: i64,
    pub state: String,
    pub requester: String,
    pub attempts: i64,
    /// Where this turn was asked and answered.
    pub binding: Binding,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
}

/// The `limit` newest sessions.
pub async fn recent(db: &Db, limit: i64) -> anyhow::Result<Vec<SessionView>> {
    let rows = sqlx::query(
        "SELECT id, surface, requester, repo, backend, created_at FROM sessions \
         ORDER BY created_at DESC, id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await
    .context("reading sessions")?;
    let mut out = Vec::with_capacity(rows.len());
    for s in rows {
        let id: String = s.get("id");
        let bindings = sqlx::query(
            "SELECT binding FROM session_bindings WHERE session_id = $1 ORDER BY created_at",
        )
        .bind(&id)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|r| r.get::<String, _>("binding").parse().map_err(Into::into))
        .collect::<anyhow::Result<Vec<Binding>>>()?;
        let turns = sqlx::query(
            "SELECT id, turn_no, state, requester, attempts, binding, created_at, started_at, finished_at, error \
             FROM tasks WHERE session_id = $1 ORDER BY turn_no",
        )
        .bind(&id)
        .fetch_all(&db.pool)
        .await?
        .iter()
        .map(|t| {
            Ok(TurnView {
                task_id: t.get("id"),
                turn: t.get("turn_no"),
                state: t.get("state"),
                requester: t.get("requester"),
                attempts: t.get("attempts"),
                binding: t.get::<String, _>("binding").parse()?,
                created_at: t.get("created_at"),
                started_at: t.get("started_at"),
                finished_at: t.get("finished_at"),
                error: t.get("error"),
            })
        })
        .collect::<anyhow::Result<Vec<TurnView>>>()?;
        out.push(SessionView {
            entry_point: s.get::<String, _>("surface").parse()?,
            requester: s.get("requester"),
            repo: s.get("repo"),
            backend: s.get("backend"),
            created_at: s.get("created_at"),
            id,
            bindings,
            turns,
        });
    }
    Ok(out)
}
