//! Wires Chime together and runs it: HTTP server, inbox and task workers, outbox senders, and a
//! graceful shutdown that stops taking work, lets tasks finish or hands them back, and exits.

use crate::backend::command::{CommandBackend, Sandbox};
use crate::backend::dry_run::DryRun;
use crate::backend::Backend;
use crate::config::{BackendConfig, Config};
use crate::context::Ctx;
use crate::db::Db;
use crate::event::Surface;
use crate::inbox::InboxWriter;
use crate::local::http::Playground;
use crate::local::sender::LocalSender;
use crate::local::LocalWorkspace;
use crate::outbox::{self, Deliver};
use crate::reporter::{ChatReporter, People, Reporter};
use crate::slack;
use crate::slack::people::SlackPeople;
use crate::templates::Templates;
use crate::worker;
use anyhow::Context;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Outbox senders per surface in one process; rows of one thread still go out in order.
const SENDERS: usize = 4;

pub struct RunningApp {
    pub addr: SocketAddr,
    /// No Slack credentials: the playground serves at `/`.
    pub local_mode: bool,
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

fn build_backends(config: &Config) -> HashMap<String, Arc<dyn Backend>> {
    let mut backends: HashMap<String, Arc<dyn Backend>> = HashMap::new();
    backends.insert("dry-run".into(), Arc::new(DryRun));
    for (name, b) in &config.backends {
        let backend: Arc<dyn Backend> = match b {
            BackendConfig::DryRun => Arc::new(DryRun),
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
                }),
            ),
        };
        backends.insert(name.clone(), backend);
    }
    backends
}

/// Starts everything on `listener`. The database must be migrated.
pub async fn start(
    config: Config,
    db: Db,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<RunningApp> {
    let addr = listener.local_addr()?;
    let config = Arc::new(config);
    let templates = Arc::new(Templates::new().context("loading templates")?);
    let shutdown = CancellationToken::new();
    let inbox_wake = Arc::new(Notify::new());
    let outbox_wake = Arc::new(Notify::new());
    let inbox = InboxWriter::spawn(db.clone(), inbox_wake.clone());

    let mut reporters: HashMap<Surface, Arc<dyn Reporter>> = HashMap::new();
    let mut senders: Vec<Arc<dyn Deliver>> = vec![];
    let mut bot_user_id =
        (!config.slack.bot_user_id.is_empty()).then(|| config.slack.bot_user_id.clone());
    // Which workspace the token belongs to: without an allowlist, the only one served.
    let mut home_team = None;
    let mut slack_api = None;
    if let Some(token) = &config.secrets.slack_bot_token {
        let api = Arc::new(slack::api::SlackApi::new(
            &config.slack.api_url,
            token,
            &config.slack.rate_limits,
            Duration::from_secs(config.slack.http_timeout_secs),
        )?);
        slack_api = Some(api.clone());
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
        let mut slack_config = config.slack.clone();
        slack_config.bot_user_id = bot_user_id.clone().unwrap_or_default();
        reporters.insert(
            Surface::Slack,
            Arc::new(ChatReporter {
                surface: Surface::Slack,
                templates: templates.clone(),
                ack_reaction: config.slack.ack_reaction.clone(),
                people: People::Slack(SlackPeople {
                    api: api.clone(),
                    config: slack_config,
                }),
            }),
        );
        senders.push(Arc::new(slack::sender::SlackSender { api }));
    }

    // Without Slack, the local workspace takes its place, through the same pipeline.
    let local = (!config.slack_enabled()).then(|| {
        let workspace = Arc::new(LocalWorkspace::new(
            db.clone(),
            config.slack.allow_guests,
            config.slack.allow_external,
        ));
        reporters.insert(
            Surface::Local,
            Arc::new(ChatReporter {
                surface: Surface::Local,
                templates: templates.clone(),
                ack_reaction: config.slack.ack_reaction.clone(),
                people: People::Local(workspace.clone()),
            }),
        );
        senders.push(Arc::new(LocalSender {
            workspace: workspace.clone(),
        }));
        Arc::new(Playground::new(
            workspace,
            inbox.clone(),
            config.secrets.playground_token.clone(),
            addr,
        ))
    });

    let ctx = Arc::new(Ctx {
        db: db.clone(),
        config: config.clone(),
        templates,
        reporters,
        backends: build_backends(&config),
        worker_id: format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple()),
        inbox_wake,
        task_wake: Arc::new(Notify::new()),
        outbox_wake: outbox_wake.clone(),
    });

    let ingress = Arc::new(slack::http::SlackIngress {
        signing_secret: config.secrets.slack_signing_secret.clone(),
        inbox,
        allowed_workspaces: config.slack.allowed_workspaces.clone(),
        bot_user_id: RwLock::new(bot_user_id),
        home_team: RwLock::new(home_team.clone()),
    });
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(db.clone())
        .merge(slack::http::routes(ingress.clone()));
    let local_mode = local.is_some();
    if let Some(playground) = local {
        router = router.merge(crate::local::http::routes(playground));
    }
    let router = router
        .layer(DefaultBodyLimit::max(config.server.max_body_bytes))
        .layer(tower_http::trace::TraceLayer::new_for_http());

    let mut tasks = JoinSet::new();
    if let (None, Some(api)) = (&home_team, slack_api) {
        tasks.spawn(ingress.clone().learn_identity(api, shutdown.clone()));
    }
    slack::socket::spawn(&mut tasks, &config, ingress, shutdown.clone());
    let limits = crate::server::Limits::from_config(&config.server);
    tasks.spawn(crate::server::serve(
        listener,
        router,
        limits,
        shutdown.clone(),
    ));
    tasks.spawn(worker::run_inbox_loop(ctx.clone(), shutdown.clone()));
    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    tasks.spawn(worker::run_task_loop(ctx.clone(), shutdown.clone(), grace));
    let jobs: Vec<Arc<dyn crate::jobs::Job>> = vec![Arc::new(crate::janitor::Janitor {
        retention_days: config.worker.retention_days,
    })];
    tasks.spawn(crate::jobs::run(
        db.clone(),
        ctx.worker_id.clone(),
        jobs,
        shutdown.clone(),
    ));
    let poll = Duration::from_millis(config.worker.poll_ms);
    let policy = outbox::SendPolicy {
        max_attempts: config.worker.max_send_attempts,
        templates: ctx.templates.clone(),
    };
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
        local_mode,
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
