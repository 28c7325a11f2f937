//! Removes what idle sessions left on this replica's disk: their worktrees, scratch repositories
//! and homes, once a session has had no turn queued or running for `agent.cleanup_idle_days`. The
//! session's branch stays in the mirror, so a follow-up weeks later checks its work out again.
//!
//! The workdir is local to each replica, so every process sweeps its own disk (hourly), rather
//! than one replica per period as the store's [`crate::jobs::Job`]s do.

use super::git::git;
use crate::db::Db;
use crate::ids::now_ms;
use anyhow::Context;
use sqlx::Row;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The per-session folders under the workdir.
const SESSION_DIRS: [&str; 3] = ["worktrees", "scratch", "homes"];

/// The session a folder belongs to: `<session-id>-<n>` holds attempt n of one of its best-of-N
/// turns, and `<session-id>-plan` its plans; both live as long as the session does.
fn session_of(folder: &str) -> &str {
    match folder.rsplit_once('-') {
        Some((session, "plan")) => session,
        Some((session, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => session,
        _ => folder,
    }
}

/// Removes the folders of sessions idle for longer than `max_idle`; returns the sessions swept.
pub async fn sweep(db: &Db, workdir: &Path, max_idle: Duration) -> anyhow::Result<Vec<String>> {
    let mut sessions = BTreeSet::new();
    for dir in SESSION_DIRS {
        let Ok(mut entries) = tokio::fs::read_dir(workdir.join(dir)).await else {
            continue;
        };
        while let Some(e) = entries.next_entry().await? {
            if let Some(name) = e.file_name().to_str() {
                sessions.insert(name.to_string());
            }
        }
    }
    let cutoff = now_ms() - max_idle.as_millis() as i64;
    let mut swept = vec![];
    for session in sessions {
        let r = sqlx::query(
            "SELECT MAX(COALESCE(finished_at, started_at, created_at)) AS last, \
             SUM(CASE WHEN state IN ('queued', 'running', 'awaiting_repo') THEN 1 ELSE 0 END) AS open \
             FROM tasks WHERE session_id = $1",
        )
        .bind(session_of(&session))
        .fetch_one(&db.pool)
        .await
        .context("reading a session's last activity")?;
        let last: Option<i64> = r.get("last");
        let open: Option<i64> = r.get("open");
        // A folder of no session Chime knows (its rows were deleted) is idle too.
        if open.unwrap_or(0) > 0 || last.is_some_and(|t| t >= cutoff) {
            continue;
        }
        for dir in SESSION_DIRS {
            let path = workdir.join(dir).join(&session);
            match tokio::fs::remove_dir_all(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        swept.push(session);
    }
    if !swept.is_empty() {
        prune_worktrees(&workdir.join("mirrors")).await;
    }
    Ok(swept)
}

/// Lets each mirror forget the worktrees whose folders are gone.
async fn prune_worktrees(mirrors: &Path) {
    let Ok(mut owners) = tokio::fs::read_dir(mirrors).await else {
        return;
    };
    while let Ok(Some(owner)) = owners.next_entry().await {
        let Ok(mut repos) = tokio::fs::read_dir(owner.path()).await else {
            continue;
        };
        while let Ok(Some(repo)) = repos.next_entry().await {
            if let Err(e) = git(&repo.path(), ["worktree", "prune"]).await {
                tracing::warn!(mirror = %repo.path().display(), error = %format!("{e:#}"), "git worktree prune failed");
            }
        }
    }
}

/// Sweeps hourly until shutdown.
pub async fn run(
    db: Db,
    workdir: std::path::PathBuf,
    max_idle: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match sweep(&db, &workdir, max_idle).await {
            Ok(swept) if !swept.is_empty() => {
                tracing::info!(
                    sessions = swept.len(),
                    "removed the worktrees of idle sessions"
                )
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "sweeping idle sessions' worktrees failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn attempt_folders_belong_to_their_session() {
        assert_eq!(super::session_of("0123abcd4567ef89-2"), "0123abcd4567ef89");
        assert_eq!(super::session_of("0123abcd4567ef89"), "0123abcd4567ef89");
        assert_eq!(super::session_of("a-b"), "a-b");
        assert_eq!(super::session_of("a-"), "a-");
    }
}
