//! Where Chime may connect (`[network]`): every outbound HTTP client is built here, with timeouts,
//! and asks [`Egress::check`] before each call and each redirect. `mode = "open"` allows any host;
//! `"allowlist"` only the hosts in `allow_hosts`; `"air-gapped"` loopback and those hosts. A call
//! to any other host is refused before it is made, logged, and fails with a reason that names the
//! host and the setting. `chime check-config` lists every endpoint the config would reach
//! ([`endpoints`]) and fails in air-gapped mode when one is outside the list.

use crate::config::{BackendConfig, Config};
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Open,
    Allowlist,
    AirGapped,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Open => "open",
            Mode::Allowlist => "allowlist",
            Mode::AirGapped => "air-gapped",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    pub mode: Mode,
    /// Host names (`api.openai.com`), wildcards for subdomains (`*.slack.com`), or IP addresses.
    pub allow_hosts: Vec<String>,
}

/// A call Chime refused to make.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("refused by the network allowlist: {host} is not in [network] allow_hosts (network.mode = \"{mode}\")")]
pub struct Refused {
    pub host: String,
    pub mode: &'static str,
}

#[derive(Debug, Clone, Default)]
pub struct Egress {
    mode: Mode,
    allow: Arc<Vec<String>>,
}

impl Egress {
    pub fn new(config: &NetworkConfig) -> Self {
        let allow = config
            .allow_hosts
            .iter()
            .map(|h| h.trim().trim_matches(['[', ']']).to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Self {
            mode: config.mode,
            allow: Arc::new(allow),
        }
    }

    pub fn from_config(config: &Config) -> Self {
        Self::new(&config.network)
    }

    pub fn is_open(&self) -> bool {
        self.mode == Mode::Open
    }

    /// Whether a connection to `host` (a name or an IP address) is allowed.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_matches(['[', ']']).trim_end_matches('.');
        let host = host.to_ascii_lowercase();
        match self.mode {
            Mode::Open => true,
            Mode::AirGapped if is_loopback(&host) => true,
            Mode::Allowlist | Mode::AirGapped => {
                self.allow.iter().any(|a| match a.strip_prefix("*.") {
                    Some(domain) => host.ends_with(&format!(".{domain}")),
                    None => *a == host,
                })
            }
        }
    }

    /// Whether `url`'s host is allowed (without logging: for listing endpoints).
    pub fn allows_url(&self, url: &str) -> bool {
        self.is_open() || host_of(url).is_some_and(|h| self.allows_host(&h))
    }

    pub fn mode_name(&self) -> &'static str {
        self.mode.as_str()
    }

    /// Checks the host of `url`; the refusal is logged here, once per call.
    pub fn check(&self, url: &str) -> Result<(), Refused> {
        if self.is_open() {
            return Ok(());
        }
        let host = host_of(url).unwrap_or_default();
        if !host.is_empty() && self.allows_host(&host) {
            return Ok(());
        }
        let refused = Refused {
            host: if host.is_empty() {
                url.chars().take(100).collect()
            } else {
                host
            },
            mode: self.mode.as_str(),
        };
        tracing::warn!(host = %refused.host, mode = refused.mode, "refused an outbound call outside the network allowlist");
        Err(refused)
    }

    /// A reqwest client with Chime's timeouts whose redirects are checked like first calls. Every
    /// request made with it must go through [`Egress::check`] first (the callers do).
    pub fn http_client(
        &self,
        connect: Duration,
        total: Duration,
    ) -> anyhow::Result<reqwest::Client> {
        let egress = self.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 10 {
                attempt.error("too many redirects")
            } else if let Err(refused) = egress.check(attempt.url().as_str()) {
                attempt.error(refused)
            } else {
                attempt.follow()
            }
        });
        Ok(reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(total)
            .redirect(redirects)
            .build()?)
    }
}

