//! The `chime` command: `serve`, `migrate`, `check-config`, `inspect failed`.

use anyhow::Context;
use chime::config::{redact_url, Config};
use chime::db::Db;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "chime",
    version,
    about = "A self-hosted team agent that chimes in only when it is wanted"
)]
struct Cli {
    /// The TOML configuration file (see chime.example.toml). Env: CHIME_CONFIG.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run Chime: HTTP endpoints, workers and senders, until SIGTERM or SIGINT.
    /// Without Slack credentials it runs in local mode, with the playground at `/`.
    Serve {
        /// Serve the playground at `/` beside Slack too (loopback only, like local mode).
        #[arg(long)]
        playground: bool,
        /// Let the local playground listen beyond loopback (also needs CHIME_PLAYGROUND_TOKEN).
        #[arg(long)]
        allow_remote_playground: bool,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration and the environment, and say exactly what is missing or wrong.
    CheckConfig,
    /// Read what the database holds, for an operator.
    Inspect {
        #[command(subcommand)]
        what: Inspect,
    },
    /// Check, replay and evaluate relevance policies (`policies/*.toml`).
    Policy {
        #[command(subcommand)]
        what: PolicyCommand,
    },
    /// The weekly digest.
    Digest {
        #[command(subcommand)]
        what: DigestCommand,
    },
    /// What was spent and run in a month (UTC): turns, tokens, wall time and cost.
    Usage {
        /// The month, like 2026-11; this month when left out.
        #[arg(long, value_parser = parse_month)]
        month: Option<String>,
        /// How to group it.
        #[arg(long, default_value = "backend")]
        by: chime::spend::By,
    },
    /// Per-person tokens for editors (the IDE stream, `GET /ide/stream`).
    IdeToken {
        #[command(subcommand)]
        what: IdeTokenCommand,
    },
}

#[derive(Subcommand)]
enum IdeTokenCommand {
    /// Mint a token for one person; it is printed once and stored only as a hash.
    Create {
        /// The person's Slack user id.
        #[arg(
            long,
            conflicts_with = "local_user",
            required_unless_present = "local_user"
        )]
        slack_user: Option<String>,
        /// A playground person's name.
        #[arg(long)]
        local_user: Option<String>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token at once: its open connections are closed.
    Revoke { id: i64 },
}

