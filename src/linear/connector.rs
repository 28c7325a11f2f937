//! Linear as one [`Connector`]: the webhook and OAuth endpoints, agent activities as the reporter,
//! the GraphQL sender, the issue as a turn's context, and the heartbeat that keeps a long run's
//! session from going stale.

use super::api::LinearApi;
use super::http::LinearIngress;
use super::reporter::LinearReporter;
use super::sender::LinearSender;
use super::{graphql, store};
use crate::backend::QuotedMessage;
use crate::binding::{Binding, Place, Surface};
use crate::config::Config;
use crate::connector::{Connector, Connectors, Membership, Reporter};
use crate::db::Db;
use crate::event::Author;
use crate::ids::{now_ms, RepoName};
use crate::queue::inbox::InboxWriter;
use crate::queue::outbox::Deliver;
use async_trait::async_trait;
use axum::Router;
use serde_json::{json, Value};
use sqlx::Row;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How many of an issue's comments go into a turn's context.
const COMMENTS: usize = 50;

pub struct LinearConnector {
    config: Arc<Config>,
    db: Db,
    api: Arc<LinearApi>,
    ingress: Arc<LinearIngress>,
    reporter: Arc<LinearReporter>,
}

impl LinearConnector {
    /// The Linear connector, when its webhook secret is set.
    pub fn new(
        config: &Arc<Config>,
        db: Db,
        inbox: InboxWriter,
        guard: Arc<crate::guard::Guard>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(secret) = &config.secrets.linear_webhook_secret else {
            return Ok(None);
        };
        let api = Arc::new(LinearApi::new(
            config.endpoints.linear(),
            Duration::from_secs(config.linear.http_timeout_secs),
            &crate::egress::Egress::from_config(config),
        )?);
        let ingress = Arc::new(LinearIngress {
            secret: secret.clone(),
            inbox,
            db: db.clone(),
            api: api.clone(),
            client_id: config.linear.client_id.clone(),
            client_secret: config.secrets.linear_client_secret.clone(),
            redirect_url: config.linear.redirect_url.clone(),
            fallback_token: config.secrets.linear_access_token.clone(),
            mention_name: config.linear.mention_name.clone(),
            app_users: Default::default(),
        });
        Ok(Some(Self {
            config: config.clone(),
            db,
            api,
            ingress,
            reporter: Arc::new(LinearReporter::new(guard)?),
        }))
    }

    async fn issue_context(&self, binding: &Binding) -> Option<(store::ThreadInfo, Value)> {
        let mut conn = self.db.pool.acquire().await.ok()?;
        let thread = store::thread(&mut conn, binding).await.ok()??;
        drop(conn);
        let token = store::token(
            &self.db,
            &thread.org,
            self.config.secrets.linear_access_token.as_ref(),
        )
        .await
        .ok()??;
        match self
            .api
            .call(
                &token,
                graphql::ISSUE_CONTEXT,
                json!({ "id": thread.issue_id }),
            )
            .await
        {
            Ok(data) => Some((thread, data["issue"].clone())),
            Err(e) => {
                tracing::warn!(%binding, error = %e, "could not read the Linear issue");
                Some((thread, Value::Null))
            }
        }
    }

    /// Queues a `thought` for every running Linear turn that has said nothing for
    /// `linear.heartbeat_secs`, so Linear does not mark its session stale.
    async fn heartbeats(&self) -> anyhow::Result<()> {
        let quiet_ms = (self.config.linear.heartbeat_secs as i64) * 1000;
        let now = now_ms();
        let rows = sqlx::query(
            "SELECT t.id, t.started_at, (SELECT MAX(o.created_at) FROM outbox o WHERE o.target = t.binding) AS said \
             FROM tasks t WHERE t.state = 'running' AND t.binding LIKE 'linear:%'",
        )
        .fetch_all(&self.db.pool)
        .await?;
        for r in rows {
            let said: Option<i64> = r.get("said");
            let started: Option<i64> = r.get("started_at");
            let last = said.or(started).unwrap_or(now);
            if now - last < quiet_ms {
                continue;
            }
            let id = crate::ids::TaskId(r.get("id"));
            let mut tx = self.db.begin().await?;
            if let Some(task) = crate::session::get_task(&mut tx, &id).await? {
                let minutes = (now - started.unwrap_or(now)) / 60_000;
                // One per quiet period, whichever replica gets there first.
                let key = format!("task:{id}:heartbeat:{}", now / quiet_ms.max(1));
                self.reporter
                    .heartbeat(&mut tx, &task, minutes, &key)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Connector for LinearConnector {
    fn surface(&self) -> Surface {
        Surface::Linear
    }

    fn routes(&self, _all: &Arc<Connectors>) -> Router {
        super::http::routes(self.ingress.clone())
    }

    fn start(&self, tasks: &mut JoinSet<()>, shutdown: &CancellationToken) {
        let me = Self {
            config: self.config.clone(),
            db: self.db.clone(),
            api: self.api.clone(),
            ingress: self.ingress.clone(),
            reporter: self.reporter.clone(),
        };
        let shutdown = shutdown.clone();
        let every = Duration::from_secs((self.config.linear.heartbeat_secs / 4).clamp(1, 60));
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.cancelled() => return,
                }
                if let Err(e) = me.heartbeats().await {
                    tracing::warn!(error = %format!("{e:#}"), "Linear heartbeats failed; trying again");
                }
            }
        });
    }

