//! The sections of the TOML file (`[server]`, `[slack]`, `[backends.NAME]`, …) and their defaults.

use super::{DEFAULT_DATABASE_URL, DEFAULT_LISTEN, DEFAULT_SLACK_API_URL};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    /// Requests with a larger body are refused with 413 before any parsing.
    pub max_body_bytes: usize,
    /// Seconds to wait for running tasks on shutdown before their leases are released.
    pub shutdown_grace_secs: u64,
    /// Connections served at once (at most half the open-file limit); more wait until one closes.
    pub max_connections: usize,
    /// A request's headers must arrive within this; idle keep-alive connections close after it.
    pub header_read_timeout_secs: u64,
    /// A request's body must arrive within this once its headers have.
    pub body_read_timeout_secs: u64,
    /// Chime's public base URL (e.g. `https://chime.example.com`), for callbacks to reach it.
    pub public_url: Option<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            max_body_bytes: 256 * 1024,
            shutdown_grace_secs: 10,
            max_connections: 512,
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            public_url: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
    /// SQLite only: `normal` survives a process crash, `full` also survives power loss (about half the speed).
    pub sqlite_synchronous: String,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_DATABASE_URL.into(),
            sqlite_synchronous: "normal".into(),
            max_connections: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlackConfig {
    pub api_url: String,
    /// When non-empty, only these workspaces (team ids) are served; when empty, only the one
    /// `auth.test` names for the bot token.
    pub allowed_workspaces: Vec<String>,
    /// The bot's own user id; learnt from `auth.test` and from event authorizations when empty.
    pub bot_user_id: String,
    pub allow_guests: bool,
    pub allow_external: bool,
    /// What to do when `users.info` cannot tell whether someone is a guest: `allow` or `deny`.
    pub on_lookup_error: String,
    /// User ids who may press Stop, Retry and the repo picker on anyone's task.
    pub admins: Vec<String>,
    pub ack_reaction: String,
    /// Every Slack Web API call is abandoned (and retried or reported) after this many seconds.
    pub http_timeout_secs: u64,
    pub rate_limits: RateLimits,
    /// How a turn shows its progress: `stream` (one streamed reply whose plan ticks over, falling
    /// back per workspace to an edited status message when Slack refuses streams) or `edit`.
    pub progress: ProgressMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProgressMode {
    #[default]
    Stream,
    Edit,
}

impl Default for SlackConfig {
    fn default() -> Self {
        Self {
            api_url: DEFAULT_SLACK_API_URL.into(),
            allowed_workspaces: vec![],
            bot_user_id: String::new(),
            allow_guests: false,
            allow_external: false,
            on_lookup_error: "deny".into(),
            admins: vec![],
            ack_reaction: "eyes".into(),
            http_timeout_secs: 10,
            rate_limits: RateLimits::default(),
            progress: ProgressMode::Stream,
        }
    }
}

/// The local playground: a Slack-like workspace served at `/`, alone when Slack is not configured
/// and beside Slack with `enabled = true` (or `chime serve --playground`). It has no sign-in, so
/// it listens on loopback only unless the operator says otherwise twice.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlaygroundConfig {
    /// Serve the playground beside Slack too.
    pub enabled: bool,
    /// Whether the playground's guest and external people may start and stop tasks.
    pub allow_guests: bool,
    pub allow_external: bool,
    /// The reaction Chime adds to a request it accepted.
    pub ack_reaction: String,
}

impl Default for PlaygroundConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            allow_guests: false,
            allow_external: false,
            ack_reaction: "eyes".into(),
        }
    }
}

/// Proactive suggestions: off until a team turns them on (after replaying its own history with
/// `chime policy replay`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuggestionsConfig {
    /// Judge channel messages and offer suggestions.
    pub enabled: bool,
    /// The policy file; the shipped `policies/default.toml` when unset.
    pub policy: Option<std::path::PathBuf>,
}