#[derive(Subcommand)]
enum DigestCommand {
    /// Print a week's digest from the database, without posting it.
    Preview {
        /// The ISO week, like 2026-W47 (default: this week, in UTC).
        #[arg(long)]
        week: Option<chime::digest::Week>,
        /// Plain text, or the Slack Block Kit message.
        #[arg(long, default_value = "text", value_parser = ["text", "blocks"])]
        format: String,
    },
    /// Post a week's digest now: a running Chime on the same database posts it (the default
    /// week is the last complete one, as the schedule posts on Mondays).
    Post {
        /// The ISO week, like 2026-W47 (default: last week, in UTC).
        #[arg(long)]
        week: Option<chime::digest::Week>,
        /// Where: slack:TEAM/CHANNEL or local:CHANNEL, repeatable (default: every
        /// [[digest.targets]] place).
        #[arg(long)]
        to: Vec<String>,
        /// How long to wait for it to be sent, in seconds.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate policy files strictly; errors name the file, line and column.
    /// Without FILES, checks `policies/*.toml`.
    Check { files: Vec<PathBuf> },
    /// Decide every message of a file (JSONL) or a Slack export directory, causally, and write
    /// one decision per input message, in input order.
    Replay {
        #[arg(long)]
        input: PathBuf,
        /// The policy to use (default: the shipped `policies/default.toml`).
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Judge relevance alone: no budgets, cooldowns, quiet hours or audience rules.
        #[arg(long)]
        ignore_budgets: bool,
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
    },
    /// Offered, accepted, dismissed and muted suggestions per action kind and channel, and how
    /// far feedback has moved each threshold (reads the database).
    Stats,
    /// Precision, recall and F1 on labeled JSONL (`"label": "suggest" | "quiet"`), with and
    /// without budgets, and a confusion table by channel.
    Eval {
        #[arg(long)]
        input: PathBuf,
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum Inspect {
    /// List what was parked as failed (inbox events, outbox rows, tasks) and why, newest first.
    Failed {
        /// At most this many rows of each kind.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

fn main() -> ExitCode {
    let non_dumpable = make_non_dumpable();
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,hyper=warn,slack_morphism=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = non_dumpable {
        tracing::warn!("cannot mark the process non-dumpable (prctl PR_SET_DUMPABLE): {e}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chime: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve {
                playground,
                allow_remote_playground,
            } => serve(cli.config, playground, allow_remote_playground).await,
            Command::Migrate => migrate(cli.config).await,
            Command::CheckConfig => check_config(cli.config),
            Command::Inspect {
                what: Inspect::Failed { limit },
            } => inspect_failed(cli.config, limit).await,
            Command::Policy { what } => policy(cli.config, what).await,
            Command::Digest {
                what: DigestCommand::Preview { week, format },
            } => digest_preview(cli.config, week, &format).await,
            Command::Digest {
                what: DigestCommand::Post { week, to, wait },
            } => digest_post(cli.config, week, &to, wait).await,
            Command::IdeToken { what } => ide_token(cli.config, what).await,
            Command::Usage { month, by } => usage(cli.config, month, by).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("chime: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Keeps other processes of the same user (an unsandboxed agent, say) from ptrace-attaching to
/// Chime or reading `/proc/<chime>/environ` and `/proc/<chime>/mem`, where its secrets are. Done
/// first thing, before any secret is read.
fn make_non_dumpable() -> std::io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE takes a plain integer and touches no memory of ours.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn load(path: Option<PathBuf>) -> anyhow::Result<Config> {
    let config = Config::load(path.as_deref())?;
    let report = config.check();
    for w in &report.warnings {
        tracing::warn!("{w}");
    }
    for o in &report.outside {
        tracing::warn!("{o}: every call to it will be refused");
    }
    if !report.errors.is_empty() {
        anyhow::bail!(
            "the configuration has errors (run `chime check-config`):\n  - {}",
            report.errors.join("\n  - ")
        );
    }
    Ok(config)
}

fn check_config(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            println!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let report = config.check();
    for e in &report.endpoints {
        println!("endpoint: {e}");
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    for e in report.errors.iter().chain(&report.outside) {
        println!("error: {e}");
    }
    if report.errors.is_empty() && report.outside.is_empty() {
        println!(
            "ok: listen {}, database {}, Slack {}, default backend {}",
            config.server.listen,
            redact_url(&config.database.url),
            if config.slack_enabled() { "on" } else { "off" },
            config.agent.default_backend
        );
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(2))
    }
}

async fn migrate(path: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let db = Db::connect(&config.database).await?;
    db.migrate().await?;
    println!("migrations applied to {}", redact_url(&config.database.url));
    Ok(ExitCode::SUCCESS)
}

async fn inspect_failed(path: Option<PathBuf>, limit: i64) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let db = Db::connect(&config.database).await?;
    // Read-only: an unmigrated database is an error to report, not something to change here.
    print!("{}", chime::cli::inspect::failed(&db, limit.max(1)).await?);
    Ok(ExitCode::SUCCESS)
}

/// `--month`: a real month, `YYYY-MM`.
fn parse_month(s: &str) -> Result<String, String> {
    let ok =
        s.len() == 7 && chrono::NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").is_ok();
    ok.then(|| s.to_string())
        .ok_or_else(|| format!("{s:?} is not a month like 2026-11"))
}

async fn usage(
    path: Option<PathBuf>,
    month: Option<String>,
    by: chime::spend::By,
) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let db = Db::connect(&config.database).await?;
    // A database no Chime has served yet has no usage table; applying the migrations (as
    // `chime serve` does) makes that an empty month rather than an error.
    db.migrate().await?;
    let month = month.unwrap_or_else(|| chime::spend::month_of(chime::ids::now_ms()));
    let mut conn = db.pool.acquire().await?;
    let lines = chime::spend::report(&mut conn, &month, by).await?;
    print!("{}", chime::spend::render(&month, by, &lines));
    Ok(ExitCode::SUCCESS)
}

async fn digest_preview(
    path: Option<PathBuf>,
    week: Option<chime::digest::Week>,
    format: &str,
) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let db = Db::connect(&config.database).await?;
    let text = chime::cli::digest::preview(&db, week).await?;
    if format == "blocks" {
        let message = chime::slack::blocks::text_message(&text);
        println!("{}", serde_json::to_string_pretty(&message)?);
    } else {
        print!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn digest_post(
    path: Option<PathBuf>,
    week: Option<chime::digest::Week>,
    to: &[String],
    wait: u64,
) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let places = chime::cli::digest::places(&config, to)?;
    let db = Db::connect(&config.database).await?;
    let lines =
        chime::cli::digest::post(&db, &places, week, std::time::Duration::from_secs(wait)).await?;
    for l in &lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn ide_token(path: Option<PathBuf>, what: IdeTokenCommand) -> anyhow::Result<ExitCode> {
    use chime::ide_tokens as tokens;
    let config = load(path)?;
    let db = Db::connect(&config.database).await?;
    match what {
        IdeTokenCommand::Create {
            slack_user,
            local_user,
        } => {
            let (surface, user) = match (slack_user, local_user) {
                (Some(u), None) if chime::slack::events::is_id(&u) => ("slack", u),
                (None, Some(u))
                    if !u.is_empty()
                        && u.len() <= 64
                        && u.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
                {
                    ("local", u)
                }
                _ => anyhow::bail!(
                    "give --slack-user with a Slack user id (like U0123ABC) or --local-user with a name (letters, digits, _)"
                ),
            };
            let (id, token) = tokens::create(&db, surface, &user).await?;
            println!(
                "IDE token {id} for {surface} user {user} (shown once; Chime keeps only its hash):"
            );
            println!("{token}");
        }
        IdeTokenCommand::List => {
            for (id, surface, user, created, revoked) in tokens::list(&db).await? {
                let state = match revoked {
                    Some(t) => format!("revoked {}", chime::settings::utc_time(t)),
                    None => "active".to_string(),
                };
                println!(
                    "{id}\t{surface}:{user}\tcreated {}\t{state}",
                    chime::settings::utc_time(created)
                );
            }
        }
        IdeTokenCommand::Revoke { id } => {
            if !tokens::revoke(&db, id).await? {
                anyhow::bail!("no active IDE token with id {id} (see `chime ide-token list`)");
            }
            println!("revoked IDE token {id}; its open connections close within seconds");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn policy(path: Option<PathBuf>, what: PolicyCommand) -> anyhow::Result<ExitCode> {
    use chime::cli::policy::{run, Command};
    match what {
        PolicyCommand::Stats => {
            let config = load(path)?;
            let db = Db::connect(&config.database).await?;
            print!("{}", chime::policy::live::stats(&db).await?);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Check { files } => run(Command::Check { files }),
        PolicyCommand::Replay {
            input,
            policy,
            ignore_budgets,
            format: _,
        } => run(Command::Replay {
            input,
            policy,
            ignore_budgets,
        }),
        PolicyCommand::Eval { input, policy } => run(Command::Eval { input, policy }),
    }
}

async fn serve(
    path: Option<PathBuf>,
    playground: bool,
    allow_remote_playground: bool,
) -> anyhow::Result<ExitCode> {
    let mut config = load(path)?;
    config.playground.enabled |= playground;
    let addr = config.listen_addr()?;
    if let Err(why) = config.check_playground_binding(allow_remote_playground) {
        anyhow::bail!(why);
    }
    let db = Db::connect(&config.database).await?;
    db.migrate().await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    // Registered before the server answers: a SIGTERM that comes as soon as it is reachable must
    // shut it down cleanly, not kill it with the default action.
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let app = chime::app::start(config.clone(), db, listener).await?;
    tracing::info!(
        addr = %app.addr,
        database = %redact_url(&config.database.url),
        slack = config.slack_enabled(),
        version = env!("CARGO_PKG_VERSION"),
        "Chime is listening on http://{}", app.addr
    );
    if !config.slack_enabled() {
        // One clear line for a newcomer: what this is and where to go.
        println!(
            "Chime is running in local mode (no Slack credentials): open the playground at http://{}/",
            app.addr
        );
    } else if config.playground_enabled() {
        println!(
            "Chime is serving Slack, and the playground at http://{}/",
            app.addr
        );
    }
    let shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal(term).await;
        tracing::info!(
            "shutting down: no new work is taken; running tasks finish or are handed back"
        );
        shutdown.cancel();
    });
    app.wait().await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal(term: std::io::Result<tokio::signal::unix::Signal>) {
    match term {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
