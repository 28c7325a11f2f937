//! The playground as one [`Connector`]: its page and API, its message store as the "platform" its
//! sender writes to, and its made-up people with their roles.

use super::http::{self, Playground};
use super::sender::LocalSender;
use super::{guard, LocalWorkspace};
use crate::backend::QuotedMessage;
use crate::binding::{Binding, Surface};
use crate::config::Config;
use crate::connector::{Connector, Connectors, Membership, Reporter};
use crate::db::Db;
use crate::event::Author;
use crate::queue::inbox::InboxWriter;
use crate::queue::outbox::Deliver;
use crate::slack::blocks::BlockKit;
use crate::slack::reporter::ThreadReporter;
use async_trait::async_trait;
use axum::Router;
use secrecy::SecretString;
use std::net::SocketAddr;
use std::sync::Arc;

pub struct LocalConnector {
    workspace: Arc<LocalWorkspace>,
    reporter: Arc<ThreadReporter>,
    inbox: InboxWriter,
    access_token: Option<SecretString>,
    addr: SocketAddr,
    /// Store channel messages for the relevance policy (`suggestions.enabled`).
    channel_messages: bool,
}

impl LocalConnector {
    /// The playground, when it is enabled (no Slack, or `--playground`).
    pub fn new(
        config: &Config,
        db: Db,
        inbox: InboxWriter,
        cards: Arc<BlockKit>,
        guard: Arc<crate::guard::Guard>,
        addr: SocketAddr,
    ) -> Option<Self> {
        config.playground_enabled().then(|| Self {
            workspace: Arc::new(LocalWorkspace::new(
                db,
                config.playground.allow_guests,
                config.playground.allow_external,
            )),
            reporter: Arc::new(ThreadReporter {
                cards,
                guard,
                ack_reaction: config.playground.ack_reaction.clone(),
                home_team: None,
                stream: config.slack.progress == crate::config::ProgressMode::Stream,
            }),
            inbox,
            access_token: config.secrets.playground_token.clone(),
            addr,
            channel_messages: config.suggestions.enabled,
        })
    }
}

#[async_trait]
impl Connector for LocalConnector {
    fn surface(&self) -> Surface {
        Surface::Local
    }

    fn routes(&self, all: &Arc<Connectors>) -> Router {
        http::routes(Arc::new(Playground {
            workspace: self.workspace.clone(),
            inbox: self.inbox.clone(),
            access_token: self.access_token.clone(),
            addr: self.addr,
            page_token: guard::new_page_token(),
            connectors: all.clone(),
            channel_messages: self.channel_messages,
        }))
    }

    fn reporter(&self) -> &dyn Reporter {
        self.reporter.as_ref()
    }

    fn sender(&self) -> Arc<dyn Deliver> {
        Arc::new(LocalSender {
            workspace: self.workspace.clone(),
            reporter: self.reporter.clone(),
        })
    }

    async fn check_member(&self, _place: &crate::binding::Place, author: &Author) -> Membership {
        self.workspace.check_member(author)
    }

    async fn thread_context(&self, binding: &Binding) -> Vec<QuotedMessage> {
        match binding {
            Binding::LocalThread { channel, thread } => {
                self.workspace.thread_context(channel, thread).await
            }
            _ => vec![],
        }
    }

    /// The playground is a local sandbox: nothing said there crosses to a real surface bound to
    /// the same session (what is said there still reaches the playground).
    async fn is_private(&self, _binding: &Binding) -> bool {
        true
    }

    fn name_person(&self, user: &str) -> String {
        format!("<@{user}>")
    }

    fn link(&self, binding: &Binding) -> Option<String> {
        match binding {
            Binding::LocalThread { channel, thread } => {
                Some(format!("/#/thread/{channel}/{thread}"))
            }
            _ => None,
        }
    }
}
