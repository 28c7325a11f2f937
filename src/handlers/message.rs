//! A channel message that does not ask for Chime: the relevance policy judges it (when
//! suggestions are on), and may offer one action or start a grace window.

use crate::context::Ctx;
use crate::event::ChannelMessage;
use crate::policy::live;
use crate::queue::inbox;

pub async fn handle_message(ctx: &Ctx, inbox_id: i64, mut m: ChannelMessage) -> anyhow::Result<()> {
    let Some(policy) = ctx.policy.clone() else {
        // Stored while suggestions were on, handled after they were turned off.
        return inbox::complete(&ctx.db, inbox_id).await;
    };
    // Its connector must run here to show anything; otherwise this is a permanent failure.
    let connector = ctx.connectors.for_binding(&m.binding)?;
    if m.place_name.is_empty() {
        // Policies may name channels (`never = ["#random"]`); Slack's events carry only ids.
        m.place_name = connector.place_name(&m.binding).await.unwrap_or_default();
    }
    let mut tx = ctx.db.begin().await?;
    if let Some(offer) = live::judge_message(&mut tx, &policy, &m).await? {
        live::offer_now(ctx, &mut tx, &m, offer).await?;
    }
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    ctx.wake();
    Ok(())
}
