//! GitHub said a pull request a turn opened was merged or closed, or its CI finished: the stored
//! state moves, and the thread it came from hears it in one short reply. Pull requests Chime did
//! not open, and news it already gave, change nothing.

use crate::context::Ctx;
use crate::event::PullRequestEvent;
use crate::ids::UserId;
use crate::queue::inbox;
use crate::session::pulls;

pub async fn handle_pull_request(
    ctx: &Ctx,
    inbox_id: i64,
    p: PullRequestEvent,
) -> anyhow::Result<()> {
    let mut tx = ctx.db.begin().await?;
    for &number in &p.numbers {
        let Some(notice) = pulls::apply(&mut tx, &p.repo, number, &p.change, p.at_ms).await? else {
            tracing::debug!(repo = %p.repo, number, "pull request not tracked, or nothing new");
            continue;
        };
        tracing::info!(repo = %p.repo, number, change = ?p.change, "pull request moved");
        match ctx.connectors.for_binding(&notice.binding) {
            Ok(connector) => {
                let key = format!("pr:{inbox_id}:{number}");
                let to = UserId::new(&notice.requester);
                connector
                    .reporter()
                    .tell(&mut tx, &notice.binding, &key, &to, &notice.text)
                    .await?;
            }
            // Recorded all the same; the thread's surface is not running here.
            Err(e) => {
                tracing::warn!(binding = %notice.binding, error = %e, "cannot tell the thread")
            }
        }
    }
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    ctx.wake();
    Ok(())
}
