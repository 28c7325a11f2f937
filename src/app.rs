//! Wires Chime together and runs it: HTTP server, inbox and task workers, outbox senders, and a
//! graceful shutdown that stops taking work, lets tasks finish or hands them back, and exits.

use crate::backend::command::{CommandBackend, Sandbox};
use crate::backend::cursor::CursorBackend;
use crate::backend::devin::DevinBackend;
use crate::backend::dry_run::DryRun;
use crate::backend::openai::OpenaiBackend;
use crate::backend::webhook::WebhookBackend;
use crate::backend::Backend;
use crate::config::{BackendConfig, Config};
use crate::connector::Connectors;
use crate::context::Ctx;
use crate::db::Db;
use crate::guard::Guard;
use crate::linear::LinearConnector;
use crate::local::LocalConnector;
use crate::policy::Policy;
use crate::queue::inbox::InboxWriter;
use crate::queue::outbox;
use crate::slack::blocks::BlockKit;
use crate::slack::SlackConnector;
use crate::templates::Templates;
use crate::worker;
use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Outbox senders per connector in one process; rows of one thread still go out in order.
const SENDERS: usize = 4;

pub struct RunningApp {
    pub addr: SocketAddr,
    pub db: Db,
    pub shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl RunningApp {
    /// Stops taking work, waits for the workers to wind down, and returns.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }

    /// Runs until the shutdown token fires (on a signal, in `serve`).
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

fn build_backends(config: &Config) -> anyhow::Result<HashMap<String, Arc<dyn Backend>>> {
    let mut backends: HashMap<String, Arc<dyn Backend>> = HashMap::new();
    backends.insert("dry-run".into(), Arc::new(DryRun));
    for (name, b) in &config.backends {
        let backend: Arc<dyn Backend> = match b {
            BackendConfig::DryRun => Arc::new(DryRun),
            BackendConfig::Cursor {
                model,
                auto_create_pr,
                timeout_secs,
                poll_ms,
            } => Arc::new(CursorBackend::new(
                config,
                model.clone(),
                *auto_create_pr,
                *timeout_secs,
                *poll_ms,
            )?),
            BackendConfig::Webhook {
                url,
                timeout_secs,
                poll_ms,
            } => Arc::new(WebhookBackend::new(config, url, *timeout_secs, *poll_ms)?),
            BackendConfig::Devin {
                timeout_secs,
                poll_ms,
                tags,
            } => Arc::new(DevinBackend::new(
                config,
                *timeout_secs,
                *poll_ms,
                tags.clone(),
            )?),
            BackendConfig::Openai {
                model,
                api,
                timeout_secs,
                instructions,
                max_output_tokens,
            } => Arc::new(OpenaiBackend::new(
                name,
                config,
                model,
                *api,
                *timeout_secs,
                instructions.clone(),
                *max_output_tokens,
            )?),
            BackendConfig::Command {
                command,
                timeout_secs,
                env,
                sandbox,
                sandbox_read_only,
            } => Arc::new(
                CommandBackend::new(
                    name.clone(),
                    command.clone(),
                    Duration::from_secs(*timeout_secs),
                    env.clone(),
                    config.agent.workdir.clone(),
                    config.repos.clone(),
                )
                .with_sandbox(Sandbox {
                    mode: *sandbox,
                    read_only: sandbox_read_only.clone(),
                })
                .with_egress(crate::egress::Egress::from_config(config)),
            ),
        };
        backends.insert(name.clone(), backend);
    }
    Ok(backends)
}

/// The connectors this config enables: Slack when it has credentials, the playground when Slack
/// has none or when asked for beside it.
async fn build_connectors(
    config: &Arc<Config>,
    db: &Db,
    inbox: &InboxWriter,
    guard: &Arc<Guard>,
    addr: SocketAddr,
) -> anyhow::Result<Connectors> {
    let cards = Arc::new(BlockKit::new().context("loading Block Kit templates")?);
    let mut connectors = Connectors::default();
    if let Some(slack) =
        SlackConnector::new(config, db, inbox.clone(), cards.clone(), guard.clone()).await?
    {
        connectors.add(Arc::new(slack));
    }
    if let Some(linear) = LinearConnector::new(config, db.clone(), inbox.clone(), guard.clone())? {
        connectors.add(Arc::new(linear));
    }
    if let Some(local) = LocalConnector::new(
        config,
        db.clone(),
        inbox.clone(),
        cards,
        guard.clone(),
        addr,
    ) {
        connectors.add(Arc::new(local));
    }
    // Always on: an editor needs a token minted with `chime ide-token create` to connect.
    connectors.add(Arc::new(crate::ide::IdeConnector::new(
        config,
        db.clone(),
        inbox.clone(),
        guard.clone(),
    )));
    Ok(connectors)
}

/// Starts everything on `listener`. The database must be migrated.
pub async fn start(
    config: Config,
    db: Db,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<RunningApp> {
    let addr = listener.local_addr()?;
    let config = Arc::new(config);
    let shutdown = CancellationToken::new();
    let inbox_wake = Arc::new(Notify::new());
    let outbox_wake = Arc::new(Notify::new());
    let inbox = InboxWriter::spawn(db.clone(), inbox_wake.clone());
    let guard = Arc::new(Guard::from_config(&config).context("setting up the output guard")?);
    let connectors = Arc::new(build_connectors(&config, &db, &inbox, &guard, addr).await?);
    let policy = match (&config.suggestions.enabled, &config.suggestions.policy) {
        (false, _) => None,
        (true, Some(path)) => Some(Arc::new(Policy::load(path)?)),
        (true, None) => Some(Arc::new(Policy::default_policy())),
    };

    let ctx = Arc::new(Ctx {
        db: db.clone(),
        config: config.clone(),
        templates: Arc::new(Templates::new().context("loading templates")?),
        guard: guard.clone(),
        connectors: connectors.clone(),
        backends: build_backends(&config).context("setting up the backends")?,
        policy: policy.clone(),
        worker_id: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
        inbox_wake,
        task_wake: Arc::new(Notify::new()),
        outbox_wake: outbox_wake.clone(),
    });

    let digest_targets = config
        .digest
        .targets
        .iter()
        .map(|t| crate::digest::schedule::Target::from_config(t, &config.digest.time_zone))
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| anyhow::anyhow!(e))?;

    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(metrics).with_state((db.clone(), config.secrets.metrics_token.clone())),
        )
        .route(
            "/link/{code}",
            get(crate::identity::link_page).with_state(db.clone()),
        )
        .route("/readyz", get(readyz))
        .with_state(db.clone());
    for c in connectors.iter() {
        router = router.merge(c.routes(&connectors));
    }
    if !connectors.is_running(crate::binding::Surface::Slack) {
        router = router.merge(crate::slack::http::unconfigured_routes());
    }
    // Always routed, like GitHub's below: without its secret it answers 401.
    router = router.merge(crate::backend::webhook::callback::routes(Arc::new(
        crate::backend::webhook::callback::CallbackIngress {
            secret: config.secrets.webhook_backend_secret.clone(),
            inbox: inbox.clone(),
        },
    )));
    router = router.merge(crate::backend::cursor_webhook::routes(Arc::new(
        crate::backend::cursor_webhook::CursorWebhook {
            secret: config.secrets.cursor_webhook_secret.clone(),
            inbox: inbox.clone(),
        },
    )));
    // Always routed: without GITHUB_WEBHOOK_SECRET it answers 401, never an unverified 200.
    router = router.merge(crate::github::routes(Arc::new(
        crate::github::GithubIngress {
            secret: config.secrets.github_webhook_secret.clone(),
            inbox: inbox.clone(),
        },
    )));
    let router = router
        .layer(DefaultBodyLimit::max(config.server.max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http());

    let mut tasks = JoinSet::new();
    for c in connectors.iter() {
        c.start(&mut tasks, &shutdown);
    }
    let limits = crate::server::Limits::from_config(&config.server);
    tasks.spawn(crate::server::serve(
        listener,
        router,
        limits,
        shutdown.clone(),
    ));
    tasks.spawn(worker::run_inbox_loop(ctx.clone(), shutdown.clone()));
    let has_command = config
        .backends
        .values()
        .any(|b| matches!(b, BackendConfig::Command { .. }));
    if has_command && config.agent.cleanup_idle_days > 0 {
        tasks.spawn(crate::backend::command::cleanup::run(
            db.clone(),
            config.agent.workdir.clone(),
            Duration::from_secs(config.agent.cleanup_idle_days * 86_400),
            shutdown.clone(),
        ));
    }
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    tasks.spawn(worker::run_task_loop(ctx.clone(), shutdown.clone(), grace));
    if let Some(policy) = policy {
        tasks.spawn(crate::policy::live::run_due(
            ctx.clone(),
            policy,
            shutdown.clone(),
        ));
    }
    let jobs: Vec<Arc<dyn crate::jobs::Job>> = vec![Arc::new(crate::janitor::Janitor {
        retention_days: config.worker.retention_days,
    })];
    tasks.spawn(crate::jobs::run(
        db.clone(),
        ctx.worker_id.clone(),
        jobs,
        shutdown.clone(),
    ));
    if !digest_targets.is_empty() {
        tasks.spawn(crate::digest::schedule::run(
            db.clone(),
            connectors.clone(),
            digest_targets,
            ctx.worker_id.clone(),
            (
                Duration::from_secs(config.digest.tick_secs.max(1)),
                Duration::from_secs(config.digest.late_after_secs),
            ),
            outbox_wake.clone(),
            shutdown.clone(),
        ));
    }
    let poll = Duration::from_millis(config.worker.poll_ms);
    let policy = outbox::SendPolicy {
        max_attempts: config.worker.max_send_attempts,
    };
    let mut senders: Vec<Arc<dyn outbox::Deliver>> =
        connectors.iter().map(|c| c.sender()).collect();
    if has_command {
        // The code host's lane: pushes command runs' branches and opens their pull requests.
        senders.push(Arc::new(crate::github::publish::Publisher::new(
            ctx.clone(),
        )?));
    }
    for sender in senders {
        for _ in 0..SENDERS {
            tasks.spawn(outbox::run_sender(
                db.clone(),
                sender.clone(),
                outbox_wake.clone(),
                shutdown.clone(),
                poll,
                policy.clone(),
            ));
        }
    }
    Ok(RunningApp {
        addr,
        db,
        shutdown,
        tasks,
    })
}

async fn readyz(State(db): State<Db>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(Duration::from_secs(2), db.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable"),
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "chime".into())
}

/// `GET /metrics` in Prometheus' text format (`metrics.rs`); with `CHIME_METRICS_TOKEN` set, only
/// for a scraper that sends it as a bearer token.
async fn metrics(
    State((db, token)): State<(Db, Option<secrecy::SecretString>)>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use secrecy::ExposeSecret;
    use subtle::ConstantTimeEq;
    if let Some(token) = &token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        let ok: bool = given
            .as_bytes()
            .ct_eq(token.expose_secret().as_bytes())
            .into();
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need the bearer token set in CHIME_METRICS_TOKEN",
            )
                .into_response();
        }
    }
    match crate::metrics::render(&db).await {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not read metrics from the store");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "metrics unavailable: the store did not answer",
            )
                .into_response()
        }
    }
}
