//! One person across surfaces: their Slack, Linear and GitHub accounts, linked by a verified
//! email (each connector tells an account's email and finds an account by email) or by a
//! one-time code redeemed on the other surface (`/chime link CODE`). Where the config requires
//! it, an unlinked person is asked to link before Chime runs anything for them.

use crate::binding::Surface;
use crate::connector::{Connector, Connectors};
use crate::db::Db;
use crate::event::Author;
use crate::ids::now_ms;
use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Html;
use sqlx::{AnyConnection, Row};
use std::sync::Arc;

/// How long a link code can be redeemed.
const CODE_TTL_MS: i64 = 30 * 60 * 1000;

/// The person an account belongs to, when it is linked.
pub async fn person_of(
    conn: &mut AnyConnection,
    surface: &str,
    user: &str,
) -> anyhow::Result<Option<String>> {
    Ok(
        sqlx::query_scalar("SELECT person_id FROM identities WHERE surface = $1 AND user_id = $2")
            .bind(surface)
            .bind(user)
            .fetch_optional(conn)
            .await?,
    )
}

/// Every account of the person `(surface, user)` is, itself first; just itself when unlinked.
pub async fn accounts(
    conn: &mut AnyConnection,
    surface: &str,
    user: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = vec![(surface.to_string(), user.to_string())];
    let Some(person) = person_of(conn, surface, user).await? else {
        return Ok(out);
    };
    let rows = sqlx::query(
        "SELECT surface, user_id FROM identities WHERE person_id = $1 ORDER BY surface, user_id",
    )
    .bind(&person)
    .fetch_all(conn)
    .await?;
    for r in rows {
        let a: (String, String) = (r.get("surface"), r.get("user_id"));
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// Links two accounts as one person (merging what each was linked to before).
pub async fn link(
    conn: &mut AnyConnection,
    a: (&str, &str),
    b: (&str, &str),
    how: &str,
) -> anyhow::Result<()> {
    let pa = person_of(conn, a.0, a.1).await?;
    let pb = person_of(conn, b.0, b.1).await?;
    let person = pa
        .clone()
        .or(pb.clone())
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    if let (Some(pa), Some(pb)) = (&pa, &pb) {
        sqlx::query("UPDATE identities SET person_id = $1 WHERE person_id = $2")
            .bind(pa)
            .bind(pb)
            .execute(&mut *conn)
            .await?;
    }
    for (surface, user) in [a, b] {
        sqlx::query(
            "INSERT INTO identities (surface, user_id, person_id, how, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (surface, user_id) DO UPDATE SET person_id = excluded.person_id",
        )
        .bind(surface)
        .bind(user)
        .bind(&person)
        .bind(how)
        .bind(now_ms())
        .execute(&mut *conn)
        .await
        .context("linking accounts")?;
    }
    tracing::info!(a_surface = a.0, b_surface = b.0, how, "accounts linked");
    Ok(())
}

/// Unlinks the account on `other` from the person `(surface, user)` is; false when there was none.
pub async fn unlink(
    conn: &mut AnyConnection,
    surface: &str,
    user: &str,
    other: &str,
) -> anyhow::Result<bool> {
    let Some(person) = person_of(conn, surface, user).await? else {
        return Ok(false);
    };
    let gone = sqlx::query("DELETE FROM identities WHERE person_id = $1 AND surface = $2")
        .bind(&person)
        .bind(other)
        .execute(&mut *conn)
        .await
        .context("unlinking an account")?
        .rows_affected();
    tracing::info!(surface, other, gone, "account unlinked");
    Ok(gone > 0)
}

/// Links `user` on `connector`'s surface with their account on the first of `others` found by
/// the email the platform verified (asked once); false when no side tells or finds anyone.
pub async fn link_by_email(
    db: &Db,
    connector: &dyn Connector,
    others: &[&dyn Connector],
    user: &str,
) -> anyhow::Result<bool> {
    let Some(email) = connector.email_of(user).await else {
        return Ok(false);
    };
    for other in others {
        if let Some(found) = other.user_by_email(&email).await {
            let mut conn = db.pool.acquire().await?;
            link(
                &mut conn,
                (connector.surface().as_str(), user),
                (other.surface().as_str(), &found),
                "email",
            )
            .await?;
            return Ok(true);
        }
    }
    Ok(false)
}

/// A fresh one-time code for `(surface, user)` to redeem elsewhere.
pub async fn new_code(db: &Db, surface: &str, user: &str) -> anyhow::Result<String> {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let code: String = {
        let mut rng = rand::thread_rng();
        (0..10)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect()
    };
    sqlx::query("DELETE FROM link_codes WHERE expires_at < $1")
        .bind(now_ms())
        .execute(&db.pool)
        .await?;
    sqlx::query(
        "INSERT INTO link_codes (code, surface, user_id, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&code)
    .bind(surface)
    .bind(user)
    .bind(now_ms() + CODE_TTL_MS)
    .execute(&db.pool)
    .await
    .context("storing a link code")?;
    Ok(code)
}

/// Redeems a code once: the account it was made for, if it is valid and unexpired.
pub async fn redeem(
    conn: &mut AnyConnection,
    code: &str,
) -> anyhow::Result<Option<(String, String)>> {
    let code = code.trim().to_ascii_uppercase();
    if code.len() != 10 || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(None);
    }
    let row = sqlx::query(
        "DELETE FROM link_codes WHERE code = $1 AND expires_at >= $2 RETURNING surface, user_id",
    )
    .bind(&code)
    .bind(now_ms())
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| (r.get("surface"), r.get("user_id"))))
}

