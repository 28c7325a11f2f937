//! `/chime <request>`: work asked for outside any thread. Chime opens a thread for it, in the
//! channel where it was asked, and from then on it is a mention in that thread. Someone who may
//! not start work there gets the thread, and the refusal, privately, so a refused request never
//! lands in front of the whole channel.

use crate::connector::Membership;
use crate::context::Ctx;
use crate::event::{Mention, Request};
use crate::handlers::mention;
use crate::queue::inbox;
use anyhow::Context;

pub async fn handle_request(
    ctx: &Ctx,
    inbox_id: i64,
    source_event: &str,
    r: Request,
) -> anyhow::Result<()> {
    // A replay after the task was made: its thread exists; opening another would post twice.
    if crate::session::task_for_event(&ctx.db, source_event)
        .await?
        .is_some()
    {
        tracing::info!("request already made its task");
        let mut tx = ctx.db.begin().await?;
        inbox::complete_in(&mut tx, inbox_id).await?;
        tx.commit().await?;
        return Ok(());
    }
    let connector = ctx.connectors.get(r.place.surface())?;
    let private = !matches!(
        connector.check_member(&r.place, &r.author).await,
        Membership::Allowed
    );
    let (binding, message) = connector
        .open_thread(&r.place, &r.author, &r.text, private, source_event)
        .await
        .context("opening a thread for a request")?;
    tracing::info!(%binding, private, "opened a thread for a request");
    let m = Mention {
        binding,
        message,
        author: r.author,
        text: r.text,
    };
    mention::handle_mention(ctx, inbox_id, source_event, m).await
}
