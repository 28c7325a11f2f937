//! `Config::check`: everything `check-config` and `serve` can validate without touching the network.

use super::{redact_url, BackendConfig, Config, SandboxMode};
use crate::ids::RepoName;
use std::path::PathBuf;

impl Config {
    fn check_openai(&self, name: &str, model: &str, timeout_secs: u64, r: &mut Report) {
        if model.trim().is_empty() {
            r.errors
                .push(format!("[backends.{name}] (openai) needs a model"));
        }
        if timeout_secs == 0 {
            r.errors
                .push(format!("[backends.{name}] timeout_secs must be at least 1"));
        }
        match (&self.endpoints.openai, &self.secrets.openai_api_key) {
            (None, None) => r.errors.push(format!(
                "[backends.{name}] (openai): OPENAI_API_KEY is not set and OPENAI_BASE_URL is unset, so it would call \
                 api.openai.com without a key. Set OPENAI_API_KEY, or point OPENAI_BASE_URL at an OpenAI-compatible \
                 server (vLLM, Ollama, llama.cpp), which may need no key"
            )),
            (Some(url), _) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                r.errors.push(format!(
                    "OPENAI_BASE_URL must be an http:// or https:// URL, got {:?}",
                    redact_url(url)
                ))
            }
            (Some(_), None) => r.warnings.push(format!(
                "[backends.{name}] (openai): OPENAI_API_KEY is not set; requests to OPENAI_BASE_URL go without a key"
            )),
            _ => {}
        }
    }
}

/// Problems `check-config` reports; errors stop `serve`, warnings do not.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    /// Every endpoint the config would reach (what reaches it, and where).
    pub endpoints: Vec<String>,
    /// Endpoints outside `[network]`'s allowlist: `check-config` fails on them; `serve` warns
    /// and refuses each call to them at run time.
    pub outside: Vec<String>,
}

impl Config {
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
            // A repository's setup runs its own code with network: Chime's own credentials
            // must never be handed to it.
            for s in &repo.setup_secrets {
                let own = s == "DATABASE_URL"
                    || s.ends_with("_API_KEY")
                    || [
                        "SLACK_", "LINEAR_", "CURSOR_", "DEVIN_", "GITHUB_", "CHIME_",
                    ]
                    .iter()
                    .any(|p| s.starts_with(p));
                if own {
                    r.errors.push(format!(
                        "[repos.\"{name}\"] setup_secrets names {s}, one of Chime's own credentials: give the setup a token of its own"
                    ));
                }
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
            if let BackendConfig::Openai {
                model,
                timeout_secs,
                ..
            } = b
            {
                self.check_openai(name, model, *timeout_secs, &mut r);
            }
            if let BackendConfig::Webhook {
                url, timeout_secs, ..
            } = b
            {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    r.errors.push(format!(
                        "[backends.{name}] (webhook): url must be http:// or https://"
                    ));
                }
                if self.secrets.webhook_backend_secret.is_none() {
                    r.errors.push(format!(
                        "[backends.{name}] (webhook): CHIME_WEBHOOK_BACKEND_SECRET is not set (it signs the envelopes and verifies the callbacks)"
                    ));
                }
                if self.server.public_url.is_none() {
                    r.errors.push(format!(
                        "[backends.{name}] (webhook): server.public_url is not set, so the service cannot call back"
                    ));
                }
                if *timeout_secs == 0 {
                    r.errors
                        .push(format!("[backends.{name}] timeout_secs must be at least 1"));
                }
            }
            let remote = match b {
                BackendConfig::Devin {
                    timeout_secs,
                    poll_ms,
                    ..
                } => Some((
                    "devin",
                    "DEVIN_API_KEY",
                    self.secrets.devin_api_key.is_some(),
                    timeout_secs,
                    poll_ms,
                )),
                BackendConfig::Cursor {
                    timeout_secs,
                    poll_ms,
                    ..
                } => Some((
                    "cursor",
                    "CURSOR_API_KEY",
                    self.secrets.cursor_api_key.is_some(),
                    timeout_secs,
                    poll_ms,
                )),
                _ => None,
            };
            if let Some((kind, key, has_key, timeout_secs, poll_ms)) = remote {
                if !has_key {
                    r.errors
                        .push(format!("[backends.{name}] ({kind}): {key} is not set"));
                }
                if *timeout_secs == 0 || *poll_ms < 100 {
                    r.errors.push(format!(
                        "[backends.{name}] timeout_secs must be at least 1 and poll_ms at least 100"
                    ));
                }
            }
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
        // Every endpoint this config reaches, against the network allowlist.
        let egress = crate::egress::Egress::from_config(self);
        for (what, url) in crate::egress::endpoints(self) {
            let shown = super::redact_url(&url);
            r.endpoints.push(format!("{what}: {shown}"));
            if !egress.allows_url(&url) {
                let host = crate::egress::host_of(&url).unwrap_or(url.clone());
                r.outside.push(format!(
                    "{what} ({shown}): {host} is not in [network] allow_hosts (network.mode = \"{}\")",
                    egress.mode_name()
                ));
            }
        }
        for p in &self.guard.patterns {
            if let Err(e) = crate::guard::check_custom(p) {
                r.errors.push(e);
            }
        }
        if !(1..=10).contains(&self.agent.best_of_max) {
            r.errors.push(format!(
                "agent.best_of_max must be between 1 and 10 (one comparison card shows every attempt), got {}",
                self.agent.best_of_max
            ));
        }
        let has_command = self
            .backends
            .values()
            .any(|b| matches!(b, BackendConfig::Command { .. }));
        if has_command && self.github.pull_requests && self.secrets.github_token.is_none() {
            r.warnings.push(
                "GITHUB_TOKEN is not set: command runs' branches stay in Chime's mirrors and no pull request is opened \
                 (set it, or [github] pull_requests = false to silence this)"
                    .into(),
            );
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
        self.check_linear(&mut r);
        if let Err(e) = crate::digest::schedule::parse_zone(&self.digest.time_zone) {
            r.errors.push(format!("digest.time_zone: {e}"));
        }
        for t in &self.digest.targets {
            if let Err(e) = crate::digest::schedule::Target::from_config(t, &self.digest.time_zone)
            {
                r.errors.push(format!("[[digest.targets]]: {e}"));
            }
        }
        if self.digest.tick_secs == 0 {
            r.errors.push("digest.tick_secs must be at least 1".into());
        }
        r
    }

