//! Pull requests a session's turns opened: recorded when a turn ends with one, moved by GitHub's
//! webhook (merged, closed, CI finished), and every transition kept with its time for the digest.

use super::Task;
use crate::binding::Binding;
use crate::event::PullRequestChange;
use crate::ids::{now_ms, RepoName};
use anyhow::Context;
use sqlx::{AnyConnection, Row};

/// `https://<host>/<owner>/<repo>/pull/<n>` → the repository and number.
pub fn parse_url(url: &str) -> Option<(RepoName, i64)> {
    let rest = url.split_once("://")?.1;
    let mut parts = rest.split(['/', '?', '#']);
    let (_host, owner, name, kind, number) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let number: i64 = number.parse().ok().filter(|n| *n > 0)?;
    (kind == "pull").then_some(())?;
    Some((RepoName::parse(&format!("{owner}/{name}"))?, number))
}

/// Records the pull request a turn ended with, or that Chime opened from `branch` (once; a
/// retried turn reporting the same one changes nothing).
pub async fn track(
    conn: &mut AnyConnection,
    task: &Task,
    url: &str,
    branch: Option<&str>,
) -> anyhow::Result<()> {
    let Some((repo, number)) = parse_url(url) else {
        return Ok(());
    };
    let now = now_ms();
    let n = sqlx::query(
        "INSERT INTO pull_requests (repo, number, url, session_id, task_id, binding, requester, state, opened_at, branch) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', $8, $9) ON CONFLICT (repo, number) DO NOTHING",
    )
    .bind(repo.as_str())
    .bind(number)
    .bind(url)
    .bind(task.session_id.as_str())
    .bind(task.id.as_str())
    .bind(task.binding.to_string())
    .bind(&task.requester)
    .bind(now)
    .bind(branch)
    .execute(&mut *conn)
    .await
    .context("recording a pull request")?
    .rows_affected();
    if n == 1 {
        event(conn, &repo, number, "opened", now).await?;
    }
    Ok(())
}

/// The open pull request Chime opened from `branch`, if any.
pub async fn open_for_branch(
    db: &crate::db::Db,
    repo: &RepoName,
    branch: &str,
) -> anyhow::Result<Option<String>> {
    let row = sqlx::query(
        "SELECT url FROM pull_requests WHERE repo = $1 AND branch = $2 AND state = 'open'",
    )
    .bind(repo.as_str())
    .bind(branch)
    .fetch_optional(&db.pool)
    .await
    .context("looking up a branch's pull request")?;
    Ok(row.map(|r| r.get("url")))
}

async fn event(
    conn: &mut AnyConnection,
    repo: &RepoName,
    number: i64,
    kind: &str,
    at: i64,
) -> anyhow::Result<()> {
    sqlx::query("INSERT INTO pull_request_events (repo, number, kind, at) VALUES ($1, $2, $3, $4)")
        .bind(repo.as_str())
        .bind(number)
        .bind(kind)
        .bind(at)
        .execute(conn)
        .await
        .context("recording a pull request's transition")?;
    Ok(())
}

/// What a transition means for the thread the pull request came from.
#[derive(Debug, PartialEq)]
pub struct Notice {
    pub binding: Binding,
    pub requester: String,
    pub text: String,
}

/// Applies a change to a tracked pull request. None when Chime does not track it or nothing
/// changed (a redelivered or replayed event, CI reporting what it reported before).
pub async fn apply(
    conn: &mut AnyConnection,
    repo: &RepoName,
    number: i64,
    change: &PullRequestChange,
    at: i64,
) -> anyhow::Result<Option<Notice>> {
    let Some(r) = sqlx::query(
        "SELECT url, binding, requester, state, checks FROM pull_requests WHERE repo = $1 AND number = $2",
    )
    .bind(repo.as_str())
    .bind(number)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let (url, state): (String, String) = (r.get("url"), r.get("state"));
    let checks: Option<String> = r.get("checks");
    let update = |sql: &'static str| sqlx::query(sql).bind(at).bind(repo.as_str()).bind(number);
    let (kind, text) = match change {
        PullRequestChange::Merged if state != "merged" => {
            update("UPDATE pull_requests SET state = 'merged', merged_at = $1 WHERE repo = $2 AND number = $3")
                .execute(&mut *conn)
                .await?;
            (
                "merged".to_string(),
                format!("Pull request {url} was merged."),
            )
        }
        PullRequestChange::Closed if state == "open" => {
            update("UPDATE pull_requests SET state = 'closed', closed_at = $1 WHERE repo = $2 AND number = $3")
                .execute(&mut *conn)
                .await?;
            (
                "closed".to_string(),
                format!("Pull request {url} was closed without merging."),
            )
        }
        PullRequestChange::Checks { conclusion }
            if state == "open" && checks.as_deref() != Some(conclusion) =>
        {
            sqlx::query("UPDATE pull_requests SET checks = $1 WHERE repo = $2 AND number = $3")
                .bind(conclusion.as_str())
                .bind(repo.as_str())
                .bind(number)
                .execute(&mut *conn)
                .await?;
            let text = match conclusion.as_str() {
                "success" => format!("CI passed on {url}."),
                "neutral" | "skipped" => format!("CI finished on {url} ({conclusion})."),
                other => format!("CI did not pass on {url}: {}.", other.replace('_', " ")),
            };
            (format!("checks:{conclusion}"), text)
        }
        _ => return Ok(None),
    };
    event(conn, repo, number, &kind, at).await?;
    Ok(Some(Notice {
        binding: r.get::<String, _>("binding").parse()?,
        requester: r.get("requester"),
        text,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_request_urls_and_hostile_ones() {
        assert_eq!(
            parse_url("https://github.com/acme/api/pull/42"),
            Some((RepoName::parse("acme/api").unwrap(), 42))
        );
        assert_eq!(
            parse_url("https://ghe.example/acme/api/pull/7/files?x=1"),
            Some((RepoName::parse("acme/api").unwrap(), 7))
        );
        for bad in [
            "https://github.com/acme/api/issues/42",
            "https://github.com/acme/api/pull/0",
            "https://github.com/acme/api/pull/x",
            "https://github.com/../api/pull/1",
            "https://github.com/acme",
            "github.com/acme/api/pull/1",
            "",
        ] {
            assert_eq!(parse_url(bad), None, "{bad}");
        }
    }
}