    fn reporter(&self) -> &dyn Reporter {
        self.reporter.as_ref()
    }

    fn sender(&self) -> Arc<dyn Deliver> {
        Arc::new(LinearSender {
            api: self.api.clone(),
            fallback_token: self.config.secrets.linear_access_token.clone(),
        })
    }

    /// Linear sends only what its own members did in a workspace that installed Chime.
    async fn check_member(&self, place: &Place, _author: &Author) -> Membership {
        match place {
            Place::Linear { .. } => Membership::Allowed,
            _ => Membership::Denied("this is not a Linear workspace".into()),
        }
    }

    /// The issue as the agent reads it: its title and description, its comments (attributed),
    /// and Linear's own prompt context, all quoted as untrusted data.
    async fn thread_context(&self, binding: &Binding) -> Vec<QuotedMessage> {
        let Some((thread, issue)) = self.issue_context(binding).await else {
            return vec![];
        };
        let quoted = |author: &str, text: String| QuotedMessage {
            author: author.to_string(),
            is_bot: false,
            text,
        };
        let mut out = Vec::new();
        let description = issue["description"].as_str().unwrap_or_default();
        out.push(quoted(
            "the issue",
            format!(
                "{}: {}\n\n{description}",
                thread.identifier,
                issue["title"].as_str().unwrap_or(&thread.title)
            )
            .trim()
            .to_string(),
        ));
        let comments = issue["comments"]["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for c in comments.iter().take(COMMENTS) {
            let who = c["user"]["name"].as_str().unwrap_or("someone");
            if let Some(body) = c["body"].as_str() {
                out.push(quoted(&format!("{who} (comment)"), body.to_string()));
            }
        }
        if let Some(context) = thread.prompt_context {
            out.push(quoted("Linear's prompt context", context));
        }
        out
    }

    async fn suggest_repo(&self, binding: &Binding) -> Option<RepoName> {
        let mut conn = self.db.pool.acquire().await.ok()?;
        let thread = store::thread(&mut conn, binding).await.ok()??;
        drop(conn);
        if let Some(r) = thread.repo_hint {
            return Some(r);
        }
        let routes = &self.config.linear.routes;
        if routes.is_empty() {
            return None;
        }
        // Project and labels are not in the webhook: asked only when a rule needs them.
        let needs_issue = routes
            .iter()
            .any(|r| r.project.is_some() || r.label.is_some());
        let issue = if needs_issue {
            self.issue_context(binding)
                .await
                .map(|(_, i)| i)
                .unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        let project = issue["project"]["name"].as_str();
        let labels: Vec<&str> = issue["labels"]["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["name"].as_str())
            .collect();
        routes
            .iter()
            .find(|r| {
                r.team
                    .as_deref()
                    .is_none_or(|t| t.eq_ignore_ascii_case(&thread.team_key))
                    && r.project.as_deref().is_none_or(|p| project == Some(p))
                    && r.label
                        .as_deref()
                        .is_none_or(|l| labels.iter().any(|x| x.eq_ignore_ascii_case(l)))
            })
            .and_then(|r| RepoName::parse(&r.repo))
    }

    async fn team(&self, binding: &Binding) -> Option<String> {
        let mut conn = self.db.pool.acquire().await.ok()?;
        let thread = store::thread(&mut conn, binding).await.ok()??;
        Some(thread.team_key)
    }

    async fn work_items(&self, binding: &Binding) -> Vec<String> {
        let Ok(mut conn) = self.db.pool.acquire().await else {
            return vec![];
        };
        match store::thread(&mut conn, binding).await {
            Ok(Some(t)) => vec![crate::session::links::issue_ref(&t.identifier)],
            _ => vec![],
        }
    }

    async fn email_of(&self, user: &str) -> Option<String> {
        let mut conn = self.db.pool.acquire().await.ok()?;
        if let Ok(Some((_, Some(email)))) = store::person(&mut conn, user).await {
            return Some(email);
        }
        drop(conn);
        // Not in a webhook yet (an assignment's actor carries no email): ask Linear.
        let token = self.config.secrets.linear_access_token.as_ref()?;
        match self
            .api
            .call(token, graphql::USER_EMAIL, json!({ "id": user }))
            .await
        {
            Ok(v) => v["user"]["email"]
                .as_str()
                .filter(|e| e.contains('@'))
                .map(str::to_ascii_lowercase),
            Err(e) => {
                tracing::warn!(error = %e, "could not ask Linear for a user's email");
                None
            }
        }
    }

    async fn user_by_email(&self, email: &str) -> Option<String> {
        let token = self.config.secrets.linear_access_token.as_ref()?;
        match self
            .api
            .call(token, graphql::USERS_BY_EMAIL, json!({ "email": email }))
            .await
        {
            Ok(v) => v["users"]["nodes"][0]["id"].as_str().map(str::to_string),
            Err(e) => {
                tracing::warn!(error = %e, "could not ask Linear for a user by email");
                None
            }
        }
    }

    fn name_person(&self, user: &str) -> String {
        format!("Linear user {user}")
    }

    fn is_admin(&self, user: &str) -> bool {
        self.config.linear.admins.iter().any(|a| a == user)
    }

    fn link(&self, _binding: &Binding) -> Option<String> {
        None
    }
}
