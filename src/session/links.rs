//! One session across tools: the work items a session is about (issue keys such as `ENG-123`,
//! named by a connector or in a request's text), so that a Slack thread that names an issue and
//! that issue's Linear agent session are one session, and what crosses between its places.

use crate::binding::Binding;
use crate::ids::{now_ms, SessionId};
use anyhow::Context;
use regex::Regex;
use sqlx::{AnyConnection, Row};
use std::sync::LazyLock;

/// An issue key (`ENG-123`), alone or in an issue URL.
static ISSUE_KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b([A-Z][A-Z0-9]{1,9}-[1-9][0-9]{0,6})\b").unwrap());

/// How many keys one request may name: a pasted list is not a link.
const MAX_REFS: usize = 5;

/// The work items a request's text names, as refs.
pub fn refs_in(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in ISSUE_KEY.captures_iter(text) {
        let r = issue_ref(&c[1]);
        if !out.contains(&r) {
            out.push(r);
        }
        if out.len() == MAX_REFS {
            break;
        }
    }
    out
}

/// The ref of an issue key.
pub fn issue_ref(key: &str) -> String {
    format!("issue:{key}")
}

/// The session one of `refs` already belongs to.
pub async fn find(conn: &mut AnyConnection, refs: &[String]) -> anyhow::Result<Option<SessionId>> {
    for r in refs {
        let id: Option<String> =
            sqlx::query_scalar("SELECT session_id FROM session_refs WHERE ref = $1")
                .bind(r)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(id) = id {
            return Ok(Some(SessionId(id)));
        }
    }
    Ok(None)
}

/// Records that `session` is about `refs`; a ref another session already holds stays with it.
pub async fn add(
    conn: &mut AnyConnection,
    session: &SessionId,
    refs: &[String],
) -> anyhow::Result<()> {
    for r in refs {
        sqlx::query(
            "INSERT INTO session_refs (ref, session_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (ref) DO NOTHING",
        )
        .bind(r)
        .bind(session.as_str())
        .bind(now_ms())
        .execute(&mut *conn)
        .await
        .context("recording what a session is about")?;
    }
    Ok(())
}

/// Every place a session is bound to.
pub async fn bindings(
    conn: &mut AnyConnection,
    session: &SessionId,
) -> anyhow::Result<Vec<Binding>> {
    let rows = sqlx::query(
        "SELECT binding FROM session_bindings WHERE session_id = $1 ORDER BY created_at",
    )
    .bind(session.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok(r.get::<String, _>("binding").parse()?))
        .collect()
}

/// Where else a turn's session lives, as the connectors running here see it.
pub struct Places {
    /// The turn's own place is private: nothing said there crosses to the other places.
    pub here_private: bool,
    /// The session's other places, each with whether it is private.
    pub others: Vec<(Binding, bool)>,
}

impl Places {
    /// The session's places at which a turn's end is shown too (none from a private place).
    pub fn mirror_to(&self) -> Vec<&Binding> {
        if self.here_private {
            return vec![];
        }
        self.others.iter().map(|(b, _)| b).collect()
    }

    /// The places whose turns this turn's agent must not see: private ones, unless this turn is
    /// itself asked in private.
    pub fn hidden(&self) -> Vec<Binding> {
        if self.here_private {
            return vec![];
        }
        self.others
            .iter()
            .filter(|(_, private)| *private)
            .map(|(b, _)| b.clone())
            .collect()
    }
}

/// The other places of `task`'s session. A place whose connector is not running here counts as
/// private: what cannot be checked is not shared.
pub async fn places(
    db: &crate::db::Db,
    connectors: &crate::connector::Connectors,
    task: &crate::session::Task,
) -> anyhow::Result<Places> {
    let mut conn = db.pool.acquire().await?;
    let all = bindings(&mut conn, &task.session_id).await?;
    drop(conn);
    let private = |b: Binding| async move {
        match connectors.for_binding(&b) {
            Ok(c) => c.is_private(&b).await,
            Err(_) => true,
        }
    };
    let mut others = Vec::new();
    for b in all.into_iter().filter(|b| *b != task.binding) {
        let p = private(b.clone()).await;
        others.push((b, p));
    }
    // Only a session with several places needs to ask about its own.
    let here_private = !others.is_empty() && private(task.binding.clone()).await;
    Ok(Places {
        here_private,
        others,
    })
}

/// The plain text of a turn's end as another place of its session shows it: the result (or
/// how it failed or stopped) when `result`, else its pull request only; None when nothing is to
/// be shown. Untrusted parts are the agent's; each reporter escapes for its surface.
pub fn mirrored_text(task: &crate::session::Task, origin: &str, result: bool) -> Option<String> {
    use crate::session::TaskState;
    let outcome = task.outcome.clone().unwrap_or_default();
    let pr = outcome
        .pr_url
        .as_deref()
        .and_then(crate::backend::valid_pr_url);
    let pr_line = pr.as_ref().map(|u| format!("\nPull request: {u}"));
    if !result {
        return pr.map(|u| format!("Pull request from {origin}: {u}"));
    }
    let body = match task.state {
        TaskState::Succeeded => crate::templates::truncate_chars(outcome.summary.trim(), 2500),
        TaskState::Cancelled => "Stopped before it finished.".to_string(),
        _ => format!(
            "The run failed: {}",
            crate::templates::one_line(task.error.as_deref().unwrap_or("no reason given"), 500)
        ),
    };
    Some(format!(
        "From {origin}, turn {}: {body}{}",
        task.turn_no,
        pr_line.unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_keys_in_text_and_urls() {
        assert_eq!(
            refs_in("see ENG-123 and https://linear.app/acme/issue/WEB-7/fix-it, ENG-123 again"),
            ["issue:ENG-123", "issue:WEB-7"]
        );
        for none in [
            "eng-123",
            "E-1",
            "ENG-0",
            "ENG-",
            "XENG123",
            "ENGINEERING1-2",
            "a1ENG-12",
        ] {
            assert!(refs_in(none).is_empty(), "{none}");
        }
        let many: String = (1..20).map(|n| format!("ENG-{n} ")).collect();
        assert_eq!(refs_in(&many).len(), MAX_REFS);
    }
}