/// Proactive limits, per workspace; a 429 from Slack is honoured on top of these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    /// `chat.postMessage`: Slack allows about one message per second per channel.
    pub post_message_per_channel_per_sec: u32,
    pub tier2_per_min: u32,
    pub tier3_per_min: u32,
    pub tier4_per_min: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            post_message_per_channel_per_sec: 1,
            tier2_per_min: 20,
            tier3_per_min: 50,
            tier4_per_min: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Used when neither the message nor the channel names a repository.
    pub default_repo: Option<String>,
    /// Channel id → `owner/name`.
    pub channels: BTreeMap<String, String>,
    /// Backends anyone may choose inline (`backend=`) in any channel, besides the default and dry-run.
    pub inline_backends: Vec<String>,
    /// Channel id → further backends that may be chosen inline there.
    pub backends: BTreeMap<String, Vec<String>>,
    /// Channel id, or `linear:TEAMKEY` → whether a request there needs its plan approved first.
    pub approval: BTreeMap<String, Approval>,
}

/// Whether work at a place needs the requester's approval of a plan first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    #[default]
    None,
    Plan,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RepoConfig {
    /// Where to clone the mirror from: a URL or a local path.
    pub url: String,
    pub default_branch: Option<String>,
    /// The `command` backend's setup phase: an argv run before the agent, with network, in the
    /// sandbox, writing to `$CHIME_CACHE`; its result is cached per setup and lockfiles. Empty:
    /// the repository's committed `.chime/setup` when it has one, else no setup.
    pub setup: Vec<String>,
    /// Names of Chime's environment variables the setup gets (a registry token); the agent never
    /// gets them.
    pub setup_secrets: Vec<String>,
    /// Files whose content keys the setup cache (a change reruns setup once); the usual lockfiles
    /// when empty.
    pub lockfiles: Vec<String>,
}

/// Spend: what each backend's usage costs, and monthly budgets (UTC calendar months). At 80% of a
/// budget the connector's admins are told once; at 100% new turns are refused until it resets.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BudgetsConfig {
    /// USD a workspace may spend in a month; 0: no budget.
    pub workspace_monthly_usd: f64,
    /// Channel id → USD it may spend in a month.
    pub channels: BTreeMap<String, f64>,
    /// Backend name → what its usage costs (unpriced usage is counted, at no cost).
    pub prices: BTreeMap<String, Price>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Price {
    pub usd_per_million_input_tokens: f64,
    pub usd_per_million_output_tokens: f64,
    /// For backends that report no tokens (`command`): the turn's wall time.
    pub usd_per_hour: f64,
}

/// Caps on load, counted in the store so that every replica enforces the same ones. A cap of 0
/// means no cap.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Turns one person may have waiting or running at once (across their sessions).
    pub concurrent_per_person: u32,
    /// ... in one channel (a Linear workspace counts as one).
    pub concurrent_per_channel: u32,
    /// ... in one workspace.
    pub concurrent_per_workspace: u32,
    /// Turns asked in the last 24 hours, per person, channel and workspace.
    pub daily_per_person: u32,
    pub daily_per_channel: u32,
    pub daily_per_workspace: u32,
    /// Turns one session may have; past it, a new thread starts a new session.
    pub turns_per_session: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            concurrent_per_person: 5,
            concurrent_per_channel: 20,
            concurrent_per_workspace: 50,
            daily_per_person: 100,
            daily_per_channel: 500,
            daily_per_workspace: 2000,
            turns_per_session: 50,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Tasks one process runs at once.
    pub concurrency: usize,
    /// A task whose lease is not renewed for this long is taken to have lost its worker.
    pub lease_secs: u64,
    pub max_attempts: i64,
    pub poll_ms: u64,
    /// Handled inbox and sent outbox rows are deleted after this many days.
    pub retention_days: u64,
    /// An outbox row that keeps failing transiently is marked failed after this many attempts.
    pub max_send_attempts: i64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            lease_secs: 15,
            max_attempts: 3,
            poll_ms: 250,
            retention_days: 7,
            max_send_attempts: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// A name from `[backends]`, or `dry-run`.
    pub default_backend: String,
    /// Mirrors and worktrees of the `command` backend live here.
    pub workdir: PathBuf,
    /// Earlier turns are kept in the agent input up to this many characters (oldest trimmed first).
    pub max_history_chars: usize,
    /// A session's worktrees, scratch repository and home are removed after this many days
    /// without a turn (its branch stays in the mirror); 0 keeps them.
    pub cleanup_idle_days: u64,
    /// The most attempts one best-of-N turn may run (`attempts=N`, **Try 3 ways**); each is a
    /// whole agent run, so this caps what one request can cost.
    pub best_of_max: u32,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            default_backend: "dry-run".into(),
            workdir: PathBuf::from(".chime"),
            max_history_chars: 60_000,
            cleanup_idle_days: 14,
            best_of_max: 3,
        }
    }
}

