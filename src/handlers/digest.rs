//! `chime digest post`: a week's digest posted now, where the operator said, through the place's
//! own reporter (the same message the schedule posts).

use crate::context::Ctx;
use crate::digest::{self, Week};
use crate::event::PostDigest;
use crate::failure::Permanent;
use crate::ids::now_ms;
use crate::queue::inbox;

/// The outbox key of the digest a `chime digest post` asked for (`source_event` names it), so
/// the command can tell when it was sent.
pub fn post_key(source_event: &str) -> String {
    format!("digest-post:{source_event}")
}

pub async fn handle_post_digest(
    ctx: &Ctx,
    inbox_id: i64,
    source_event: &str,
    d: PostDigest,
) -> anyhow::Result<()> {
    let week: Week = d
        .week
        .parse()
        .map_err(|e| Permanent::BadEvent(format!("digest week: {e}")))?;
    let text = digest::preview(&ctx.db, week, now_ms()).await?;
    let connector = ctx.connectors.get(d.place.surface())?;
    let mut tx = ctx.db.begin().await?;
    connector
        .reporter()
        .post_digest(&mut tx, &d.place, &post_key(source_event), &text)
        .await?;
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    tracing::info!(%week, place = ?d.place, "digest queued on request");
    Ok(())
}
