//! A mention or DM: start a session, or continue the one bound to this thread.

use crate::context::Ctx;
use crate::event::Mention;
use crate::ids::RepoName;
use crate::inbox;
use crate::reporter::Membership;
use crate::session::{self, NewTask, TaskState};
use anyhow::Context;

pub async fn handle_mention(
    ctx: &Ctx,
    inbox_id: i64,
    source_event: &str,
    m: Mention,
) -> anyhow::Result<()> {
    let reporter = ctx.reporter(m.thread.surface)?;
    let thread_key = m.thread.key();
    let membership = reporter.check_member(&m.thread.team, &m.author).await;
    let mut tx = ctx.db.begin().await?;
    // User errors are answered in the thread, and the event is done.
    let answer = |tx, kind: &'static str, text: String| {
        reply_and_finish(
            ctx,
            tx,
            &m,
            inbox_id,
            format!("{kind}:{source_event}"),
            text,
        )
    };
    if let Membership::Denied(why) = membership {
        tracing::info!(user = %m.author.user, reason = %why, "refused a request");
        return answer(tx, "refusal", format!("Sorry, {why}.")).await;
    }
    let (prompt, inline_repo, inline_backend) = extract_options(&m.text);
    if prompt.trim().is_empty() {
        let text = "Mention me with what you need, for example: `@chime the retry client drops the last chunk on timeout repo=acme/api`";
        return answer(tx, "empty", text.to_string()).await;
    }

    let existing = session::find_by_binding(&mut tx, m.thread.surface, &thread_key).await?;
    if let (None, Some(b)) = (&existing, &inline_backend) {
        // `backend=` is access control too: a backend may carry privileged `env`.
        let allowed = ctx.config.inline_backends(m.thread.channel.as_str());
        if !allowed.contains(&b.as_str()) {
            let listed = allowed
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let text = if ctx.config.has_backend(b) {
                format!("The backend `{b}` can't be chosen in this channel. Backends you can choose here: {listed}.")
            } else {
                format!("I don't know the backend `{b}`, so it can't be chosen. Backends you can choose here: {listed}.")
            };
            tracing::info!(backend = %b, channel = %m.thread.channel, user = %m.author.user, "refused an inline backend");
            return answer(tx, "backend", text).await;
        }
    }
    let session = match existing {
        Some(s) => s,
        None => {
            // A session keeps the backend it started with; `backend=` picks it for a new one.
            let backend = inline_backend
                .as_deref()
                .unwrap_or(&ctx.config.agent.default_backend);
            session::create(
                &mut tx,
                m.thread.surface,
                &thread_key,
                m.author.user.as_str(),
                None,
                backend,
            )
            .await
            .context("creating a session")?
        }
    };
    let known = ctx.config.known_repos();
    // A session keeps its repository: later turns build on the same branch.
    let repo = session
        .repo
        .clone()
        .or_else(|| resolve_repo(ctx, &m, inline_repo.as_ref(), &known));
    let state = if repo.is_some() || known.is_empty() {
        TaskState::Queued
    } else {
        TaskState::AwaitingRepo
    };
    if session.repo.is_none() {
        if let Some(r) = &repo {
            session::set_repo(&mut tx, &session.id, r).await?;
        }
    }
    let new = NewTask {
        session: &session,
        source_event,
        prompt: &prompt,
        requester: m.author.user.as_str(),
        repo: repo.as_ref(),
        thread_key: &thread_key,
        message_ts: Some(m.message_ts.as_str()),
        state,
    };
    let Some(task_id) = session::insert_task(&mut tx, new).await? else {
        tracing::info!("event already made its task");
        inbox::complete_in(&mut tx, inbox_id).await?;
        tx.commit().await?;
        return Ok(());
    };
    let task = session::get_task(&mut tx, &task_id)
        .await?
        .context("task vanished inside its transaction")?;
    reporter
        .ack(&mut tx, &m.thread, m.message_ts.as_str())
        .await?;
    if state == TaskState::AwaitingRepo {
        reporter.ask_repo(&mut tx, &task, &known).await?;
    } else {
        reporter.show_status(&mut tx, &task).await?;
    }
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    tracing::info!(task_id = %task.id, session_id = %task.session_id, turn = task.turn_no, "task created");
    ctx.wake();
    Ok(())
}

async fn reply_and_finish(
    ctx: &Ctx,
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    m: &Mention,
    inbox_id: i64,
    key: String,
    text: String,
) -> anyhow::Result<()> {
    let reporter = ctx.reporter(m.thread.surface)?;
    reporter
        .tell(&mut tx, &m.thread, &key, &m.author.user, &text)
        .await?;
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    ctx.wake();
    Ok(())
}

/// The repository for a new session: inline `repo=`, then the channel map, then the default.
/// An inline repository must be one the config knows, when it knows any.
fn resolve_repo(
    ctx: &Ctx,
    m: &Mention,
    inline: Option<&RepoName>,
    known: &[RepoName],
) -> Option<RepoName> {
    if let Some(r) = inline {
        if known.is_empty() || known.contains(r) {
            return Some(r.clone());
        }
        tracing::info!(repo = %r, "inline repo is not configured; asking instead");
        return None;
    }
    let routing = &ctx.config.routing;
    routing
        .channels
        .get(m.thread.channel.as_str())
        .or(routing.default_repo.as_ref())
        .and_then(|r| RepoName::parse(r))
}

/// Splits inline `repo=owner/name` and `backend=name` options out of the request text.
pub fn extract_options(text: &str) -> (String, Option<RepoName>, Option<String>) {
    let mut repo = None;
    let mut backend = None;
    let mut words = Vec::new();
    for word in text.split(' ') {
        let trimmed = word.trim_end_matches([',', '.', ';', ')', ':']);
        if let Some(rest) = trimmed.strip_prefix("repo=") {
            if let (None, Some(r)) = (&repo, RepoName::parse(rest)) {
                repo = Some(r);
                continue;
            }
        }
        if let Some(rest) = trimmed.strip_prefix("backend=") {
            let valid = !rest.is_empty()
                && rest.len() <= 64
                && rest
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if backend.is_none() && valid {
                backend = Some(rest.to_string());
                continue;
            }
        }
        words.push(word);
    }
    (words.join(" ").trim().to_string(), repo, backend)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_options_are_extracted() {
        let (p, r, b) = extract_options("fix the retry client repo=acme/api, backend=codex please");
        assert_eq!(p, "fix the retry client please");
        assert_eq!(r.unwrap().as_str(), "acme/api");
        assert_eq!(b.as_deref(), Some("codex"));
        let (p, r, b) = extract_options("repo=../etc backend=$(rm) fix");
        assert!(r.is_none() && b.is_none());
        assert_eq!(p, "repo=../etc backend=$(rm) fix");
    }
}
