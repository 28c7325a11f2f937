//! Routes each inbox event to its handler: one `match`, one `handle_*` per event.

use crate::context::Ctx;
use crate::event::Event;
use crate::handlers::{
    backend_update, buttons, digest, home, ide, link, mention, message, mute, pull_request,
    request, starters, stop,
};
use crate::queue::inbox::InboxRow;

#[tracing::instrument(skip_all, fields(inbox_id = row.id, source = %row.source, delivery_id = %row.delivery_id))]
pub async fn dispatch(ctx: &Ctx, row: &InboxRow) -> anyhow::Result<()> {
    let event = row
        .event
        .clone()
        .map_err(|e| anyhow::anyhow!("inbox row holds an unreadable event: {e}"))?;
    // Names the event for idempotency: a replayed row finds the task it already made.
    let source_event = format!("{}:{}", row.source, row.delivery_id);
    match event {
        Event::Mention(m) => mention::handle_mention(ctx, row.id, &source_event, m).await,
        Event::ButtonClicked(b) => buttons::handle_button(ctx, row.id, &source_event, b).await,
        Event::Message(m) => message::handle_message(ctx, row.id, m).await,
        Event::BackendUpdate(u) => backend_update::handle_backend_update(ctx, row.id, u).await,
        Event::RemoteStatus(s) => backend_update::handle_remote_status(ctx, row.id, s).await,
        Event::PullRequest(p) => pull_request::handle_pull_request(ctx, row.id, p).await,
        Event::Request(r) => request::handle_request(ctx, row.id, &source_event, r).await,
        Event::MuteSuggestions(m) => mute::handle_mute(ctx, row.id, m).await,
        Event::StopRequested(s) => stop::handle_stop(ctx, row.id, &source_event, s).await,
        Event::LinkAccount(l) => link::handle_link(ctx, row.id, l).await,
        Event::HomeOpened(h) => home::handle_home_opened(ctx, row.id, h).await,
        Event::SettingChanged(s) => home::handle_setting(ctx, row.id, s).await,
        Event::PostDigest(d) => digest::handle_post_digest(ctx, row.id, &source_event, d).await,
        Event::IdeSignal(s) => ide::handle_ide_signal(ctx, row.id, s).await,
        Event::ConversationStarted(c) => {
            starters::handle_conversation_started(ctx, row.id, c).await
        }
    }
}