/// A failed call's reason with its causes: a redirect this module refused shows as the refusal.
pub fn why(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut text = e.to_string();
    while let Some(s) = source {
        if let Some(refused) = s.downcast_ref::<Refused>() {
            return refused.to_string();
        }
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host of a URL (`scheme://[user@]host[:port]/…`), or of a git remote in scp form
/// (`git@host:owner/name`); None for a local path.
pub fn host_of(url: &str) -> Option<String> {
    let url = url.trim();
    let authority = match url.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next()?,
        None if url.contains('@') && url.contains(':') && !url.starts_with('/') => {
            url.split(':').next()?
        }
        None => return None,
    };
    let host = authority.rsplit('@').next()?;
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Every endpoint the config would reach, with what reaches it.
pub fn endpoints(config: &Config) -> Vec<(String, String)> {
    let mut out = vec![];
    if config.secrets.slack_bot_token.is_some() {
        out.push(("Slack Web API".into(), config.slack.api_url.clone()));
        if config.secrets.slack_app_token.is_some() {
            out.push((
                "Slack Socket Mode".into(),
                "wss://wss-primary.slack.com".into(),
            ));
        }
    }
    if config.linear_enabled() {
        out.push(("Linear API".into(), config.endpoints.linear().to_string()));
    }
    for (name, b) in &config.backends {
        let url = match b {
            BackendConfig::Openai { .. } => config.endpoints.openai().to_string(),
            BackendConfig::Cursor { .. } => config.endpoints.cursor().to_string(),
            BackendConfig::Devin { .. } => config.endpoints.devin().to_string(),
            BackendConfig::Webhook { url, .. } => url.clone(),
            _ => continue,
        };
        out.push((format!("[backends.{name}]"), url));
    }
    let has_command = config
        .backends
        .values()
        .any(|b| matches!(b, BackendConfig::Command { .. }));
    if has_command {
        if config.secrets.github_token.is_some() && config.github.pull_requests {
            out.push(("GitHub API".into(), config.endpoints.github().to_string()));
        }
        for (name, repo) in &config.repos {
            if host_of(&repo.url).is_some() {
                out.push((format!("[repos.\"{name}\"]"), repo.url.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(mode: Mode, hosts: &[&str]) -> Egress {
        Egress::new(&NetworkConfig {
            mode,
            allow_hosts: hosts.iter().map(|h| h.to_string()).collect(),
        })
    }

    #[test]
    fn hosts_and_hostile_urls() {
        assert_eq!(
            host_of("https://API.openai.com/v1"),
            Some("api.openai.com".into())
        );
        assert_eq!(
            host_of("http://u:p@10.0.0.5:8080/x"),
            Some("10.0.0.5".into())
        );
        assert_eq!(host_of("http://[::1]:9000/"), Some("::1".into()));
        assert_eq!(
            host_of("git@github.com:acme/api.git"),
            Some("github.com".into())
        );
        assert_eq!(host_of("/srv/git/api.git"), None);
        assert_eq!(
            host_of("https://api.openai.com@evil.example/v1"),
            Some("evil.example".into())
        );
        let e = egress(Mode::Allowlist, &["api.openai.com", "*.slack.com"]);
        assert!(e.check("https://api.openai.com/v1/responses").is_ok());
        assert!(e.check("https://wss-primary.slack.com/link").is_ok());
        for bad in [
            "https://api.openai.com.evil.example/",
            "https://api.openai.com@evil.example/",
            "https://slack.com/api",
            "https://evilslack.com/",
            "http://localhost:8080/",
            "not a url",
        ] {
            assert!(e.check(bad).is_err(), "{bad}");
        }
        let air = egress(Mode::AirGapped, &["llm.internal"]);
        assert!(air.check("http://127.0.0.1:8000/v1").is_ok());
        assert!(air.check("http://localhost:8000/v1").is_ok());
        assert!(air.check("http://[::1]:8000/v1").is_ok());
        assert!(air.check("http://llm.internal:8000/v1").is_ok());
        let refused = air.check("https://api.openai.com/v1").unwrap_err();
        assert_eq!(refused.host, "api.openai.com");
        assert!(refused.to_string().contains("air-gapped"));
        assert!(egress(Mode::Open, &[])
            .check("https://anything.example")
            .is_ok());
    }
}
