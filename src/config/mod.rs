//! Chime's one configuration: a TOML file for settings, environment variables for secrets.
//!
//! Every key is documented in `chime.example.toml`. Unknown keys are errors, so a typo never silently
//! falls back to a default.

mod check;
mod sections;

pub use check::Report;
pub use sections::{
    AgentConfig, Approval, BackendConfig, BudgetsConfig, DatabaseConfig, DigestConfig,
    DigestTarget, GithubConfig, GuardConfig, IdentityConfig, LimitsConfig, LinearConfig,
    LinearRoute, MirrorConfig, OpenaiApi, PlaygroundConfig, Price, ProgressMode, RateLimits,
    RepoConfig, RoutingConfig, SandboxMode, ServerConfig, SlackConfig, SuggestionsConfig,
    WorkerConfig,
};

use crate::ids::RepoName;
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://chime.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_SLACK_API_URL: &str = "https://slack.com/api";
pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_DEVIN_API_URL: &str = "https://api.devin.ai";
pub const DEFAULT_CURSOR_API_URL: &str = "https://api.cursor.com";
pub const DEFAULT_GITHUB_API_URL: &str = "https://api.github.com";
pub const DEFAULT_LINEAR_API_URL: &str = "https://api.linear.app/graphql";

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub slack: SlackConfig,
    pub playground: PlaygroundConfig,
    pub suggestions: SuggestionsConfig,
    pub routing: RoutingConfig,
    pub repos: BTreeMap<String, RepoConfig>,
    pub worker: WorkerConfig,
    pub limits: LimitsConfig,
    pub budgets: BudgetsConfig,
    pub agent: AgentConfig,
    pub backends: BTreeMap<String, BackendConfig>,
    pub github: GithubConfig,
    pub linear: LinearConfig,
    pub mirror: MirrorConfig,
    pub identity: IdentityConfig,
    pub digest: DigestConfig,
    pub guard: GuardConfig,
    pub network: crate::egress::NetworkConfig,
    /// Secrets, filled from the environment only (never from the file).
    #[serde(skip)]
    pub secrets: Secrets,
    /// Where the backends' APIs are, from the environment (tests point them at local fakes).
    #[serde(skip)]
    pub endpoints: Endpoints,
}

/// Backend API base URLs set in the environment; unset, each backend uses its vendor's.
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    /// `OPENAI_BASE_URL`: any OpenAI-compatible server (vLLM, Ollama, llama.cpp) works.
    pub openai: Option<String>,
    /// `DEVIN_API_URL`.
    pub devin: Option<String>,
    /// `CURSOR_API_URL`.
    pub cursor: Option<String>,
    /// `GITHUB_API_URL`: GitHub's REST API (GitHub Enterprise: `https://HOST/api/v3`).
    pub github: Option<String>,
    /// `LINEAR_API_URL`: Linear's GraphQL endpoint (OAuth's token endpoint is beside it).
    pub linear: Option<String>,
}

impl Endpoints {
    pub fn cursor(&self) -> &str {
        self.cursor
            .as_deref()
            .unwrap_or(DEFAULT_CURSOR_API_URL)
            .trim_end_matches('/')
    }

    pub fn github(&self) -> &str {
        self.github
            .as_deref()
            .unwrap_or(DEFAULT_GITHUB_API_URL)
            .trim_end_matches('/')
    }

    pub fn linear(&self) -> &str {
        self.linear
            .as_deref()
            .unwrap_or(DEFAULT_LINEAR_API_URL)
            .trim_end_matches('/')
    }

    pub fn devin(&self) -> &str {
        self.devin
            .as_deref()
            .unwrap_or(DEFAULT_DEVIN_API_URL)
            .trim_end_matches('/')
    }

    pub fn openai(&self) -> &str {
        self.openai
            .as_deref()
            .unwrap_or(DEFAULT_OPENAI_BASE_URL)
            .trim_end_matches('/')
    }
}

