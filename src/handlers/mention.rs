//! A mention or DM: start a session, or continue the one bound to this thread.

use crate::connector::Membership;
use crate::connector::Reporter;
use crate::context::Ctx;
use crate::event::Mention;
use crate::handlers::{approval, starters};
use crate::identity::{self, Standing};
use crate::ids::RepoName;
use crate::queue::inbox;
use crate::session::turns::{self, Started, TurnOptions, TurnRequest};
use crate::session::{self, TaskState};
use sqlx::AnyConnection;

pub async fn handle_mention(
    ctx: &Ctx,
    inbox_id: i64,
    source_event: &str,
    m: Mention,
) -> anyhow::Result<()> {
    let connector = ctx.connectors.for_binding(&m.binding)?;
    let reporter = connector.reporter();
    let membership = connector
        .check_member(&m.binding.location(), &m.author)
        .await;
    // Where the surface itself says which repository a new session works on (a Linear issue's
    // `repo:` line or team), asked before the transaction: it may be a network call.
    let mut conn = ctx.db.pool.acquire().await?;
    let is_new = session::find_by_binding(&mut conn, &m.binding)
        .await?
        .is_none();
    drop(conn);
    let team = match &membership {
        Membership::Allowed => connector.team(&m.binding).await,
        Membership::Denied(_) => None,
    };
    let (suggested, base, refs) = match (&membership, is_new) {
        (Membership::Allowed, true) => (
            connector.suggest_repo(&m.binding).await,
            connector.suggest_base(&m.binding).await,
            connector.work_items(&m.binding).await,
        ),
        _ => (None, None, vec![]),
    };
    // Where the config requires it, someone whose account is not linked links it first.
    let standing = match &membership {
        Membership::Allowed => {
            identity::check(
                &ctx.db,
                &ctx.config,
                &ctx.connectors,
                connector.as_ref(),
                &m.author,
            )
            .await?
        }
        Membership::Denied(_) => Standing::Ok,
    };
    let mut tx = ctx.db.begin().await?;
    let refusal = match membership {
        Membership::Allowed if matches!(standing, Standing::MustLink { .. }) => {
            if let Standing::MustLink { code } = &standing {
                let url = identity::link_url(&ctx.config, code);
                tracing::info!(user = %m.author.user, "asked an unlinked person to link their account");
                reporter
                    .ask_to_link(
                        &mut tx,
                        &m.binding,
                        &format!("link:{source_event}"),
                        &m.author.user,
                        &url,
                    )
                    .await?;
            }
            None
        }
        Membership::Denied(why) => {
            crate::metrics::event_rejected(m.binding.surface().as_str(), "unauthorized");
            tracing::info!(user = %m.author.user, reason = %why, "refused a request");
            Some(("refusal", format!("Sorry, {why}.")))
        }
        Membership::Allowed if answers_repo_question(ctx, &mut tx, reporter, &m).await? => None,
        Membership::Allowed
            if approves_plan(ctx, &mut tx, connector.as_ref(), &m, source_event).await? =>
        {
            None
        }
        Membership::Allowed if starters::asks_open_sessions(&m) => {
            starters::answer_open_sessions(
                &mut tx,
                ctx,
                connector.as_ref(),
                reporter,
                &m,
                source_event,
            )
            .await?;
            None
        }
        Membership::Allowed => {
            let (prompt, mut options) = TurnOptions::extract(&m.text);
            options.repo = options.repo.or(suggested);
            options.base = base;
            options.team = team;
            let request = TurnRequest {
                source_event,
                binding: &m.binding,
                requester: &m.author.user,
                message: Some(&m.message),
                prompt: &prompt,
                options,
                refs,
            };
            match turns::start_turn(&mut tx, &ctx.config, reporter, request).await? {
                Started::Turn(task) => {
                    tracing::info!(task_id = %task.id, session_id = %task.session_id, turn = task.turn_no, "task created");
                    None
                }
                Started::AlreadyMade => {
                    tracing::info!("event already made its task");
                    None
                }
                Started::Refused(text) => Some(("refused", text)),
            }
        }
    };
    // User errors are answered where they were asked, and the event is done.
    if let Some((kind, text)) = refusal {
        let key = format!("{kind}:{source_event}");
        reporter
            .tell(&mut tx, &m.binding, &key, &m.author.user, &text)
            .await?;
    }
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    ctx.wake();
    Ok(())
}

/// A reply that names a repository answers the question of the turn here that waits for one
/// (Linear's `select` elicitation answers with the option's value). Only its requester may.
async fn answers_repo_question(
    ctx: &Ctx,
    tx: &mut AnyConnection,
    reporter: &dyn Reporter,
    m: &Mention,
) -> anyhow::Result<bool> {
    let Some(repo) = RepoName::parse(m.text.trim()) else {
        return Ok(false);
    };
    let Some(task) = session::latest_task_at(tx, &m.binding).await? else {
        return Ok(false);
    };
    if task.state != TaskState::AwaitingRepo || task.requester != m.author.user.as_str() {
        return Ok(false);
    }
    let picked = turns::pick_repo(tx, &ctx.config, reporter, &task, &repo).await?;
    if picked {
        tracing::info!(task_id = %task.id, repo = %repo, "repository chosen by reply");
    }
    Ok(picked)
}

/// A reply that approves ("approve") the plan waiting in this thread approves it, as its
/// **Approve** button does (Linear's elicitation has no buttons). Only its requester or an admin
/// may; anyone else is told so.
async fn approves_plan(
    ctx: &Ctx,
    tx: &mut AnyConnection,
    connector: &dyn crate::connector::Connector,
    m: &Mention,
    source_event: &str,
) -> anyhow::Result<bool> {
    if !approval::is_approval(&m.text) {
        return Ok(false);
    }
    let Some(task) = session::latest_task_at(tx, &m.binding).await? else {
        return Ok(false);
    };
    if !approval::is_waiting(tx, &task).await? {
        return Ok(false);
    }
    let by = &m.author.user;
    let key = format!("approve:{source_event}");
    if task.requester != by.as_str() && !connector.is_admin(by.as_str()) {
        tracing::info!(task_id = %task.id, by = %by, "refused an approval of someone else's plan");
        let text = "Only the person who asked for this turn, or a Chime admin, can approve the plan of this task.";
        connector
            .reporter()
            .tell(tx, &m.binding, &key, by, text)
            .await?;
        return Ok(true);
    }
    approval::decide(ctx, tx, connector.reporter(), &task, by, true, &key).await?;
    Ok(true)
}