/// Whether someone may go on, or must link first.
pub enum Standing {
    /// Linked, or no link is needed here.
    Ok,
    /// Not linked where linking is required: a one-time code to link with.
    MustLink { code: String },
}

/// Checks `author` on `connector`'s surface, where `identity.require_link` names it and another
/// surface to link with runs: a linked account passes; otherwise Chime tries to link it by its
/// verified email with every other running surface; when that fails, they must link.
pub async fn check(
    db: &Db,
    config: &crate::config::Config,
    connectors: &Connectors,
    connector: &dyn Connector,
    author: &Author,
) -> anyhow::Result<Standing> {
    let surface = connector.surface();
    let user = author.user.as_str();
    let others: Vec<&Arc<dyn Connector>> = connectors
        .iter()
        // The playground's people are made up, and an editor's token already names an account.
        .filter(|c| c.surface() != surface && !matches!(c.surface(), Surface::Local | Surface::Ide))
        .collect();
    let required = config
        .identity
        .require_link
        .iter()
        .any(|s| s == surface.as_str());
    // Nothing to check (and no platform call on every request) where linking is not required,
    // or where there is no other surface to link with.
    if !required || others.is_empty() {
        return Ok(Standing::Ok);
    }
    let mut conn = db.pool.acquire().await?;
    if person_of(&mut conn, surface.as_str(), user)
        .await?
        .is_some()
    {
        return Ok(Standing::Ok);
    }
    drop(conn);
    let others: Vec<&dyn Connector> = others.iter().map(|c| c.as_ref()).collect();
    if link_by_email(db, connector, &others, user).await? {
        return Ok(Standing::Ok);
    }
    let code = new_code(db, surface.as_str(), user).await?;
    Ok(Standing::MustLink { code })
}

/// Where a person links an account: this server's `/link/CODE` page.
pub fn link_url(config: &crate::config::Config, code: &str) -> String {
    let base = config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.server.listen));
    format!("{}/link/{code}", base.trim_end_matches('/'))
}

/// `GET /link/CODE`: how to finish linking (the code is redeemed in Slack, where the person is
/// signed in, never by opening this page).
pub async fn link_page(
    Path(code): Path<String>,
    State(db): State<Db>,
) -> (StatusCode, Html<String>) {
    let code: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(10)
        .collect();
    let valid: Option<i64> = sqlx::query_scalar(
        "SELECT expires_at FROM link_codes WHERE code = $1 AND expires_at >= $2",
    )
    .bind(&code)
    .bind(now_ms())
    .fetch_optional(&db.pool)
    .await
    .ok()
    .flatten();
    if valid.is_none() {
        return (
            StatusCode::NOT_FOUND,
            Html("<!doctype html><title>Chime</title><p>This link code is unknown or expired. Ask Chime again to get a new one.</p>".into()),
        );
    }
    (
        StatusCode::OK,
        Html(format!(
            "<!doctype html><title>Link your accounts to Chime</title>\
             <h1>Link your accounts</h1><p>In Slack, send this to Chime (in any channel or in a direct message with it):</p>\
             <pre>/chime link {code}</pre><p>The code works once, for 30 minutes.</p>"
        )),
    )
}
