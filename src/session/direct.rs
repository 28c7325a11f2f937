//! A turn asked from someone's editor also reaches them where they read: their direct messages
//! with Chime on Slack (their own Slack account, or the one theirs is linked to), following the
//! mirror rules (`[mirror]`: the result, or only its pull request, or nothing).

use crate::binding::{Binding, Surface};
use crate::context::Ctx;
use crate::ids::UserId;
use crate::session::Task;
use sqlx::AnyConnection;

/// Where the end of `task` is told privately, besides its own place: the Slack user to send it
/// to, when it was asked in an editor whose person has one.
async fn recipient(conn: &mut AnyConnection, task: &Task) -> anyhow::Result<Option<UserId>> {
    let Binding::Ide { account, .. } = &task.binding else {
        return Ok(None);
    };
    let Some((surface, user)) = account.split_once('.') else {
        return Ok(None);
    };
    let slack = Surface::Slack.as_str();
    let accounts = crate::identity::accounts(conn, surface, user).await?;
    Ok(accounts
        .into_iter()
        .find(|(s, _)| s == slack)
        .map(|(_, u)| UserId::new(u)))
}

/// Queues the end of `task` for its person's Slack DM, in the transaction that finishes it.
pub async fn tell_person(ctx: &Ctx, tx: &mut AnyConnection, task: &Task) -> anyhow::Result<()> {
    let mirror = &ctx.config.mirror;
    if !(mirror.result || mirror.pr_link) {
        return Ok(());
    }
    let Some(to) = recipient(tx, task).await? else {
        return Ok(());
    };
    let Ok(slack) = ctx.connectors.get(Surface::Slack) else {
        tracing::debug!(task_id = %task.id, "no Slack here: the editor's result is not sent as a DM");
        return Ok(());
    };
    let origin = task.binding.surface().display_name();
    slack
        .reporter()
        .show_direct(tx, &to, task, origin, mirror.result)
        .await
}
