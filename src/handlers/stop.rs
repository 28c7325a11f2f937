//! A stop asked on the surface itself (Linear's `stop` signal): the Stop button of the turn
//! running there, with the same ownership rule.

use crate::context::Ctx;
use crate::event::{ButtonAction, ButtonClicked, StopRequested};
use crate::queue::inbox;
use crate::session;

pub async fn handle_stop(
    ctx: &Ctx,
    inbox_id: i64,
    source_event: &str,
    s: StopRequested,
) -> anyhow::Result<()> {
    let mut conn = ctx.db.pool.acquire().await?;
    let task = session::latest_task_at(&mut conn, &s.binding).await?;
    drop(conn);
    match task.filter(|t| !t.state.is_final()) {
        Some(task) => {
            let click = ButtonClicked {
                binding: Some(s.binding),
                author: s.author,
                action: ButtonAction::Stop { task: task.id },
            };
            super::buttons::handle_button(ctx, inbox_id, source_event, click).await
        }
        None => {
            // The surface still waits for an answer to its stop.
            let reporter = ctx.connectors.for_binding(&s.binding)?.reporter();
            let mut tx = ctx.db.begin().await?;
            let key = format!("stop-idle:{source_event}");
            reporter
                .tell(
                    &mut tx,
                    &s.binding,
                    &key,
                    &s.author.user,
                    "Nothing was running here, so there was nothing to stop.",
                )
                .await?;
            inbox::complete_in(&mut tx, inbox_id).await?;
            tx.commit().await?;
            ctx.wake();
            Ok(())
        }
    }
}