/// The output guard (see `guard`): the team's own patterns, on top of the built-in rules.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardConfig {
    pub patterns: Vec<crate::guard::CustomPattern>,
}

/// Linear: agent sessions, delegation and mentions. On when `LINEAR_WEBHOOK_SECRET` is set; the
/// token is `LINEAR_ACCESS_TOKEN` (one workspace) or each workspace's own from OAuth.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinearConfig {
    /// Which repository an issue's work goes to, after a `repo: owner/name` line in the issue:
    /// the first rule whose every given field matches (team key, project name, label name).
    pub routes: Vec<LinearRoute>,
    /// The OAuth app's client id (`LINEAR_CLIENT_ID` wins); its secret is `LINEAR_CLIENT_SECRET`.
    pub client_id: String,
    /// Where Linear sends people back after they install Chime: this server's
    /// `/linear/oauth/callback`, as Linear's app settings list it.
    pub redirect_url: String,
    /// Linear user ids who may stop anyone's session.
    pub admins: Vec<String>,
    /// Where agent sessions are not used: a comment that says `@<mention_name>` (or links
    /// Chime's profile) is a request to Chime.
    pub mention_name: String,
    /// A running session with no activity for this long gets a `thought` (Linear marks a session
    /// stale after 30 minutes without one).
    pub heartbeat_secs: u64,
    /// Every GraphQL call is abandoned (and retried) after this many seconds.
    pub http_timeout_secs: u64,
}

impl Default for LinearConfig {
    fn default() -> Self {
        Self {
            routes: vec![],
            client_id: String::new(),
            redirect_url: String::new(),
            admins: vec![],
            mention_name: "chime".into(),
            heartbeat_secs: 20 * 60,
            http_timeout_secs: 10,
        }
    }
}

/// One session across tools (a Slack thread and a Linear issue's session about the same issue):
/// what of a turn asked in one place is shown in the others. Progress never crosses over, and
/// nothing asked in a private place (a DM, a private channel) is shown anywhere else.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MirrorConfig {
    /// The turn's final result (with its pull request).
    pub result: bool,
    /// Only its pull request, when `result` is off.
    pub pr_link: bool,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        Self {
            result: true,
            pr_link: true,
        }
    }
}

/// One person across surfaces (`identity.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityConfig {
    /// Surfaces whose people must have an account linked on another running surface (by their
    /// verified email, found automatically, or with `/chime link CODE`) before Chime runs
    /// anything for them. Linear by default: Chime's access rules (guests, admins) live in Slack.
    pub require_link: Vec<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            require_link: vec!["linear".into()],
        }
    }
}

/// The weekly digest: where it is posted, and when.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    pub targets: Vec<DigestTarget>,
    /// How often each replica checks whether a digest is due.
    pub tick_secs: u64,
    /// A digest posted this long after its due time (Chime was down) says it is late; a
    /// target's due time this old when it first runs is skipped instead.
    pub late_after_secs: u64,
    /// The workspace's time zone (an IANA name like `Europe/Berlin`): a target's schedule runs in
    /// it unless the target names its own.
    pub time_zone: String,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self {
            targets: vec![],
            tick_secs: 60,
            late_after_secs: 300,
            time_zone: "UTC".into(),
        }
    }
}

/// One `[[digest.targets]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestTarget {
    /// `slack:TEAM/CHANNEL`, or `local:CHANNEL` for the playground.
    pub place: String,
    /// A cron expression with seconds (the `cron` crate's): Mondays at 09:00 by default.
    #[serde(default = "default_digest_schedule")]
    pub schedule: String,
    /// The time zone the schedule runs in (an IANA name, with its daylight saving time);
    /// `[digest] time_zone` when unset.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// A fixed offset from UTC instead, like `+01:00` (no daylight saving time).
    #[serde(default)]
    pub utc_offset: Option<String>,
}

fn default_digest_schedule() -> String {
    "0 0 9 * * Mon".into()
}

/// One `[[linear.routes]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearRoute {
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub label: Option<String>,
    pub repo: String,
}

