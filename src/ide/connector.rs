//! The IDE as one [`Connector`]: the stream's route, its reporter (protocol messages) and its
//! sender (each person's ordered `ide_outbound` queue, which their connections stream).

use super::reporter::IdeReporter;
use super::stream::{self, IdeStream};
use crate::backend::QuotedMessage;
use crate::binding::{Binding, Place, Surface};
use crate::connector::{Connector, Connectors, Membership, Reporter};
use crate::db::Db;
use crate::event::Author;
use crate::ids::{now_ms, RepoName};
use crate::queue::inbox::InboxWriter;
use crate::queue::outbox::{Deliver, Delivery, OutboxRow};
use async_trait::async_trait;
use axum::Router;
use std::sync::Arc;
use tokio::sync::Notify;

pub struct IdeConnector {
    db: Db,
    inbox: InboxWriter,
    reporter: Arc<IdeReporter>,
    /// Woken when a message is queued for an editor, so connections send it at once.
    queued: Arc<Notify>,
    repos: Vec<(RepoName, String)>,
}

impl IdeConnector {
    pub fn new(
        config: &crate::config::Config,
        db: Db,
        inbox: InboxWriter,
        guard: Arc<crate::guard::Guard>,
    ) -> Self {
        Self {
            db,
            inbox,
            reporter: Arc::new(IdeReporter { guard }),
            queued: Arc::new(Notify::new()),
            repos: config
                .repos
                .iter()
                .filter_map(|(name, r)| Some((RepoName::parse(name)?, r.url.clone())))
                .collect(),
        }
    }
}

impl IdeConnector {
    /// The one of Chime's `[repos]` whose URL is `remote`, in either form.
    fn repo_of(&self, remote: &str) -> Option<RepoName> {
        let key = remote_key(remote);
        self.repos
            .iter()
            .find(|(_, url)| remote_key(url) == key)
            .map(|(name, _)| name.clone())
    }

    /// (remote, head, branch) of the latest hello from the person's editors.
    async fn workspace(&self, binding: &Binding) -> Option<(String, String, String)> {
        let Binding::Ide { account, .. } = binding else {
            return None;
        };
        let (surface, user) = account.split_once('.')?;
        sqlx::query_as(
            "SELECT w.remote, w.head, w.branch FROM ide_workspaces w JOIN ide_tokens t ON t.id = w.token_id \
             WHERE t.surface = $1 AND t.user_id = $2 ORDER BY w.updated_at DESC LIMIT 1",
        )
        .bind(surface)
        .bind(user)
        .fetch_optional(&self.db.pool)
        .await
        .ok()?
    }
}

/// `git@github.com:acme/api.git`, `https://github.com/acme/api` → `github.com/acme/api`, so
/// that the two forms of one remote compare equal.
fn remote_key(url: &str) -> String {
    let u = url.trim().trim_end_matches('/').trim_end_matches(".git");
    let u = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .or_else(|| u.strip_prefix("ssh://"))
        .unwrap_or(u);
    let u = u.rsplit_once('@').map_or(u, |(_, host)| host);
    u.replacen(':', "/", 1).to_ascii_lowercase()
}

struct IdeSender {
    queued: Arc<Notify>,
}

#[async_trait]
impl Deliver for IdeSender {
    fn lane(&self) -> &'static str {
        Surface::Ide.as_str()
    }

    async fn deliver(&self, db: &Db, row: &OutboxRow) -> Delivery {
        let account = match row.binding() {
            Ok(Binding::Ide { account, .. }) => account,
            Ok(other) => {
                return Delivery::Failed(format!("an IDE row for another surface: {other}"))
            }
            Err(refused) => return refused,
        };
        let message: serde_json::Value = match row.op() {
            Ok(m) => m,
            Err(refused) => return refused,
        };
        let r = sqlx::query(
            "INSERT INTO ide_outbound (account, outbox_key, payload, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (outbox_key) DO NOTHING",
        )
        .bind(&account)
        .bind(&row.idempotency_key)
        .bind(message.to_string())
        .bind(now_ms())
        .execute(&db.pool)
        .await;
        match r {
            Ok(_) => {
                self.queued.notify_waiters();
                Delivery::Sent(None)
            }
            Err(e) => Delivery::RetryIn(crate::queue::outbox::backoff(row.attempts), e.to_string()),
        }
    }
}

#[async_trait]
impl Connector for IdeConnector {
    fn surface(&self) -> Surface {
        Surface::Ide
    }

    fn routes(&self, _all: &Arc<Connectors>) -> Router {
        stream::routes(Arc::new(IdeStream {
            db: self.db.clone(),
            inbox: self.inbox.clone(),
            queued: self.queued.clone(),
        }))
    }

    fn reporter(&self) -> &dyn Reporter {
        self.reporter.as_ref()
    }

    fn sender(&self) -> Arc<dyn Deliver> {
        Arc::new(IdeSender {
            queued: self.queued.clone(),
        })
    }

    async fn check_member(&self, place: &Place, _author: &Author) -> Membership {
        // The token was checked when the editor connected, and names its owner.
        match place {
            Place::Ide { .. } => Membership::Allowed,
            _ => Membership::Denied("this is not an editor".into()),
        }
    }

    async fn thread_context(&self, _binding: &Binding) -> Vec<QuotedMessage> {
        vec![]
    }

    /// The repository of the workspace the editor said it is in (its hello), when it is one of
    /// Chime's `[repos]`.
    async fn suggest_repo(&self, binding: &Binding) -> Option<RepoName> {
        let (remote, _, _) = self.workspace(binding).await?;
        self.repo_of(&remote)
    }

    /// The commit and branch of the editor's workspace (its latest hello), when it is one of
    /// Chime's `[repos]`: a session started from the editor starts where the person is.
    async fn suggest_base(&self, binding: &Binding) -> Option<crate::backend::Base> {
        let (remote, head, branch) = self.workspace(binding).await?;
        self.repo_of(&remote)?;
        Some(crate::backend::Base {
            commit: head,
            branch,
        })
    }

    async fn is_private(&self, _binding: &Binding) -> bool {
        true
    }

    fn name_person(&self, user: &str) -> String {
        format!("the editor's owner {user}")
    }

    fn link(&self, _binding: &Binding) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn remotes_compare_in_either_form() {
        let k = super::remote_key;
        assert_eq!(k("git@github.com:acme/api.git"), "github.com/acme/api");
        assert_eq!(k("https://github.com/Acme/api/"), "github.com/acme/api");
        assert_eq!(
            k("ssh://git@github.com/acme/api.git"),
            "github.com/acme/api"
        );
        assert_ne!(
            k("https://github.com/acme/api2"),
            k("https://github.com/acme/api")
        );
    }
}
