//! Per-person tokens for the IDE stream: minted once (shown once: `chime ide-token create`, or
//! `/chime ide-token` in a DM with Chime), stored as a SHA-256 hash,
//! revocable at once.

use crate::db::Db;
use crate::ids::now_ms;
use anyhow::Context;
use sha2::{Digest, Sha256};
use sqlx::Row;

const PREFIX: &str = "chime_ide_";

/// Whose a token is: an account on a surface (`slack` U…, or a playground person).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub token_id: i64,
    pub surface: String,
    pub user: String,
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Mints a token for `(surface, user)`; returns its id and the token, which is never stored.
pub async fn create(db: &Db, surface: &str, user: &str) -> anyhow::Result<(i64, String)> {
    Ok(mint(db, surface, user, None)
        .await?
        .expect("a token without a request to dedupe on is always minted"))
}

/// Mints a token for `(surface, user)` asked by request `request` (a chat command's own id);
/// None when that request already minted one: a replay is shown nothing.
pub async fn create_once(
    db: &Db,
    surface: &str,
    user: &str,
    request: &str,
) -> anyhow::Result<Option<(i64, String)>> {
    mint(db, surface, user, Some(request)).await
}

async fn mint(
    db: &Db,
    surface: &str,
    user: &str,
    request: Option<&str>,
) -> anyhow::Result<Option<(i64, String)>> {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let secret: String = {
        let mut rng = rand::thread_rng();
        (0..40)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect()
    };
    let token = format!("{PREFIX}{secret}");
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO ide_tokens (token_hash, surface, user_id, created_at, minted_by) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (minted_by) DO NOTHING RETURNING id",
    )
    .bind(hash(&token))
    .bind(surface)
    .bind(user)
    .bind(now_ms())
    .bind(request)
    .fetch_optional(&db.pool)
    .await
    .context("storing an IDE token")?;
    Ok(id.map(|id| (id, token)))
}

/// The owner of an unrevoked token; None for anything else (malformed, unknown, revoked).
pub async fn check(db: &Db, token: &str) -> anyhow::Result<Option<Owner>> {
    let well_formed = token.len() == PREFIX.len() + 40
        && token.starts_with(PREFIX)
        && token[PREFIX.len()..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric());
    if !well_formed {
        return Ok(None);
    }
    // The lookup is by hash, so comparing the stored hash leaks nothing about the token.
    let row = sqlx::query(
        "SELECT id, surface, user_id FROM ide_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
    )
    .bind(hash(token))
    .fetch_optional(&db.pool)
    .await?;
    Ok(row.map(|r| Owner {
        token_id: r.get("id"),
        surface: r.get("surface"),
        user: r.get("user_id"),
    }))
}

/// Whether token `id` is still valid (an open connection checks it, so a revoke ends it).
pub async fn is_live(db: &Db, id: i64) -> anyhow::Result<bool> {
    let live: Option<i64> =
        sqlx::query_scalar("SELECT id FROM ide_tokens WHERE id = $1 AND revoked_at IS NULL")
            .bind(id)
            .fetch_optional(&db.pool)
            .await?;
    Ok(live.is_some())
}

/// Revokes token `id`; false when there is no such unrevoked token.
pub async fn revoke(db: &Db, id: i64) -> anyhow::Result<bool> {
    let n =
        sqlx::query("UPDATE ide_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&db.pool)
            .await?
            .rows_affected();
    Ok(n == 1)
}

/// Every token, newest first: id, owner, created, revoked (never the secret).
pub async fn list(db: &Db) -> anyhow::Result<Vec<(i64, String, String, i64, Option<i64>)>> {
    let rows = sqlx::query(
        "SELECT id, surface, user_id, created_at, revoked_at FROM ide_tokens ORDER BY id DESC",
    )
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get("id"),
                r.get("surface"),
                r.get("user_id"),
                r.get("created_at"),
                r.get("revoked_at"),
            )
        })
        .collect())
}
