//! Button clicks on Chime's messages: Stop, Retry, and the repository picker.
//!
//! A task's buttons belong to the person who asked for it and to `slack.admins`; anyone else who
//! presses one is told so in the thread, and nothing changes. Retry makes at most one new turn
//! per ended turn, whoever presses it and however often, in the name of the one who pressed it.

use crate::context::Ctx;
use crate::event::{ButtonAction, ButtonClicked};
use crate::inbox;
use crate::reporter::Membership;
use crate::session::{self, NewTask, Session, TaskState};
use anyhow::Context;

pub async fn handle_button(
    ctx: &Ctx,
    inbox_id: i64,
    source_event: &str,
    b: ButtonClicked,
) -> anyhow::Result<()> {
    let Some(thread) = b.thread.clone() else {
        tracing::info!("button click without a thread; ignored");
        return inbox::complete(&ctx.db, inbox_id).await;
    };
    let reporter = ctx.reporter(thread.surface)?;
    let user = b.author.user.to_string();
    let membership = reporter.check_member(&thread.team, &b.author).await;
    let mut tx = ctx.db.begin().await?;
    if let Membership::Denied(why) = membership {
        tracing::info!(user = %user, reason = %why, "refused a button click");
        reporter
            .tell(
                &mut tx,
                &thread,
                &format!("refusal:{source_event}"),
                &b.author.user,
                &format!("Sorry, {why}."),
            )
            .await?;
        inbox::complete_in(&mut tx, inbox_id).await?;
        tx.commit().await?;
        ctx.wake();
        return Ok(());
    }
    let task_id = match &b.action {
        ButtonAction::Stop { task }
        | ButtonAction::Retry { task }
        | ButtonAction::PickRepo { task, .. } => task.clone(),
    };
    let Some(task) = session::get_task(&mut tx, &task_id).await? else {
        tracing::info!(task_id = %task_id, "button for an unknown task; ignored");
        inbox::complete_in(&mut tx, inbox_id).await?;
        tx.commit().await?;
        return Ok(());
    };
    if task.thread_key != thread.key() {
        // A button value can be forged; it must belong to the thread it was pressed in.
        tracing::warn!(task_id = %task_id, "button names a task of another thread; ignored");
        inbox::complete_in(&mut tx, inbox_id).await?;
        tx.commit().await?;
        return Ok(());
    }
    let is_admin = ctx.config.slack.admins.iter().any(|a| a == &user);
    if task.requester != user && !is_admin {
        let what = match b.action {
            ButtonAction::Stop { .. } => "stop",
            ButtonAction::Retry { .. } => "retry",
            ButtonAction::PickRepo { .. } => "pick the repository of",
        };
        tracing::info!(task_id = %task.id, by = %user, requester = %task.requester, action = what, "refused a button of someone else's task");
        // One notice per person, task and button, however often it is pressed.
        let key = format!("not-yours:{what}:{}:{user}", task.id);
        // `tell` escapes its text, so the requester is named by role, not mentioned.
        let text = format!(
            "Only the person who asked for this turn, or a Chime admin, can {what} this task."
        );
        reporter
            .tell(&mut tx, &thread, &key, &b.author.user, &text)
            .await?;
        inbox::complete_in(&mut tx, inbox_id).await?;
        tx.commit().await?;
        ctx.wake();
        return Ok(());
    }
    match b.action {
        ButtonAction::Stop { .. } => {
            if session::request_cancel(&mut tx, &task.id, &user).await? {
                tracing::info!(task_id = %task.id, by = %user, "stop requested");
                // A task no worker holds yet stops here; a running one at its next heartbeat.
                if session::finish_task(&mut tx, &task.id, None, TaskState::Cancelled, None, None)
                    .await?
                {
                    let task = session::get_task(&mut tx, &task.id)
                        .await?
                        .context("task vanished")?;
                    reporter.show_result(&mut tx, &task).await?;
                }
            }
        }
        ButtonAction::Retry { .. } => {
            if matches!(task.state, TaskState::Failed | TaskState::Cancelled) {
                // Named by the turn it retries, not by the click: a second press finds the
                // first one's task and makes nothing.
                let retry_of = format!("retry:{}", task.id);
                let known = ctx.config.known_repos();
                let state = if task.repo.is_none() && !known.is_empty() {
                    TaskState::AwaitingRepo
                } else {
                    TaskState::Queued
                };
                let session = Session {
                    id: task.session_id.clone(),
                    surface: task.surface,
                    repo: task.repo.clone(),
                    backend: task.backend.clone(),
                };
                let new = NewTask {
                    session: &session,
                    source_event: &retry_of,
                    prompt: &task.prompt,
                    requester: &user,
                    repo: task.repo.as_ref(),
                    thread_key: &task.thread_key,
                    message_ts: task.message_ts.as_deref(),
                    state,
                };
                if let Some(id) = session::insert_task(&mut tx, new).await? {
                    let retry = session::get_task(&mut tx, &id)
                        .await?
                        .context("task vanished")?;
                    if state == TaskState::AwaitingRepo {
                        reporter.ask_repo(&mut tx, &retry, &known).await?;
                    } else {
                        reporter.show_status(&mut tx, &retry).await?;
                    }
                    tracing::info!(task_id = %retry.id, retry_of = %task.id, by = %user, "retry queued");
                } else {
                    tracing::info!(task_id = %task.id, by = %user, "turn already retried; press ignored");
                    reporter
                        .tell(
                            &mut tx,
                            &thread,
                            &format!("retried:{}:{user}", task.id),
                            &b.author.user,
                            "This turn was already retried; its new turn is further down the thread.",
                        )
                        .await?;
                }
            }
        }
        ButtonAction::PickRepo { repo, .. } => {
            if ctx.config.known_repos().contains(&repo)
                && session::assign_repo(&mut tx, &task.id, &repo).await?
            {
                session::set_repo(&mut tx, &task.session_id, &repo).await?;
                let task = session::get_task(&mut tx, &task.id)
                    .await?
                    .context("task vanished")?;
                reporter
                    .update_status(&mut tx, &task, &format!("Repository: {repo}"))
                    .await?;
            }
        }
    }
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    ctx.wake();
    Ok(())
}
