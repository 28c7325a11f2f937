//! Slack as one [`Connector`]: the Events API and interactivity endpoints, Socket Mode, Block Kit
//! cards in threads, the Web API sender, and membership checks through `users.info`.

use super::api::SendError;
use super::api::SlackApi;
use super::blocks::BlockKit;
use super::cards::request_card;
use super::http::SlackIngress;
use super::people::SlackPeople;
use super::reporter::ThreadReporter;
use super::sender::SlackSender;
use crate::backend::QuotedMessage;
use crate::binding::{Binding, Place, Surface};
use crate::config::Config;
use crate::connector::{Connector, Connectors, Membership, Reporter};
use crate::event::Author;
use crate::ids::{ChannelId, ThreadTs};
use crate::queue::inbox::InboxWriter;
use crate::queue::outbox::Deliver;
use anyhow::Context;
use async_trait::async_trait;
use axum::Router;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub struct SlackConnector {
    config: Arc<Config>,
    api: Arc<SlackApi>,
    ingress: Arc<SlackIngress>,
    people: SlackPeople,
    reporter: Arc<ThreadReporter>,
    cards: Arc<BlockKit>,
    /// auth.test had not answered at start-up: it is asked again in the background.
    learn_identity: bool,
    /// Slack refused agent session statuses once: shared by every sender of this connector.
    no_agent_sessions: Arc<std::sync::atomic::AtomicBool>,
}

impl SlackConnector {
    /// The Slack connector, when Slack is configured (a bot token). Asks auth.test which
    /// workspace and bot user the token belongs to, waiting a few seconds at most.
    pub async fn new(
        config: &Arc<Config>,
        db: &crate::db::Db,
        inbox: InboxWriter,
        cards: Arc<BlockKit>,
        guard: Arc<crate::guard::Guard>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(token) = &config.secrets.slack_bot_token else {
            return Ok(None);
        };
        let api = Arc::new(SlackApi::new(
            &config.slack.api_url,
            token,
            &config.slack.rate_limits,
            Duration::from_secs(config.slack.http_timeout_secs),
            &crate::egress::Egress::from_config(config),
        )?);
        let mut bot_user_id =
            (!config.slack.bot_user_id.is_empty()).then(|| config.slack.bot_user_id.clone());
        // Which workspace the token belongs to: without an allowlist, the only one served.
        let mut home_team = None;
        match tokio::time::timeout(Duration::from_secs(5), api.auth_test()).await {
            Ok(Ok(a)) => {
                bot_user_id = bot_user_id.or(a.user_id);
                home_team = a.team_id;
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "auth.test failed; retrying in the background")
            }
            Err(_) => tracing::warn!("auth.test timed out; retrying in the background"),
        }
        let learn_identity = home_team.is_none();
        let home_team = Arc::new(RwLock::new(home_team));
        let ingress = Arc::new(SlackIngress {
            signing_secret: config.secrets.slack_signing_secret.clone(),
            inbox,
            allowed_workspaces: config.slack.allowed_workspaces.clone(),
            bot_user_id: RwLock::new(bot_user_id),
            home_team: home_team.clone(),
            channel_messages: config.suggestions.enabled,
            db: db.clone(),
            api: api.clone(),
            slack: config.slack.clone(),
        });
        Ok(Some(Self {
            config: config.clone(),
            people: SlackPeople {
                api: api.clone(),
                config: config.slack.clone(),
                ingress: ingress.clone(),
            },
            api,
            ingress,
            reporter: Arc::new(ThreadReporter {
                cards: cards.clone(),
                guard,
                ack_reaction: config.slack.ack_reaction.clone(),
                home_team: Some(home_team),
                stream: config.slack.progress == crate::config::ProgressMode::Stream,
            }),
            cards,
            learn_identity,
            no_agent_sessions: Default::default(),
        }))
    }
}

#[async_trait]
impl Connector for SlackConnector {
    fn surface(&self) -> Surface {
        Surface::Slack
    }

    fn routes(&self, _all: &Arc<Connectors>) -> Router {
        super::http::routes(self.ingress.clone())
    }

    fn start(&self, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        if self.learn_identity {
            tasks.spawn(
                self.ingress
                    .clone()
                    .learn_identity(self.api.clone(), shutdown.clone()),
            );
        }
        super::socket::spawn(tasks, &self.config, self.ingress.clone(), shutdown.clone());
    }

    fn reporter(&self) -> &dyn Reporter {
        self.reporter.as_ref()
    }

    fn sender(&self) -> Arc<dyn Deliver> {
        Arc::new(SlackSender {
            api: self.api.clone(),
            no_agent_sessions: self.no_agent_sessions.clone(),
            reporter: self.reporter.clone(),
        })
    }

    async fn check_member(&self, place: &Place, author: &Author) -> Membership {
        match place {
            Place::Slack { team, .. } => self.people.check_member(team, author).await,
            _ => Membership::Denied("this is not a Slack conversation".into()),
        }
    }

