//! Chime's one configuration: a TOML file for settings, environment variables for secrets.
//!
//! Every key is documented in `chime.example.toml`. Unknown keys are errors, so a typo never silently
//! falls back to a default.

use crate::ids::RepoName;
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://chime.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub slack: SlackConfig,
    pub routing: RoutingConfig,
    pub repos: BTreeMap<String, RepoConfig>,
    pub worker: WorkerConfig,
    pub agent: AgentConfig,
    pub backends: BTreeMap<String, BackendConfig>,
    /// Secrets, filled from the environment only (never from the file).
    #[serde(skip)]
    pub secrets: Secrets,
}

#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub slack_signing_secret: Option<SecretString>,
    pub slack_bot_token: Option<SecretString>,
    pub slack_app_token: Option<SecretString>,
    /// Required by the playground when it listens beyond loopback (`CHIME_PLAYGROUND_TOKEN`).
    pub playground_token: Option<SecretString>,
}

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
        }
    }
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
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RepoConfig {
    /// Where to clone the mirror from: a URL or a local path.
    pub url: String,
    pub default_branch: Option<String>,
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
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            default_backend: "dry-run".into(),
            workdir: PathBuf::from(".chime"),
            max_history_chars: 60_000,
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

/// Problems `check-config` reports; errors stop `serve`, warnings do not.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Config {
    /// Loads the file named by `path` (or `CHIME_CONFIG`), then applies the environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let path = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("CHIME_CONFIG").map(PathBuf::from));
        let mut config = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", p.display()))?;
                Self::parse(&text)
                    .map_err(|e| anyhow::anyhow!("config file {}: {e}", p.display()))?
            }
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok());
        Ok(config)
    }

    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Environment variables win over the file; secrets come only from here.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        let non_empty = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = non_empty("DATABASE_URL") {
            self.database.url = v;
        }
        if let Some(v) = non_empty("CHIME_LISTEN") {
            self.server.listen = v;
        }
        if let Some(v) = non_empty("SLACK_API_URL") {
            self.slack.api_url = v;
        }
        self.secrets.slack_signing_secret = non_empty("SLACK_SIGNING_SECRET").map(Into::into);
        self.secrets.slack_bot_token = non_empty("SLACK_BOT_TOKEN").map(Into::into);
        self.secrets.slack_app_token = non_empty("SLACK_APP_TOKEN").map(Into::into);
        self.secrets.playground_token = non_empty("CHIME_PLAYGROUND_TOKEN").map(Into::into);
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.listen.parse().map_err(|e| {
            anyhow::anyhow!(
                "CHIME_LISTEN / server.listen {:?} is not host:port: {e}",
                self.server.listen
            )
        })
    }

    pub fn slack_enabled(&self) -> bool {
        self.secrets.slack_bot_token.is_some()
            && (self.secrets.slack_signing_secret.is_some()
                || self.secrets.slack_app_token.is_some())
    }

    /// Without Slack credentials Chime runs its local playground instead.
    pub fn local_mode(&self) -> bool {
        !self.slack_enabled()
    }

    /// The playground has no sign-in of its own, so it stays on loopback unless the operator says
    /// otherwise twice: with `--allow-remote-playground` and with an access token.
    pub fn check_playground_binding(&self, allow_remote: bool) -> Result<(), String> {
        let addr = self.listen_addr().map_err(|e| e.to_string())?;
        if !self.local_mode() || addr.ip().is_loopback() {
            return Ok(());
        }
        if !allow_remote {
            return Err(format!(
                "refusing to serve the local playground on {addr}: it has no sign-in, so it listens on loopback only \
                 (127.0.0.1). To expose it anyway, pass --allow-remote-playground and set CHIME_PLAYGROUND_TOKEN; \
                 or set Slack credentials to run against Slack."
            ));
        }
        if self.secrets.playground_token.is_none() {
            return Err(format!(
                "refusing to serve the local playground on {addr}: --allow-remote-playground needs an access token in \
                 CHIME_PLAYGROUND_TOKEN"
            ));
        }
        Ok(())
    }

    /// Whether a backend name can be chosen (`dry-run` always can).
    pub fn has_backend(&self, name: &str) -> bool {
        name == "dry-run" || self.backends.contains_key(name)
    }

    /// The backends someone may choose with `backend=` in `channel`: the default, dry-run,
    /// `routing.inline_backends`, and the channel's `[routing.backends]` entry. A backend with a
    /// privileged `env` stays out of reach unless the operator lists it.
    pub fn inline_backends(&self, channel: &str) -> Vec<&str> {
        let mut names = vec!["dry-run", self.agent.default_backend.as_str()];
        names.extend(self.routing.inline_backends.iter().map(String::as_str));
        names.extend(
            self.routing
                .backends
                .get(channel)
                .into_iter()
                .flatten()
                .map(String::as_str),
        );
        names.sort_unstable();
        names.dedup();
        names.retain(|n| self.has_backend(n));
        names
    }

    /// Every repository the config knows, for the repo picker.
    pub fn known_repos(&self) -> Vec<RepoName> {
        let mut names: Vec<String> = self.repos.keys().cloned().collect();
        names.extend(self.routing.channels.values().cloned());
        names.extend(self.routing.default_repo.clone());
        names.sort();
        names.dedup();
        names.iter().filter_map(|n| RepoName::parse(n)).collect()
    }

    /// Validates everything that can be checked without touching the network.
    pub fn check(&self) -> Report {
        let mut r = Report::default();
        if let Err(e) = self.listen_addr() {
            r.errors.push(e.to_string());
        }
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            r.errors.push(format!(
                "DATABASE_URL / database.url must start with sqlite: or postgres://, got {:?}",
                redact_url(url)
            ));
        }
        let sv = &self.server;
        if sv.max_connections == 0
            || sv.header_read_timeout_secs == 0
            || sv.body_read_timeout_secs == 0
        {
            r.errors.push(
                "server.max_connections, server.header_read_timeout_secs and server.body_read_timeout_secs must be at least 1".into(),
            );
        }
        if !matches!(self.database.sqlite_synchronous.as_str(), "normal" | "full") {
            r.errors.push(format!(
                "database.sqlite_synchronous must be \"normal\" or \"full\", got {:?}",
                self.database.sqlite_synchronous
            ));
        }
        if !matches!(self.slack.on_lookup_error.as_str(), "allow" | "deny") {
            r.errors.push(format!(
                "slack.on_lookup_error must be \"allow\" or \"deny\", got {:?}",
                self.slack.on_lookup_error
            ));
        }
        if !(self.slack.api_url.starts_with("http://")
            || self.slack.api_url.starts_with("https://"))
        {
            r.errors.push(format!(
                "SLACK_API_URL / slack.api_url must be an http(s) URL, got {:?}",
                self.slack.api_url
            ));
        }
        if self.slack.api_url.ends_with('/') {
            r.errors
                .push("SLACK_API_URL / slack.api_url must not end with '/'".into());
        }
        let rl = &self.slack.rate_limits;
        if [
            rl.post_message_per_channel_per_sec,
            rl.tier2_per_min,
            rl.tier3_per_min,
            rl.tier4_per_min,
        ]
        .contains(&0)
        {
            r.errors
                .push("slack.rate_limits values must be at least 1".into());
        }
        if self.slack.http_timeout_secs == 0 || self.worker.max_send_attempts < 1 {
            r.errors.push(
                "slack.http_timeout_secs and worker.max_send_attempts must be at least 1".into(),
            );
        }
        if let Some(d) = &self.routing.default_repo {
            if RepoName::parse(d).is_none() {
                r.errors
                    .push(format!("routing.default_repo {d:?} is not owner/name"));
            }
        }
        for (ch, repo) in &self.routing.channels {
            if RepoName::parse(repo).is_none() {
                r.errors.push(format!(
                    "routing.channels.{ch} = {repo:?} is not owner/name"
                ));
            }
        }
        for name in self.repos.keys() {
            if RepoName::parse(name).is_none() {
                r.errors
                    .push(format!("[repos.\"{name}\"] is not owner/name"));
            }
        }
        for (name, repo) in &self.repos {
            if repo.url.trim().is_empty() {
                r.errors.push(format!("[repos.\"{name}\"] needs a url"));
            }
        }
        let backend = &self.agent.default_backend;
        if backend != "dry-run" && !self.backends.contains_key(backend) {
            r.errors.push(format!(
                "agent.default_backend = {backend:?} names no [backends.{backend}] section (known: dry-run{})",
                self.backends.keys().map(|k| format!(", {k}")).collect::<String>()
            ));
        }
        let inline = self.routing.backends.iter().flat_map(|(ch, names)| {
            names
                .iter()
                .map(move |n| (format!("routing.backends.{ch}"), n))
        });
        let inline = inline.chain(
            self.routing
                .inline_backends
                .iter()
                .map(|n| ("routing.inline_backends".to_string(), n)),
        );
        for (key, name) in inline {
            if !self.has_backend(name) {
                r.errors.push(format!(
                    "{key} names {name:?}, but there is no [backends.{name}] section"
                ));
            }
        }
        for (name, b) in &self.backends {
            if let BackendConfig::Command {
                command,
                timeout_secs,
                sandbox,
                sandbox_read_only,
                ..
            } = b
            {
                check_sandbox(name, *sandbox, sandbox_read_only, &mut r);
                if command.is_empty() || command[0].trim().is_empty() {
                    r.errors
                        .push(format!("[backends.{name}] command must name an executable"));
                }
                if *timeout_secs == 0 {
                    r.errors
                        .push(format!("[backends.{name}] timeout_secs must be at least 1"));
                }
            }
        }
        if self.worker.concurrency == 0 {
            r.errors
                .push("worker.concurrency must be at least 1".into());
        }
        if self.worker.lease_secs < 3 {
            r.errors.push("worker.lease_secs must be at least 3".into());
        }
        if self.worker.retention_days < 1 {
            r.errors
                .push("worker.retention_days must be at least 1".into());
        }
        if self.worker.max_attempts < 1 {
            r.errors
                .push("worker.max_attempts must be at least 1".into());
        }
        let s = &self.secrets;
        match (s.slack_bot_token.is_some(), s.slack_signing_secret.is_some(), s.slack_app_token.is_some()) {
            (false, false, false) => r.warnings.push(
                "no Slack credentials (SLACK_BOT_TOKEN with SLACK_SIGNING_SECRET or SLACK_APP_TOKEN): running in local mode, with the playground instead of Slack".into(),
            ),
            (false, _, _) => r.errors.push("SLACK_BOT_TOKEN is not set: Chime cannot post to Slack".into()),
            (true, false, false) => r.errors.push(
                "SLACK_BOT_TOKEN is set but neither SLACK_SIGNING_SECRET (Events API) nor SLACK_APP_TOKEN (Socket Mode) is".into(),
            ),
            _ => {}
        }
        r
    }
}

