//! What Slack knows about people and threads: membership checks (users.info) and thread context
//! (conversations.replies) for the agent.

use super::api::{SlackApi, METADATA_TYPE};
use super::http::SlackIngress;
use crate::backend::QuotedMessage;
use crate::config::SlackConfig;
use crate::connector::Membership;
use crate::event::Author;
use crate::ids::{ChannelId, TeamId, ThreadTs};
use crate::templates::truncate_chars;
use std::sync::Arc;

/// The thread context an agent gets is capped, newest messages kept.
const CONTEXT_MESSAGES: usize = 50;
const CONTEXT_MESSAGE_CHARS: usize = 2000;

pub struct SlackPeople {
    pub api: Arc<SlackApi>,
    pub config: SlackConfig,
    /// Knows the bot's own user id once auth.test (or the config) names it.
    pub ingress: Arc<SlackIngress>,
}

impl SlackPeople {
    pub async fn thread_context(
        &self,
        team: &TeamId,
        channel: &ChannelId,
        thread: &ThreadTs,
    ) -> Vec<QuotedMessage> {
        let messages = match self
            .api
            .replies(team.as_str(), channel.as_str(), thread.as_str())
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%team, %channel, %thread, error = %e, "cannot read the thread; the agent gets no thread context");
                return vec![];
            }
        };
        let own = self.ingress.own_user().unwrap_or_default();
        let own = own.as_str();
        let quoted: Vec<QuotedMessage> = messages
            .into_iter()
            .filter(|m| {
                let ours = m
                    .metadata
                    .as_ref()
                    .and_then(|md| md.get("event_type"))
                    .and_then(|t| t.as_str())
                    == Some(METADATA_TYPE);
                !ours && (own.is_empty() || m.user.as_deref() != Some(own))
            })
            .filter(|m| m.text.as_deref().is_some_and(|t| !t.trim().is_empty()))
            .map(|m| QuotedMessage {
                author: match (&m.user, &m.bot_id) {
                    (Some(u), None) => format!("<@{u}>"),
                    (_, Some(b)) => format!("bot {b}"),
                    (None, None) => "unknown".into(),
                },
                is_bot: m.bot_id.is_some(),
                text: truncate_chars(m.text.as_deref().unwrap_or_default(), CONTEXT_MESSAGE_CHARS),
            })
            .collect();
        let skip = quoted.len().saturating_sub(CONTEXT_MESSAGES);
        quoted.into_iter().skip(skip).collect()
    }

    pub async fn check_member(&self, team: &TeamId, author: &Author) -> Membership {
        membership(&self.api, &self.config, team, author).await
    }
}

/// Whether `author` may start and stop tasks in `team` (users.info: not a guest, a bot, a
/// deactivated account or someone from another organisation, unless the config allows it).
pub async fn membership(
    api: &SlackApi,
    config: &SlackConfig,
    team: &TeamId,
    author: &Author,
) -> Membership {
    if author.external && !config.allow_external {
        return Membership::Denied("people from other organisations in a shared channel cannot start or stop Chime tasks here".into());
    }
    match api.member(team.as_str(), &author.user).await {
        Ok(m) if m.deleted => Membership::Denied("this account is deactivated".into()),
        Ok(m) if m.is_bot => Membership::Denied("bots cannot start or stop Chime tasks".into()),
        Ok(m) if (m.is_restricted || m.is_ultra_restricted) && !config.allow_guests => {
            Membership::Denied("guests cannot start or stop Chime tasks in this workspace".into())
        }
        Ok(m)
            if m.team_id.as_deref().is_some_and(|t| t != team.as_str())
                && !config.allow_external =>
        {
            Membership::Denied(
                "people from other organisations cannot start or stop Chime tasks here".into(),
            )
        }
        Ok(_) => Membership::Allowed,
        Err(e) if config.on_lookup_error == "deny" => {
            tracing::warn!(user = %author.user, error = %e, "users.info failed; refusing (slack.on_lookup_error = deny)");
            Membership::Denied(
                "I could not check your membership of this workspace; please try again".into(),
            )
        }
        Err(e) => {
            tracing::warn!(user = %author.user, error = %e, "users.info failed; allowing (slack.on_lookup_error = allow)");
            Membership::Allowed
        }
    }
}
