//! `/chime mute` and `/chime unmute`: whether Chime may suggest on someone's messages. The
//! person was answered when the command arrived; this records it.

use crate::context::Ctx;
use crate::event::MuteSuggestions;
use crate::policy::live;
use crate::queue::inbox;

pub async fn handle_mute(ctx: &Ctx, inbox_id: i64, m: MuteSuggestions) -> anyhow::Result<()> {
    let mut tx = ctx.db.begin().await?;
    live::mute_person(&mut tx, &m).await?;
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    tracing::info!(user = %m.author.user, unmute = m.unmute, until_ms = ?m.until_ms, "suggestion mute recorded");
    Ok(())
}