/// A backend without a sandbox is a loud warning, and so is a sandbox that cannot start.
fn check_sandbox(name: &str, mode: SandboxMode, read_only: &[PathBuf], r: &mut Report) {
    match mode {
        SandboxMode::None => r.warnings.push(format!(
            "[backends.{name}] sandbox = \"none\": its agent runs UNSANDBOXED as Chime's own user and can read \
             Chime's environment (SLACK_* tokens, DATABASE_URL) through /proc, its database, its config and every \
             other session's worktree. Use it only on a host where bubblewrap cannot run; install bubblewrap and \
             remove the setting otherwise"
        )),
        SandboxMode::Bwrap | SandboxMode::NoNetwork => {
            if crate::backend::command::find_bwrap().is_none() {
                r.warnings
                    .push(crate::backend::command::not_installed(name));
            }
        }
    }
    for path in read_only {
        if !path.is_absolute() {
            r.errors.push(format!(
                "[backends.{name}] sandbox_read_only entries must be absolute paths, got {}",
                path.display()
            ));
        } else if !path.exists() {
            r.warnings.push(format!(
                "[backends.{name}] sandbox_read_only: {} does not exist, so the agent will not see it",
                path.display()
            ));
        }
    }
}

/// Hides the password of a database URL before it is shown anywhere.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let creds = &url[scheme_end + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../chime.example.toml");
        let config = Config::parse(text).expect("example parses");
        let report = config.check();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Config::parse("[slack]\nallowed_workspace = [\"T1\"]\n").unwrap_err();
        assert!(err.to_string().contains("allowed_workspace"), "{err}");
    }

    #[test]
    fn env_wins_and_secrets_only_from_env() {
        let mut c = Config::parse("[server]\nlisten = \"127.0.0.1:1\"\n").unwrap();
        c.apply_env(|k| match k {
            "CHIME_LISTEN" => Some("127.0.0.1:2".into()),
            "SLACK_BOT_TOKEN" => Some("xoxb-1".into()),
            _ => None,
        });
        assert_eq!(c.server.listen, "127.0.0.1:2");
        assert!(c.secrets.slack_bot_token.is_some());
        let report = c.check();
        assert!(
            report
                .errors
                .iter()
                .any(|e| e.contains("SLACK_SIGNING_SECRET")),
            "{:?}",
            report.errors
        );
    }

    #[test]
    fn bad_values_are_named() {
        let c = Config::parse(
            "[agent]\ndefault_backend = \"codex\"\n[routing]\ndefault_repo = \"nope\"\n",
        )
        .unwrap();
        let r = c.check();
        assert!(r.errors.iter().any(|e| e.contains("codex")));
        assert!(r.errors.iter().any(|e| e.contains("nope")));
    }

    #[test]
    fn playground_stays_on_loopback_unless_told_twice() {
        let mut c = Config::default();
        assert!(c.check_playground_binding(false).is_ok());
        c.server.listen = "0.0.0.0:8080".into();
        let err = c.check_playground_binding(false).unwrap_err();
        assert!(err.contains("--allow-remote-playground"), "{err}");
        assert!(c
            .check_playground_binding(true)
            .unwrap_err()
            .contains("CHIME_PLAYGROUND_TOKEN"));
        c.secrets.playground_token = Some("t".to_string().into());
        assert!(c.check_playground_binding(true).is_ok());
        // With Slack configured there is no playground to protect.
        c.secrets.playground_token = None;
        c.secrets.slack_bot_token = Some("xoxb".to_string().into());
        c.secrets.slack_signing_secret = Some("s".to_string().into());
        assert!(c.check_playground_binding(false).is_ok());
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://chime.db"), "sqlite://chime.db");
    }
}
