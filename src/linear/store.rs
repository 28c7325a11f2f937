//! What the Linear connector keeps of its own: each workspace's token (from OAuth) and, for each
//! agent session or issue it answers in, the issue a turn is built from.

use crate::binding::Binding;
use crate::db::{storable, Db};
use crate::ids::{now_ms, OrgId, RepoName};
use anyhow::Context;
use secrecy::SecretString;
use sqlx::{AnyConnection, Row};

/// The issue behind a Linear binding, as its first webhook told.
#[derive(Clone, Debug, PartialEq)]
pub struct ThreadInfo {
    pub binding: Binding,
    pub org: OrgId,
    pub issue_id: String,
    pub identifier: String,
    pub title: String,
    pub url: String,
    pub team_key: String,
    /// Linear's own summary of the issue and its comments for the agent. Untrusted text.
    pub prompt_context: Option<String>,
    /// Handed to Chime by delegation (not by a mention in a comment).
    pub delegated: bool,
    /// A `repo: owner/name` line in the description.
    pub repo_hint: Option<RepoName>,
}

/// Records a thread's issue; the first record of a binding stands.
pub async fn save_thread(db: &Db, t: &ThreadInfo) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO linear_threads (binding, org_id, issue_id, issue_identifier, issue_title, issue_url, \
         team_key, prompt_context, delegated, repo_hint, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (binding) DO NOTHING",
    )
    .bind(t.binding.to_string())
    .bind(t.org.as_str())
    .bind(&t.issue_id)
    .bind(&t.identifier)
    .bind(storable(&t.title).as_ref())
    .bind(&t.url)
    .bind(&t.team_key)
    .bind(t.prompt_context.as_deref().map(|c| storable(c).into_owned()))
    .bind(i64::from(t.delegated))
    .bind(t.repo_hint.as_ref().map(|r| r.as_str()))
    .bind(now_ms())
    .execute(&db.pool)
    .await
    .context("recording a Linear thread")?;
    Ok(())
}

pub async fn thread(
    conn: &mut AnyConnection,
    binding: &Binding,
) -> anyhow::Result<Option<ThreadInfo>> {
    let row = sqlx::query(
        "SELECT org_id, issue_id, issue_identifier, issue_title, issue_url, team_key, prompt_context, \
         delegated, repo_hint FROM linear_threads WHERE binding = $1",
    )
    .bind(binding.to_string())
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| ThreadInfo {
        binding: binding.clone(),
        org: OrgId::new(r.get::<String, _>("org_id")),
        issue_id: r.get("issue_id"),
        identifier: r.get("issue_identifier"),
        title: r.get("issue_title"),
        url: r.get("issue_url"),
        team_key: r.get("team_key"),
        prompt_context: r.get("prompt_context"),
        delegated: r.get::<i64, _>("delegated") != 0,
        repo_hint: r
            .get::<Option<String>, _>("repo_hint")
            .and_then(|r| RepoName::parse(&r)),
    }))
}

/// Stores the token an OAuth install gave for a workspace (a reinstall replaces it).
pub async fn save_org(
    db: &Db,
    org: &OrgId,
    token: &str,
    app_user: Option<&str>,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO linear_orgs (org_id, access_token, app_user_id, installed_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (org_id) DO UPDATE SET access_token = excluded.access_token, \
         app_user_id = excluded.app_user_id, installed_at = excluded.installed_at",
    )
    .bind(org.as_str())
    .bind(token)
    .bind(app_user)
    .bind(now_ms())
    .execute(&db.pool)
    .await
    .context("storing a Linear workspace's token")?;
    Ok(())
}

/// The token Chime acts with in `org`: its OAuth install's, else `LINEAR_ACCESS_TOKEN`.
pub async fn token(
    db: &Db,
    org: &OrgId,
    fallback: Option<&SecretString>,
) -> anyhow::Result<Option<SecretString>> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT access_token FROM linear_orgs WHERE org_id = $1")
            .bind(org.as_str())
            .fetch_optional(&db.pool)
            .await
            .context("reading a Linear workspace's token")?;
    Ok(stored.map(SecretString::from).or_else(|| fallback.cloned()))
}

/// Remembers how Linear names people and their verified emails.
pub async fn save_people(db: &Db, people: &[super::events::Person]) -> anyhow::Result<()> {
    for p in people {
        sqlx::query(
            "INSERT INTO linear_users (user_id, name, email, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE SET name = excluded.name, \
             email = COALESCE(excluded.email, linear_users.email), updated_at = excluded.updated_at",
        )
        .bind(&p.id)
        .bind(storable(&p.name).as_ref())
        .bind(p.email.as_deref())
        .bind(now_ms())
        .execute(&db.pool)
        .await
        .context("recording a Linear user")?;
    }
    Ok(())
}

/// A Linear user's name and email, as a webhook last told.
pub async fn person(
    conn: &mut AnyConnection,
    user: &str,
) -> anyhow::Result<Option<(String, Option<String>)>> {
    let row = sqlx::query("SELECT name, email FROM linear_users WHERE user_id = $1")
        .bind(user)
        .fetch_optional(conn)
        .await?;
    Ok(row.map(|r| (r.get("name"), r.get("email"))))
}

/// Remembers that `org` uses agent sessions.
pub async fn mark_agent_org(db: &Db, org: &OrgId) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO linear_agent_orgs (org_id, first_at) VALUES ($1, $2) ON CONFLICT (org_id) DO NOTHING",
    )
    .bind(org.as_str())
    .bind(now_ms())
    .execute(&db.pool)
    .await
    .context("recording a workspace that uses agent sessions")?;
    Ok(())
}

pub async fn is_agent_org(db: &Db, org: &OrgId) -> anyhow::Result<bool> {
    let n: Option<i64> =
        sqlx::query_scalar("SELECT first_at FROM linear_agent_orgs WHERE org_id = $1")
            .bind(org.as_str())
            .fetch_optional(&db.pool)
            .await?;
    Ok(n.is_some())
}

/// The app user Chime acts as in `org`, as its OAuth install recorded it.
pub async fn app_user(db: &Db, org: &OrgId) -> anyhow::Result<Option<String>> {
    let u: Option<Option<String>> =
        sqlx::query_scalar("SELECT app_user_id FROM linear_orgs WHERE org_id = $1")
            .bind(org.as_str())
            .fetch_optional(&db.pool)
            .await?;
    Ok(u.flatten())
}