#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub slack_signing_secret: Option<SecretString>,
    pub slack_bot_token: Option<SecretString>,
    pub slack_app_token: Option<SecretString>,
    /// Required by the playground when it listens beyond loopback (`CHIME_PLAYGROUND_TOKEN`).
    pub playground_token: Option<SecretString>,
    /// `OPENAI_API_KEY`, for `openai` backends.
    pub openai_api_key: Option<SecretString>,
    /// `DEVIN_API_KEY`, for `devin` backends.
    pub devin_api_key: Option<SecretString>,
    /// `CURSOR_API_KEY`, for `cursor` backends.
    pub cursor_api_key: Option<SecretString>,
    /// `CURSOR_WEBHOOK_SECRET`: verifies `POST /backends/cursor/webhook` (Cursor's v0 webhook).
    pub cursor_webhook_secret: Option<SecretString>,
    /// `CHIME_WEBHOOK_BACKEND_SECRET`: signs `webhook` backends' envelopes, verifies their callbacks.
    pub webhook_backend_secret: Option<SecretString>,
    /// `GITHUB_WEBHOOK_SECRET`: verifies `POST /github/webhook`.
    pub github_webhook_secret: Option<SecretString>,
    /// `CHIME_METRICS_TOKEN`: when set, `GET /metrics` answers only `Authorization: Bearer` it.
    pub metrics_token: Option<SecretString>,
    /// `GITHUB_TOKEN`: pushes `command` runs' branches and opens their pull requests.
    pub github_token: Option<SecretString>,
    /// `LINEAR_WEBHOOK_SECRET`: verifies `POST /linear/webhook`; Linear is on when it is set.
    pub linear_webhook_secret: Option<SecretString>,
    /// `LINEAR_ACCESS_TOKEN`: one workspace's token, instead of installing with OAuth.
    pub linear_access_token: Option<SecretString>,
    /// `LINEAR_CLIENT_SECRET`: the OAuth app's secret, for `GET /linear/oauth/callback`.
    pub linear_client_secret: Option<SecretString>,
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
        self.secrets.openai_api_key = non_empty("OPENAI_API_KEY").map(Into::into);
        self.endpoints.openai = non_empty("OPENAI_BASE_URL");
        self.secrets.devin_api_key = non_empty("DEVIN_API_KEY").map(Into::into);
        self.endpoints.devin = non_empty("DEVIN_API_URL");
        self.secrets.cursor_api_key = non_empty("CURSOR_API_KEY").map(Into::into);
        self.endpoints.cursor = non_empty("CURSOR_API_URL");
        self.secrets.cursor_webhook_secret = non_empty("CURSOR_WEBHOOK_SECRET").map(Into::into);
        self.secrets.github_webhook_secret = non_empty("GITHUB_WEBHOOK_SECRET").map(Into::into);
        self.secrets.github_token = non_empty("GITHUB_TOKEN").map(Into::into);
        self.secrets.metrics_token = non_empty("CHIME_METRICS_TOKEN").map(Into::into);
        self.endpoints.github = non_empty("GITHUB_API_URL");
        self.secrets.linear_webhook_secret = non_empty("LINEAR_WEBHOOK_SECRET").map(Into::into);
        self.secrets.linear_access_token = non_empty("LINEAR_ACCESS_TOKEN").map(Into::into);
        self.secrets.linear_client_secret = non_empty("LINEAR_CLIENT_SECRET").map(Into::into);
        if let Some(v) = non_empty("LINEAR_CLIENT_ID") {
            self.linear.client_id = v;
        }
        self.endpoints.linear = non_empty("LINEAR_API_URL");
        self.secrets.webhook_backend_secret =
            non_empty("CHIME_WEBHOOK_BACKEND_SECRET").map(Into::into);
    }

    pub fn listen_addr(&self) -> anyhow::Result<SocketAddr> {
        self.server.listen.parse().map_err(|e| {
            anyhow::anyhow!(
                "CHIME_LISTEN / server.listen {:?} is not host:port: {e}",
                self.server.listen
            )
        })
    }

    /// Linear runs when its webhook can be verified.
    pub fn linear_enabled(&self) -> bool {
        self.secrets.linear_webhook_secret.is_some()
    }

    pub fn slack_enabled(&self) -> bool {
        self.secrets.slack_bot_token.is_some()
            && (self.secrets.slack_signing_secret.is_some()
                || self.secrets.slack_app_token.is_some())
    }

    /// Without Slack credentials Chime runs its local playground instead; with them, when asked.
    pub fn playground_enabled(&self) -> bool {
        self.playground.enabled || !self.slack_enabled()
    }

    /// The playground has no sign-in of its own, so it stays on loopback unless the operator says
    /// otherwise twice: with `--allow-remote-playground` and with an access token.
    pub fn check_playground_binding(&self, allow_remote: bool) -> Result<(), String> {
        let addr = self.listen_addr().map_err(|e| e.to_string())?;
        if !self.playground_enabled() || addr.ip().is_loopback() {
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
    /// Whether a request at `place` (a channel id), or from a Linear issue of `team`, first makes
    /// a plan for its requester to approve.
    pub fn needs_plan_approval(&self, place: &str, team: Option<&str>) -> bool {
        let of = |key: &str| self.routing.approval.get(key).copied().unwrap_or_default();
        of(place) == Approval::Plan
            || team.is_some_and(|t| of(&format!("linear:{t}")) == Approval::Plan)
    }

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
        // Beside Slack (`--playground`), the same rule holds.
        c.playground.enabled = true;
        assert!(c.check_playground_binding(false).is_err());
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