    async fn open_thread(
        &self,
        place: &Place,
        author: &Author,
        text: &str,
        private: bool,
        key: &str,
    ) -> anyhow::Result<(Binding, String)> {
        let Place::Slack { team, channel } = place else {
            anyhow::bail!("not a Slack channel: {place:?}");
        };
        let card = request_card(&self.cards, &author.user, text)?;
        let post = |channel: String| {
            let (card, api) = (&card, &self.api);
            async move {
                api.post_message(&channel, None, &card.text, &card.blocks, key)
                    .await?
                    .ok_or_else(|| SendError::Permanent("chat.postMessage returned no ts".into()))
                    .map(|ts| (channel, ts))
            }
        };
        let opened = if private {
            None
        } else {
            match post(channel.to_string()).await {
                Ok(done) => Some(done),
                // Not in the channel, archived, a DM between two people: their own DM instead.
                Err(SendError::Permanent(why)) => {
                    tracing::info!(%channel, reason = %why, "cannot post the request in its channel; opening a direct message");
                    None
                }
                Err(e) => return Err(e).context("posting a /chime request"),
            }
        };
        let (channel, ts) = match opened {
            Some(done) => done,
            None => {
                let dm = self
                    .api
                    .open_dm(team.as_str(), &author.user)
                    .await
                    .context("conversations.open for a /chime request")?;
                post(dm)
                    .await
                    .context("posting a /chime request in a direct message")?
            }
        };
        let binding = Binding::SlackThread {
            team: team.clone(),
            channel: ChannelId::new(&channel),
            thread: ThreadTs::new(&ts),
        };
        Ok((binding, ts))
    }

    async fn thread_context(&self, binding: &Binding) -> Vec<QuotedMessage> {
        match binding {
            Binding::SlackThread {
                team,
                channel,
                thread,
            } => self.people.thread_context(team, channel, thread).await,
            _ => vec![],
        }
    }

    async fn place_name(&self, binding: &Binding) -> Option<String> {
        let Binding::SlackThread { team, channel, .. } = binding else {
            return None;
        };
        match self.api.channel_name(team.as_str(), channel.as_str()).await {
            Ok(name) => Some(name),
            Err(e) => {
                tracing::warn!(%channel, error = %e, "conversations.info failed; judging by the channel id only");
                None
            }
        }
    }

    async fn email_of(&self, user: &str) -> Option<String> {
        let team = self.ingress.home_team.read().ok().and_then(|g| g.clone())?;
        match self.api.member(&team, &crate::ids::UserId::new(user)).await {
            Ok(m) => m.profile.and_then(|p| p.email).filter(|e| e.contains('@')),
            Err(e) => {
                tracing::warn!(error = %e, "users.info failed; cannot link by email");
                None
            }
        }
    }

    async fn utc_offset_of(&self, user: &str) -> Option<i32> {
        let team = self.ingress.home_team.read().ok().and_then(|g| g.clone())?;
        let m = self
            .api
            .member(&team, &crate::ids::UserId::new(user))
            .await
            .ok()?;
        m.tz_offset
            .filter(|s| s.abs() <= 14 * 3600)
            .map(|s| (s / 60) as i32)
    }

    async fn user_by_email(&self, email: &str) -> Option<String> {
        let team = self.ingress.home_team.read().ok().and_then(|g| g.clone())?;
        match self.api.user_by_email(&team, email).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "users.lookupByEmail failed; cannot link by email");
                None
            }
        }
    }

    /// Direct messages and group DMs by their id; channels by `conversations.info` (a channel
    /// Chime cannot ask about counts as private).
    async fn is_private(&self, binding: &Binding) -> bool {
        let Binding::SlackThread { team, channel, .. } = binding else {
            return true;
        };
        if channel.as_str().starts_with(['D', 'G']) {
            return true;
        }
        match self.api.channel_info(team.as_str(), channel.as_str()).await {
            Ok((_, private)) => private,
            Err(e) => {
                tracing::warn!(%channel, error = %e, "conversations.info failed; treating the channel as private");
                true
            }
        }
    }

    fn name_person(&self, user: &str) -> String {
        format!("<@{user}>")
    }

    fn is_admin(&self, user: &str) -> bool {
        self.config.slack.admins.iter().any(|a| a == user)
    }

    fn admins(&self) -> Vec<crate::ids::UserId> {
        self.config
            .slack
            .admins
            .iter()
            .map(crate::ids::UserId::new)
            .collect()
    }

    fn link(&self, binding: &Binding) -> Option<String> {
        match binding {
            Binding::SlackThread {
                team,
                channel,
                thread,
            } => Some(format!(
                "https://slack.com/app_redirect?team={team}&channel={channel}&message_ts={thread}"
            )),
            _ => None,
        }
    }
}
