//! Button clicks on Chime's messages: Stop, Retry, Try 3 ways, Use this one, Approve and Revise
//! of a plan, and the repository picker.
//!
//! A task's buttons belong to the person who asked for it and to its connector's admins
//! (`slack.admins`); anyone else who presses one is told so in the thread, and nothing changes.
//! Retry makes at most one new turn per ended turn, whoever presses it and however often, in the
//! name of the one who pressed it.

use crate::connector::Membership;
use crate::context::Ctx;
use crate::event::{ButtonAction, ButtonClicked};
use crate::queue::inbox;
use crate::session::{self, turns};

pub async fn handle_button(
    ctx: &Ctx,
    inbox_id: i64,
    source_event: &str,
    b: ButtonClicked,
) -> anyhow::Result<()> {
    let Some(binding) = b.binding.clone() else {
        tracing::info!("button click without a place; ignored");
        return inbox::complete(&ctx.db, inbox_id).await;
    };
    let connector = ctx.connectors.for_binding(&binding)?;
    let reporter = connector.reporter();
    let user = b.author.user.to_string();
    let membership = connector.check_member(&binding.location(), &b.author).await;
    // An accepted suggestion starts a session where the surface says which repository it is
    // about (the editor's workspace); asked before the transaction: it may be a network call.
    let (suggested, base) = match (&membership, &b.action) {
        (Membership::Allowed, ButtonAction::Accept { .. }) => (
            connector.suggest_repo(&binding).await,
            connector.suggest_base(&binding).await,
        ),
        _ => (None, None),
    };
    let mut tx = ctx.db.begin().await?;
    if let Membership::Denied(why) = membership {
        tracing::info!(user = %user, reason = %why, "refused a button click");
        let (key, text) = (format!("refusal:{source_event}"), format!("Sorry, {why}."));
        if matches!(
            b.action,
            ButtonAction::Accept { .. }
                | ButtonAction::NotNow { .. }
                | ButtonAction::MuteHere { .. }
        ) {
            // A suggestion lives in someone else's thread: only the presser hears why not.
            reporter
                .tell_privately(&mut tx, &binding, &key, &b.author.user, &text)
                .await?;
        } else {
            reporter
                .tell(&mut tx, &binding, &key, &b.author.user, &text)
                .await?;
        }
        inbox::complete_in(&mut tx, inbox_id).await?;
        tx.commit().await?;
        ctx.wake();
        return Ok(());
    }
    let task_id = match &b.action {
        ButtonAction::Stop { task }
        | ButtonAction::Retry { task }
        | ButtonAction::TryWays { task }
        | ButtonAction::Choose { task, .. }
        | ButtonAction::Feedback { task, .. }
        | ButtonAction::ApprovePlan { task }
        | ButtonAction::RevisePlan { task }
        | ButtonAction::PickRepo { task, .. } => task.clone(),
        ButtonAction::Accept { suggestion }
        | ButtonAction::NotNow { suggestion }
        | ButtonAction::MuteHere { suggestion } => {
            let pressed = super::suggestions::Pressed {
                binding: &binding,
                click: &b,
                suggestion,
                repo: suggested,
                base,
            };
            super::suggestions::handle(ctx, &mut tx, reporter, pressed).await?;
            inbox::complete_in(&mut tx, inbox_id).await?;
            tx.commit().await?;
            ctx.wake();
            return Ok(());
        }
    };
    let Some(task) = session::get_task(&mut tx, &task_id).await? else {
        tracing::info!(task_id = %task_id, "button for an unknown task; ignored");
        inbox::complete_in(&mut tx, inbox_id).await?;
        tx.commit().await?;
        return Ok(());
    };
    if task.binding != binding {
        // A button value can be forged; it must belong to the thread it was pressed in.
        tracing::warn!(task_id = %task_id, "button names a task of another thread; ignored");
        inbox::complete_in(&mut tx, inbox_id).await?;
        tx.commit().await?;
        return Ok(());
    }
    if let ButtonAction::Feedback { positive, .. } = b.action {
        // Anyone who may act here may say what they thought of a result.
        super::feedback::handle(ctx, &mut tx, &task, &user, positive).await?;
        inbox::complete_in(&mut tx, inbox_id).await?;
        tx.commit().await?;
        return Ok(());
    }
    if task.requester != user && !connector.is_admin(&user) {
        let what = match b.action {
            ButtonAction::Stop { .. } => "stop",
            ButtonAction::Retry { .. } => "retry",
            ButtonAction::TryWays { .. } => "try several ways",
            ButtonAction::Choose { .. } => "choose an attempt of",
            ButtonAction::ApprovePlan { .. } => "approve the plan of",
            ButtonAction::RevisePlan { .. } => "revise the plan of",
            _ => "pick the repository of",
        };
        tracing::info!(task_id = %task.id, by = %user, requester = %task.requester, action = what, "refused a button of someone else's task");
        // One notice per person, task and button, however often it is pressed.
        let key = format!("not-yours:{what}:{}:{user}", task.id);
        // `tell` escapes its text, so the requester is named by role, not mentioned.
        let text = format!(
            "Only the person who asked for this turn, or a Chime admin, can {what} this task."
        );
        reporter
            .tell(&mut tx, &binding, &key, &b.author.user, &text)
            .await?;
        inbox::complete_in(&mut tx, inbox_id).await?;
        tx.commit().await?;
        ctx.wake();
        return Ok(());
    }
    match &b.action {
        ButtonAction::Stop { .. } => {
            let asked = turns::stop_task(&mut tx, reporter, &task, &b.author.user).await?;
            if asked {
                tracing::info!(task_id = %task.id, by = %user, "stop requested");
            }
        }
        ButtonAction::Retry { .. } => {
            let ended = task.state.is_final() && task.state != session::TaskState::Succeeded;
            match turns::retry_turn(&mut tx, &ctx.config, reporter, &task, &b.author.user).await? {
                Some(retry) => {
                    tracing::info!(task_id = %retry.id, retry_of = %task.id, by = %user, "retry queued")
                }
                None if ended => {
                    tracing::info!(task_id = %task.id, by = %user, "turn already retried; press ignored");
                    reporter
                        .tell(
                            &mut tx,
                            &binding,
                            &format!("retried:{}:{user}", task.id),
                            &b.author.user,
                            "This turn was already retried; its new turn is further down the thread.",
                        )
                        .await?;
                }
                None => {}
            }
        }
        ButtonAction::PickRepo { repo, .. } => {
            turns::pick_repo(&mut tx, &ctx.config, reporter, &task, repo).await?;
        }
        ButtonAction::TryWays { .. } => {
            let n = ctx.config.agent.best_of_max.min(3);
            let key = format!("ways:{}:{user}", task.id);
            match turns::try_ways(&mut tx, &ctx.config, reporter, &task, &b.author.user, n).await? {
                Ok(Some(turn)) => {
                    tracing::info!(task_id = %turn.id, of = %task.id, attempts = n, by = %user, "best-of-N turn queued")
                }
                Ok(None) => {
                    let text = "This request is already being tried several ways, further down the thread.";
                    reporter
                        .tell(&mut tx, &binding, &key, &b.author.user, text)
                        .await?;
                }
                Err(why) => {
                    reporter
                        .tell(&mut tx, &binding, &key, &b.author.user, &why)
                        .await?;
                }
            }
        }
        ButtonAction::Choose { attempt, .. } => {
            super::choose::handle(ctx, &mut tx, reporter, &task, *attempt, &b.author.user).await?;
        }
        ButtonAction::ApprovePlan { .. } => {
            let key = format!("approve:{}:{user}", task.id);
            super::approval::decide(ctx, &mut tx, reporter, &task, &b.author.user, true, &key)
                .await?;
        }
        ButtonAction::RevisePlan { .. } => {
            let key = format!("revise:{}:{user}", task.id);
            super::approval::decide(ctx, &mut tx, reporter, &task, &b.author.user, false, &key)
                .await?;
        }
        _ => {}
    }
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    ctx.wake();
    Ok(())
}
