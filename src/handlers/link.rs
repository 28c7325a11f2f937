//! `/chime link CODE`: links the account that redeems a code to the one it was made for.

use crate::context::Ctx;
use crate::event::LinkAccount;
use crate::identity;
use crate::queue::inbox;

pub async fn handle_link(ctx: &Ctx, inbox_id: i64, l: LinkAccount) -> anyhow::Result<()> {
    let mut tx = ctx.db.begin().await?;
    match identity::redeem(&mut tx, &l.code).await? {
        Some((surface, user)) if surface != l.surface.as_str() => {
            identity::link(
                &mut tx,
                (l.surface.as_str(), l.author.user.as_str()),
                (&surface, &user),
                "code",
            )
            .await?;
        }
        Some(_) => tracing::info!("a link code redeemed on its own surface; nothing linked"),
        None => {
            tracing::info!(user = %l.author.user, "an unknown or expired link code; nothing linked")
        }
    }
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    Ok(())
}
