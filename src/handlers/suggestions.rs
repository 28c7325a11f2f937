//! A suggestion's buttons: **Do it** starts a turn through `start_turn`, exactly as a mention
//! would, in the clicker's name; **Not now** and **Don't suggest this here** are recorded (the
//! second mutes that action kind in that place). The membership check has run before.

use crate::binding::Binding;
use crate::connector::Reporter;
use crate::context::Ctx;
use crate::event::{ButtonAction, ButtonClicked};
use crate::ids::RepoName;
use crate::policy::live::{self, OfferAnswer};
use crate::session::turns::{self, Started, TurnOptions, TurnRequest};
use sqlx::AnyConnection;

/// A press of one of a suggestion's buttons.
pub struct Pressed<'a> {
    /// Where it was pressed.
    pub binding: &'a Binding,
    pub click: &'a ButtonClicked,
    pub suggestion: &'a str,
    /// The repository the surface says the place is about, for the session it may start, and
    /// where in it that session starts.
    pub repo: Option<RepoName>,
    pub base: Option<crate::backend::Base>,
}

pub async fn handle(
    ctx: &Ctx,
    tx: &mut AnyConnection,
    reporter: &dyn Reporter,
    pressed: Pressed<'_>,
) -> anyhow::Result<()> {
    let Pressed {
        binding,
        click: b,
        suggestion: id,
        repo,
        base,
    } = pressed;
    let by = &b.author.user;
    let Some(s) = live::get(tx, id).await? else {
        tracing::info!(suggestion = id, "button for an unknown suggestion; ignored");
        return Ok(());
    };
    // A button value can be forged; it must belong to the thread it was pressed in. A private
    // offer (which Slack names by its own message, not the thread) must be pressed in its
    // channel, by the one person who was shown it.
    let pressed_where_offered = match &s.offer.private_to {
        Some(to) => to == by && s.offer.binding.location() == binding.location(),
        None => &s.offer.binding == binding,
    };
    if !pressed_where_offered {
        tracing::warn!(
            suggestion = id,
            "button names a suggestion of another thread or person; ignored"
        );
        return Ok(());
    }
    let binding = &s.offer.binding;
    if s.state != "offered" {
        let key = format!("suggestion-answered:{id}:{by}");
        let text = "This suggestion was already answered.";
        return reporter.tell_privately(tx, binding, &key, by, text).await;
    }
    let answer = match &b.action {
        ButtonAction::Accept { .. } => {
            // The message is data for the agent: quoted and attributed by the input builder.
            let prompt = format!(
                "{} (suggested by Chime for this message from <@{}>):\n{}",
                s.offer.button, s.author, s.text
            );
            let request = TurnRequest {
                source_event: &format!("suggestion:{id}"),
                binding,
                requester: by,
                message: None,
                prompt: &prompt,
                options: TurnOptions {
                    repo,
                    base,
                    ..TurnOptions::default()
                },
                refs: vec![],
            };
            match turns::start_turn(tx, &ctx.config, reporter, request).await? {
                Started::Turn(task) => {
                    live::answer(tx, id, "accepted", by.as_str(), Some(task.id.as_str())).await?;
                    if let Some(policy) = &ctx.policy {
                        live::learn(tx, policy, &s.place, &s.offer.action, true).await?;
                    }
                    tracing::info!(suggestion = id, task_id = %task.id, by = %by, "suggestion accepted");
                    OfferAnswer::Accepted { by: by.clone() }
                }
                Started::AlreadyMade => return Ok(()),
                Started::Refused(text) => {
                    let key = format!("suggestion-refused:{id}:{by}");
                    return reporter.tell_privately(tx, binding, &key, by, &text).await;
                }
            }
        }
        ButtonAction::NotNow { .. } => {
            if !live::answer(tx, id, "dismissed", by.as_str(), None).await? {
                return Ok(());
            }
            tracing::info!(suggestion = id, by = %by, "suggestion dismissed");
            if let Some(policy) = &ctx.policy {
                live::learn(tx, policy, &s.place, &s.offer.action, false).await?;
            }
            OfferAnswer::NotNow { by: by.clone() }
        }
        ButtonAction::MuteHere { .. } => {
            if !live::answer(tx, id, "muted", by.as_str(), None).await? {
                return Ok(());
            }
            live::mute(tx, &s.place, &s.offer.action, by.as_str()).await?;
            tracing::info!(suggestion = id, by = %by, place = %s.place, action = %s.offer.action, "action muted here");
            OfferAnswer::Muted { by: by.clone() }
        }
        _ => return Ok(()),
    };
    reporter.offer_answered(tx, &s.offer, &answer).await
}
