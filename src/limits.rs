//! Caps on load (`[limits]`): how many turns a person, a channel and a workspace may have waiting
//! or running at once and ask for in a day, and how many turns one session may have.
//!
//! Checked when a turn is asked for, inside the transaction that would create it, after touching
//! the workspace's row in `limit_locks`: that write holds the row (Postgres) or the database
//! (SQLite) until the transaction ends, so two replicas asking at the same moment count each
//! other's turns. A refused request is not queued: the person asks again once there is room.

use crate::binding::Binding;
use crate::config::LimitsConfig;
use crate::ids::{now_ms, SessionId};
use sqlx::{AnyConnection, Row};

const DAY_MS: i64 = 86_400_000;
/// Turns that count as "at once": waiting for a repository, queued or running.
const ACTIVE: &str = "('awaiting_repo', 'queued', 'running')";

/// Why a new turn at `binding` for `requester` may not start now, if it may not.
pub async fn refusal(
    conn: &mut AnyConnection,
    limits: &LimitsConfig,
    binding: &Binding,
    requester: &str,
    session: Option<&SessionId>,
) -> anyhow::Result<Option<String>> {
    let (workspace, channel) = scopes(binding);
    sqlx::query(
        "INSERT INTO limit_locks (key, touched) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET touched = $2",
    )
    .bind(&workspace)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    if let (Some(s), cap @ 1..) = (session, limits.turns_per_session) {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM tasks WHERE session_id = $1")
            .bind(s.as_str())
            .fetch_one(&mut *conn)
            .await?
            .get("n");
        if n >= i64::from(cap) {
            return Ok(Some(format!(
                "This session has reached its limit of {cap} turns. Start a new thread and mention me there to go on."
            )));
        }
    }
    let person = format!("{}:", binding.surface().as_str());
    let scopes = [
        (
            Some(requester),
            person.as_str(),
            limits.concurrent_per_person,
            limits.daily_per_person,
            "you",
        ),
        (
            None,
            channel.as_str(),
            limits.concurrent_per_channel,
            limits.daily_per_channel,
            "this channel",
        ),
        (
            None,
            workspace.as_str(),
            limits.concurrent_per_workspace,
            limits.daily_per_workspace,
            "this workspace",
        ),
    ];
    for (who, like, at_once, daily, name) in scopes {
        let (active, today, oldest) = counts(conn, who, like).await?;
        if at_once > 0 && active >= i64::from(at_once) {
            let has = if name == "you" { "have" } else { "has" };
            return Ok(Some(format!(
                "Not started: {name} already {has} {active} requests waiting or running, the most allowed at once ({at_once}). Ask again once one of them has finished."
            )));
        }
        if daily > 0 && today >= i64::from(daily) {
            let when = oldest.map_or_else(|| "later".into(), |t| clock(t + DAY_MS));
            return Ok(Some(format!(
                "Not started: {name} asked for {today} turns in the last 24 hours, the most allowed in a day ({daily}). Ask again after {when}."
            )));
        }
    }
    Ok(None)
}

/// The workspace's and the channel's prefixes of bindings' text form.
pub(crate) fn scopes(binding: &Binding) -> (String, String) {
    let text = binding.to_string();
    let surface = binding.surface().as_str();
    let key = text.split_once(':').map_or("", |(_, k)| k);
    let parts: Vec<&str> = key.split('/').collect();
    match binding {
        // slack:TEAM/CHANNEL/THREAD
        Binding::SlackThread { .. } => (
            format!("{surface}:{}/", parts[0]),
            format!("{surface}:{}/{}/", parts[0], parts[1]),
        ),
        // local:CHANNEL/THREAD: the playground is one workspace.
        Binding::LocalThread { .. } => (format!("{surface}:"), format!("{surface}:{}/", parts[0])),
        // linear:ORG/…, ide:ACCOUNT/…: the workspace is the channel.
        Binding::Linear { .. } | Binding::Ide { .. } => {
            let w = format!("{surface}:{}/", parts[0]);
            (w.clone(), w)
        }
    }
}

/// Active turns, turns of the last day and the oldest of those, of bindings starting with
/// `prefix` (and asked by `who`, when given).
async fn counts(
    conn: &mut AnyConnection,
    who: Option<&str>,
    prefix: &str,
) -> anyhow::Result<(i64, i64, Option<i64>)> {
    let like = format!("{prefix}%");
    let by = if who.is_some() {
        "AND requester = $3"
    } else {
        "AND $3 = $3"
    };
    let sql = format!(
        "SELECT \
           COUNT(CASE WHEN state IN {ACTIVE} THEN 1 END) AS active, \
           COUNT(CASE WHEN created_at >= $2 THEN 1 END) AS today, \
           MIN(CASE WHEN created_at >= $2 THEN created_at END) AS oldest \
         FROM tasks WHERE binding LIKE $1 {by} AND (state IN {ACTIVE} OR created_at >= $2)"
    );
    let r = sqlx::query(&sql)
        .bind(like)
        .bind(now_ms() - DAY_MS)
        .bind(who.unwrap_or(""))
        .fetch_one(&mut *conn)
        .await?;
    Ok((
        r.get::<i64, _>("active"),
        r.get::<i64, _>("today"),
        r.get::<Option<i64>, _>("oldest"),
    ))
}

/// A time of day, in UTC, for a refusal.
fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| "later".into(), |t| t.format("%H:%M UTC").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_of_each_surface() {
        let b: Binding = "slack:T1/C9/1700000000.000100".parse().unwrap();
        assert_eq!(scopes(&b), ("slack:T1/".into(), "slack:T1/C9/".into()));
        let b: Binding = "local:CGENERAL/1700000000.000100".parse().unwrap();
        assert_eq!(scopes(&b), ("local:".into(), "local:CGENERAL/".into()));
        let b: Binding = "linear:org-1/sess-1".parse().unwrap();
        assert_eq!(scopes(&b), ("linear:org-1/".into(), "linear:org-1/".into()));
    }
}