/// What Chime does on GitHub with a `command` run's work (needs `GITHUB_TOKEN`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubConfig {
    /// After a turn that changed files: push its branch and open a pull request (a later turn of
    /// the same session pushes to the same pull request).
    pub pull_requests: bool,
    /// Open them as drafts.
    pub draft: bool,
}

impl Default for GithubConfig {
    fn default() -> Self {
        Self {
            pull_requests: true,
            draft: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "kebab-case")]
pub enum BackendConfig {
    /// Runs a CLI agent (prompt on stdin, JSONL progress on stdout) in a per-session git worktree.
    Command {
        command: Vec<String>,
        #[serde(default = "default_timeout")]
        timeout_secs: u64,
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// How the agent is isolated from Chime and the host; see [`SandboxMode`].
        #[serde(default)]
        sandbox: SandboxMode,
        /// Extra paths the sandboxed agent may read (agent installs, credentials directories).
        #[serde(default)]
        sandbox_read_only: Vec<PathBuf>,
    },
    /// Posts the agent input it would send, without running anything.
    DryRun,
    /// An OpenAI-compatible model (questions, plans, reviews): the Responses API, or Chat
    /// Completions for servers that lack it. `OPENAI_API_KEY`, `OPENAI_BASE_URL`.
    Openai {
        model: String,
        #[serde(default)]
        api: OpenaiApi,
        #[serde(default = "default_model_timeout")]
        timeout_secs: u64,
        /// The system prompt; Chime's own safety framing is in the input either way.
        #[serde(default)]
        instructions: Option<String>,
        #[serde(default)]
        max_output_tokens: Option<u32>,
    },
    /// Cursor's Cloud Agents API (v1): an agent per Chime session, a run per turn, polled.
    /// `CURSOR_API_KEY`, `CURSOR_API_URL`.
    Cursor {
        /// The model id; Cursor's default when unset.
        #[serde(default)]
        model: Option<String>,
        /// Cursor opens the pull request itself.
        #[serde(default = "yes")]
        auto_create_pr: bool,
        #[serde(default = "default_remote_timeout")]
        timeout_secs: u64,
        #[serde(default = "default_poll_ms")]
        poll_ms: u64,
    },
    /// A team's own agent service: Chime POSTs it a signed task envelope
    /// (`integrations/webhook/task.schema.json`), and it sends signed progress and result
    /// callbacks to `POST /backends/webhook/callback`. `CHIME_WEBHOOK_BACKEND_SECRET`.
    Webhook {
        url: String,
        #[serde(default = "default_remote_timeout")]
        timeout_secs: u64,
        /// How often the task's stored callbacks are read.
        #[serde(default = "default_callback_poll_ms")]
        poll_ms: u64,
    },
    /// Devin's sessions API: a Devin session per Chime session, a message per follow-up, its
    /// status polled. `DEVIN_API_KEY`, `DEVIN_API_URL`.
    Devin {
        #[serde(default = "default_remote_timeout")]
        timeout_secs: u64,
        /// How often the session's status is read.
        #[serde(default = "default_poll_ms")]
        poll_ms: u64,
        #[serde(default)]
        tags: Vec<String>,
    },
}

/// How a remote coding agent's run is followed.
fn default_remote_timeout() -> u64 {
    7200
}

fn default_callback_poll_ms() -> u64 {
    500
}

fn yes() -> bool {
    true
}

fn default_poll_ms() -> u64 {
    10_000
}

/// Which OpenAI-compatible API an `openai` backend speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpenaiApi {
    /// `POST /responses`; a follow-up continues with `previous_response_id`.
    #[default]
    Responses,
    /// `POST /chat/completions`; a follow-up sends the whole history again.
    Chat,
}

fn default_model_timeout() -> u64 {
    600
}

/// How a `command` backend isolates its agent (see `backend/command/sandbox.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SandboxMode {
    /// bubblewrap: new pid/ipc/uts namespaces, no capabilities, only the worktree writable.
    #[default]
    Bwrap,
    /// As `bwrap`, and without network (loopback only, of its own).
    NoNetwork,
    /// No isolation: the agent runs as Chime's user and can read its database and config.
    None,
}

fn default_timeout() -> u64 {
    1800
}
