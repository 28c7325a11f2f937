//! Slack's assistant threads: a person opening a new conversation with Chime in its DM
//! (`assistant_thread_started`) becomes [`ConversationStarted`], so the core can offer starters.

use super::events::{is_id, is_ts, Inbound, ParseError};
use crate::binding::{Binding, Place};
use crate::event::{Author, ConversationStarted, Event};
use crate::ids::{ChannelId, TeamId, ThreadTs, UserId};
use slack_morphism::prelude::SlackAssistantThreadStartedEvent;

/// Reads `assistant_thread_started` (its fields as slack-morphism types them, then checked as
/// Slack ids); `team` and `event_id` come from the envelope.
pub fn thread_started(
    raw: serde_json::Value,
    team: String,
    event_id: String,
) -> Result<Inbound, ParseError> {
    let ev: SlackAssistantThreadStartedEvent = serde_json::from_value(raw)
        .map_err(|_| ParseError::Shape("assistant_thread_started has the wrong shape"))?;
    let t = ev.assistant_thread;
    let (user, channel, thread) = (t.user_id.0, t.channel_id.0, t.thread_ts.0);
    if !is_id(&user) || !is_id(&channel) || !is_ts(&thread) {
        return Err(ParseError::Shape(
            "assistant_thread_started without a valid user, channel and thread",
        ));
    }
    // The channel the person was viewing, only when it is in this workspace: a context from
    // elsewhere names nothing Chime may read here.
    let context = t
        .context
        .channel_id
        .map(|c| c.0)
        .filter(|c| is_id(c))
        .filter(|_| t.context.team_id.as_ref().is_none_or(|x| x.0 == team))
        .map(|c| Place::Slack {
            team: TeamId::new(&team),
            channel: ChannelId::new(&c),
        });
    let event = Event::ConversationStarted(ConversationStarted {
        binding: Binding::SlackThread {
            team: TeamId::new(&team),
            channel: ChannelId::new(&channel),
            thread: ThreadTs::new(&thread),
        },
        author: Author {
            user: UserId::new(&user),
            external: false,
        },
        context,
    });
    Ok(Inbound::Event {
        delivery_id: format!("assistant:{event_id}"),
        team: TeamId(team),
        event: Box::new(event),
    })
}
