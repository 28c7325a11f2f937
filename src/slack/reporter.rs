//! The Slack thread as a reporting surface: reactions, one status message edited in place, and
//! the final card, all through the outbox.

use super::api::{SlackApi, METADATA_TYPE};
use crate::backend::QuotedMessage;
use crate::config::SlackConfig;
use crate::event::{Author, Surface, ThreadRef};
use crate::ids::{RepoName, TeamId};
use crate::outbox::{self, Op};
use crate::reporter::{self, Membership, Reporter};
use crate::session::Task;
use crate::templates::{truncate_chars, Templates};
use async_trait::async_trait;
use sqlx::AnyConnection;
use std::sync::Arc;

/// The thread context an agent gets is capped, newest messages kept.
const CONTEXT_MESSAGES: usize = 50;
const CONTEXT_MESSAGE_CHARS: usize = 2000;

pub struct SlackReporter {
    pub api: Arc<SlackApi>,
    pub templates: Arc<Templates>,
    pub config: SlackConfig,
}

/// Splits a thread key `T/C/ts` back into its parts.
pub fn parse_key(key: &str) -> Option<(String, String, String)> {
    let mut it = key.splitn(3, '/');
    Some((
        it.next()?.to_string(),
        it.next()?.to_string(),
        it.next()?.to_string(),
    ))
}

impl SlackReporter {
    async fn enqueue_update(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        key: &str,
        rendered: crate::templates::Rendered,
        last: bool,
    ) -> anyhow::Result<()> {
        let (_, channel, _) = parse_key(&task.thread_key)
            .ok_or_else(|| anyhow::anyhow!("bad thread key {}", task.thread_key))?;
        let op = Op::Update {
            channel,
            text: rendered.text,
            blocks: rendered.blocks,
            last,
        };
        outbox::enqueue(
            conn,
            Surface::Slack,
            &task.thread_key,
            key,
            Some(&reporter::status_key(task)),
            &op,
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl Reporter for SlackReporter {
    async fn ack(
        &self,
        conn: &mut AnyConnection,
        thread: &ThreadRef,
        message_ts: &str,
    ) -> anyhow::Result<()> {
        let op = Op::React {
            channel: thread.channel.to_string(),
            ts: message_ts.to_string(),
            name: self.config.ack_reaction.clone(),
        };
        let key = format!("ack:{}:{}:{}", thread.team, thread.channel, message_ts);
        outbox::enqueue(conn, Surface::Slack, &thread.key(), &key, None, &op).await?;
        Ok(())
    }

    async fn show_status(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()> {
        let card = reporter::status_card(&self.templates, task, None)?;
        post_card(conn, task, &reporter::status_key(task), card).await
    }

    async fn update_status(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        progress: &str,
    ) -> anyhow::Result<()> {
        let card = reporter::status_card(&self.templates, task, Some(progress))?;
        let key = format!(
            "task:{}:progress:{}",
            task.id,
            uuid::Uuid::new_v4().simple()
        );
        self.enqueue_update(conn, task, &key, card, false).await
    }

    async fn show_result(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()> {
        let card = reporter::result_card(&self.templates, task)?;
        self.enqueue_update(conn, task, &reporter::final_key(task), card, true)
            .await
    }

    async fn ask_repo(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        repos: &[RepoName],
    ) -> anyhow::Result<()> {
        let card = reporter::repo_picker_card(&self.templates, task, repos)?;
        post_card(conn, task, &reporter::status_key(task), card).await
    }

    async fn tell(
        &self,
        conn: &mut AnyConnection,
        thread: &ThreadRef,
        key: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        let card = reporter::notice_card(&self.templates, text)?;
        let op = Op::Post {
            channel: thread.channel.to_string(),
            thread_ts: Some(thread.thread_ts.to_string()),
            text: card.text,
            blocks: card.blocks,
        };
        outbox::enqueue(conn, Surface::Slack, &thread.key(), key, None, &op).await?;
        Ok(())
    }

    async fn thread_context(&self, thread: &ThreadRef) -> Vec<QuotedMessage> {
        let messages = match self
            .api
            .replies(
                thread.team.as_str(),
                thread.channel.as_str(),
                thread.thread_ts.as_str(),
            )
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(thread = %thread.key(), error = %e, "cannot read the thread; the agent gets no thread context");
                return vec![];
            }
        };
        let own = self.config.bot_user_id.as_str();
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

    async fn check_member(&self, team: &TeamId, author: &Author) -> Membership {
        if author.external && !self.config.allow_external {
            return Membership::Denied("people from other organisations in a shared channel cannot start or stop Chime tasks here".into());
        }
        match self.api.member(team.as_str(), &author.user).await {
            Ok(m) if m.deleted => Membership::Denied("this account is deactivated".into()),
            Ok(m) if m.is_bot => Membership::Denied("bots cannot start or stop Chime tasks".into()),
            Ok(m) if (m.is_restricted || m.is_ultra_restricted) && !self.config.allow_guests => {
                Membership::Denied(
                    "guests cannot start or stop Chime tasks in this workspace".into(),
                )
            }
            Ok(m)
                if m.team_id.as_deref().is_some_and(|t| t != team.as_str())
                    && !self.config.allow_external =>
            {
                Membership::Denied(
                    "people from other organisations cannot start or stop Chime tasks here".into(),
                )
            }
            Ok(_) => Membership::Allowed,
            Err(e) if self.config.on_lookup_error == "deny" => {
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
}

async fn post_card(
    conn: &mut AnyConnection,
    task: &Task,
    key: &str,
    card: crate::templates::Rendered,
) -> anyhow::Result<()> {
    let (_, channel, thread_ts) = parse_key(&task.thread_key)
        .ok_or_else(|| anyhow::anyhow!("bad thread key {}", task.thread_key))?;
    let op = Op::Post {
        channel,
        thread_ts: Some(thread_ts),
        text: card.text,
        blocks: card.blocks,
    };
    outbox::enqueue(conn, Surface::Slack, &task.thread_key, key, None, &op).await?;
    Ok(())
}
