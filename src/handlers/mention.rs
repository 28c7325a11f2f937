//! A mention or DM: start a session, or continue the one bound to this thread.

use crate::connector::Membership;
use crate::context::Ctx;
use crate::event::Mention;
use crate::queue::inbox;
use crate::session::turns::{self, Started, TurnOptions, TurnRequest};

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
    let mut tx = ctx.db.begin().await?;
    let refusal = match membership {
        Membership::Denied(why) => {
            tracing::info!(user = %m.author.user, reason = %why, "refused a request");
            Some(("refusal", format!("Sorry, {why}.")))
        }
        Membership::Allowed => {
            let (prompt, options) = TurnOptions::extract(&m.text);
            let request = TurnRequest {
                source_event,
                binding: &m.binding,
                requester: &m.author.user,
                message: Some(&m.message),
                prompt: &prompt,
                options,
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