    fn check_linear(&self, r: &mut Report) {
        let (s, l) = (&self.secrets, &self.linear);
        let oauth = !l.client_id.is_empty() && s.linear_client_secret.is_some();
        if !self.linear_enabled() {
            if s.linear_access_token.is_some() || oauth {
                r.warnings.push(
                    "Linear credentials are set but LINEAR_WEBHOOK_SECRET is not: Linear stays off"
                        .into(),
                );
            }
            return;
        }
        if s.linear_access_token.is_none() && !oauth {
            r.errors.push(
                "LINEAR_WEBHOOK_SECRET is set but Chime has no way to act in Linear: set LINEAR_ACCESS_TOKEN, or linear.client_id with LINEAR_CLIENT_SECRET for OAuth installs".into(),
            );
        }
        if oauth
            && !l.redirect_url.starts_with("https://")
            && !l.redirect_url.starts_with("http://")
        {
            r.errors.push("linear.redirect_url must be this server's /linear/oauth/callback URL for OAuth installs".into());
        }
        let api = self.endpoints.linear();
        if !(api.starts_with("https://") || api.starts_with("http://")) {
            r.errors.push(format!(
                "LINEAR_API_URL must be an http(s) URL, got {api:?}"
            ));
        }
        if l.heartbeat_secs == 0 || l.heartbeat_secs >= 30 * 60 {
            r.errors.push("linear.heartbeat_secs must be between 1 and 1799 (Linear marks a session stale after 30 minutes)".into());
        }
        if l.http_timeout_secs == 0 {
            r.errors
                .push("linear.http_timeout_secs must be at least 1".into());
        }
        for route in &l.routes {
            if crate::ids::RepoName::parse(&route.repo).is_none() {
                r.errors.push(format!(
                    "[[linear.routes]] repo {:?} is not owner/name",
                    route.repo
                ));
            }
        }
        for s in &self.identity.require_link {
            if s.parse::<crate::binding::Surface>().is_err() {
                r.errors.push(format!(
                    "identity.require_link names an unknown surface {s:?}"
                ));
            }
        }
        if self.identity.require_link.iter().any(|s| s == "linear")
            && self.server.public_url.is_none()
        {
            r.warnings.push("identity.require_link includes linear but server.public_url is not set: link pages will point at server.listen".into());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../../chime.example.toml");
        let config = Config::parse(text).expect("example parses");
        let report = config.check();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
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
    fn chime_credentials_never_go_to_a_setup() {
        let c = Config::parse(
            "[repos.\"acme/api\"]\nurl = \"x\"\nsetup_secrets = [\"NPM_TOKEN\", \"SLACK_BOT_TOKEN\", \"OPENAI_API_KEY\", \"DATABASE_URL\"]\n",
        )
        .unwrap();
        let errors = c.check().errors;
        for own in ["SLACK_BOT_TOKEN", "OPENAI_API_KEY", "DATABASE_URL"] {
            assert!(errors.iter().any(|e| e.contains(own)), "{own}: {errors:?}");
        }
        assert!(
            !errors.iter().any(|e| e.contains("NPM_TOKEN")),
            "{errors:?}"
        );
    }
}
