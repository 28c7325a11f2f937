//! The output guard: one scanner for secrets, run at exactly two choke points. Every outbox row is
//! scanned as it is written (`queue::outbox::enqueue_in`: chat text and blocks, pull request
//! titles and bodies, every later surface's writes), and every agent input as it is built
//! (`session::input::build_input`), so a secret pasted into a thread reaches neither an agent nor
//! a cloud backend. A hit becomes `[redacted: KIND]`, and is counted and logged without the secret.
//!
//! The rules (`rules.rs`, versioned) find the usual credential shapes; on top, every secret Chime
//! itself holds is redacted by exact value (aho-corasick), and teams add patterns in `[guard]`.
//! One `RegexSet` pass over all rules says which match at all, so ordinary text, which matches
//! none, costs one pass. A replacement is never longer than what it replaces (a short hit gets `[redacted]`,
//! or asterisks), so a card measured against Block Kit's limits before the guard still fits after.

pub mod rules;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::{Regex, RegexSet};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// A team's own pattern, from `[[guard.patterns]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPattern {
    /// The kind shown in `[redacted: NAME]`: letters, digits and `_`.
    pub name: String,
    pub regex: String,
}

struct Compiled {
    kind: String,
    regex: Regex,
    group: usize,
    check: Option<fn(&str) -> bool>,
}

pub struct Guard {
    rules: Vec<Compiled>,
    /// Every rule at once: one pass says which rules match at all, and text that matches none
    /// (nearly all chat) is done after it.
    prefilter: RegexSet,
    /// Chime's own secrets, by exact value.
    own: Option<AhoCorasick>,
    aws_bare: Regex,
    /// The access key id rule, for pairing secret keys with the ids before them.
    aws_id: Regex,
    aws_id_rule: usize,
}

/// Hits since start, per kind (for `/metrics`).
static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// Redactions since this process started, per kind.
pub fn counts() -> BTreeMap<String, u64> {
    COUNTS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Own secrets shorter than this are not redacted by value (a test's `x` would eat every `x`).
const OWN_MIN_CHARS: usize = 8;

impl Guard {
    /// The built-in rules, `extra` patterns, and `own` secrets redacted by value.
    pub fn new(extra: &[CustomPattern], own: Vec<String>) -> anyhow::Result<Self> {
        let mut compiled = Vec::new();
        for r in rules::RULES {
            compiled.push(Compiled {
                kind: r.kind.to_string(),
                regex: Regex::new(r.pattern)?,
                group: r.group,
                check: r.check,
            });
        }
        let aws_id_rule = rules::RULES
            .iter()
            .position(|r| r.kind == "aws_access_key_id")
            .expect("the rule set has AWS access key ids");
        for p in extra {
            check_custom(p).map_err(anyhow::Error::msg)?;
            compiled.push(Compiled {
                kind: p.name.clone(),
                regex: Regex::new(&p.regex)?,
                group: 0,
                check: None,
            });
        }
        let prefilter = RegexSet::new(compiled.iter().map(|c| c.regex.as_str()))?;
        let mut own: Vec<String> = own
            .into_iter()
            .filter(|s| s.chars().count() >= OWN_MIN_CHARS)
            .collect();
        own.sort();
        own.dedup();
        let own = if own.is_empty() {
            None
        } else {
            Some(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&own)?,
            )
        };
        let aws_id = compiled[aws_id_rule].regex.clone();
        Ok(Self {
            rules: compiled,
            prefilter,
            own,
            aws_bare: Regex::new(rules::AWS_SECRET_BARE)?,
            aws_id,
            aws_id_rule,
        })
    }

    /// The guard for `config`: its `[guard]` patterns, and every secret it holds by value.
    pub fn from_config(config: &crate::config::Config) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        let s = &config.secrets;
        let own = [
            &s.slack_signing_secret,
            &s.slack_bot_token,
            &s.slack_app_token,
            &s.playground_token,
            &s.openai_api_key,
            &s.devin_api_key,
            &s.cursor_api_key,
            &s.cursor_webhook_secret,
            &s.webhook_backend_secret,
            &s.github_webhook_secret,
            &s.github_token,
            &s.linear_webhook_secret,
            &s.linear_access_token,
            &s.linear_client_secret,
            &s.metrics_token,
        ]
        .into_iter()
        .flatten()
        .map(|secret| secret.expose_secret().to_string())
        .collect();
        Self::new(&config.guard.patterns, own)
    }

    /// `text` with every secret replaced, and the kinds found (in order). Pure: no counting.
    pub fn scan<'a>(&self, text: &'a str) -> (Cow<'a, str>, Vec<String>) {
        let mut hits = Vec::new();
        let mut out: Cow<'a, str> = Cow::Borrowed(text);
        if let Some(own) = &self.own {
            if own.is_match(text) {
                let mut dst = String::with_capacity(text.len());
                own.replace_all_with(text, &mut dst, |m, _, d| {
                    d.push_str(&marker("chime_secret", m.len()));
                    hits.push("chime_secret".to_string());
                    true
                });
                out = Cow::Owned(dst);
            }
        }
        let matched = self.prefilter.matches(out.as_ref());
        if !matched.matched_any() {
            return (out, hits);
        }
        let candidates: Vec<bool> = (0..self.rules.len()).map(|i| matched.matched(i)).collect();
        if candidates[self.aws_id_rule] {
            if let Some(paired) = self.pair_aws_secrets(out.as_ref(), &mut hits) {
                out = Cow::Owned(paired);
            }
        }
        for (rule, _) in self
            .rules
            .iter()
            .zip(&candidates)
            .filter(|(_, &candidate)| candidate)
        {
            if let Some(replaced) = replace(rule, out.as_ref(), &mut hits) {
                out = Cow::Owned(replaced);
            }
        }
        (out, hits)
    }

    /// [`Guard::scan`], counting and logging each hit (never the secret) as found at `place`.
    pub fn redact<'a>(&self, text: &'a str, place: &str) -> Cow<'a, str> {
        let (out, hits) = self.scan(text);
        if !hits.is_empty() {
            let mut counts = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
            for kind in &hits {
                *counts.entry(kind.clone()).or_default() += 1;
                tracing::warn!(kind = %kind, place, rules_version = rules::RULES_VERSION, "redacted a secret");
            }
        }
        out
    }

    /// Redacts every string in a JSON value (not its keys); returns how many strings changed.
    pub fn redact_json(&self, v: &mut serde_json::Value, place: &str) -> usize {
        match v {
            serde_json::Value::String(s) => match self.redact(s, place) {
                Cow::Owned(new) => {
                    *s = new;
                    1
                }
                Cow::Borrowed(_) => 0,
            },
            serde_json::Value::Array(items) => {
                items.iter_mut().map(|i| self.redact_json(i, place)).sum()
            }
            serde_json::Value::Object(map) => {
                map.values_mut().map(|i| self.redact_json(i, place)).sum()
            }
            _ => 0,
        }
    }

    /// A bare 40-character key within a short window after an access key id is that id's secret
    /// key. Runs before the rules, which then redact the id itself.
    fn pair_aws_secrets(&self, text: &str, hits: &mut Vec<String>) -> Option<String> {
        let mut out = String::with_capacity(text.len());
        let mut done = 0;
        for id in self.aws_id.find_iter(text) {
            let from = id.end().max(done);
            let mut to = (from + rules::AWS_PAIR_WINDOW).min(text.len());
            while !text.is_char_boundary(to) {
                to -= 1;
            }
            if from >= to {
                continue;
            }
            for c in self.aws_bare.captures_iter(&text[from..to]) {
                let Some(key) = c.get(1) else { continue };
                if !key.as_str().bytes().any(|b| b.is_ascii_digit()) {
                    continue;
                }
                out.push_str(&text[done..from + key.start()]);
                out.push_str(&marker("aws_secret_key", key.len()));
                hits.push("aws_secret_key".into());
                done = from + key.end();
            }
        }
        (done > 0).then(|| {
            out.push_str(&text[done..]);
            out
        })
    }
}

/// Replaces `rule`'s hits in `text`; None when there are none.
fn replace(rule: &Compiled, text: &str, hits: &mut Vec<String>) -> Option<String> {
    let mut out = String::new();
    let mut done = 0;
    for c in rule.regex.captures_iter(text) {
        let Some(secret) = c.get(rule.group) else {
            continue;
        };
        if rule.check.is_some_and(|check| !check(secret.as_str())) {
            continue;
        }
        if secret.start() < done {
            continue;
        }
        out.push_str(&text[done..secret.start()]);
        out.push_str(&marker(&rule.kind, secret.len()));
        hits.push(rule.kind.clone());
        done = secret.end();
    }
    (done > 0).then(|| {
        out.push_str(&text[done..]);
        out
    })
}

/// `[redacted: KIND]`, or, when that is longer than the `len` bytes it replaces, `[redacted]`,
/// or asterisks: never longer than the secret.
fn marker(kind: &str, len: usize) -> String {
    let full = format!("[redacted: {kind}]");
    if full.len() <= len {
        full
    } else if len >= "[redacted]".len() {
        "[redacted]".into()
    } else {
        "*".repeat(len)
    }
}

/// A custom pattern's name must be usable in the marker; its regex must compile and not match
/// the empty string (which would redact nothing and everything).
pub fn check_custom(p: &CustomPattern) -> Result<(), String> {
    let name_ok = !p.name.is_empty()
        && p.name.len() <= 40
        && p.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !name_ok {
        return Err(format!(
            "[[guard.patterns]] name {:?} must be 1 to 40 letters, digits or _",
            p.name
        ));
    }
    match Regex::new(&p.regex) {
        Ok(r) if r.is_match("") => Err(format!(
            "[[guard.patterns]] {}: the regex matches the empty string",
            p.name
        )),
        Ok(_) => Ok(()),
        Err(e) => Err(format!("[[guard.patterns]] {}: {e}", p.name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(&[], vec!["xoxb-own-secret-value".into(), "short".into()]).unwrap()
    }

    #[test]
    fn a_cut_private_key_takes_only_its_own_lines() {
        let text =
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\nAAAA+/bb\n```\nthe jwt below\n";
        let (out, hits) = guard().scan(text);
        assert_eq!(out, "[redacted: private_key]\n```\nthe jwt below\n");
        assert_eq!(hits, ["private_key"]);
    }

    #[test]
    fn markers_never_grow_the_text() {
        assert_eq!(marker("github_token", 40), "[redacted: github_token]");
        assert_eq!(marker("authorization", 12), "[redacted]");
        assert_eq!(marker("url_password", 3), "***");
    }

    #[test]
    fn own_secrets_by_value_and_ordinary_text_untouched() {
        let g = guard();
        let (out, hits) = g.scan("token is xoxb-own-secret-value, short stays");
        assert!(!out.contains("own-secret"), "{out}");
        assert!(out.contains("short stays"));
        assert!(
            hits.contains(&"chime_secret".to_string()) || hits.contains(&"slack_token".to_string())
        );
        let plain = "The retry client drops the last chunk on timeout; see PR 42.";
        assert!(matches!(g.scan(plain).0, Cow::Borrowed(_)));
    }

    #[test]
    fn custom_patterns_are_checked() {
        let bad = |name: &str, regex: &str| {
            check_custom(&CustomPattern {
                name: name.into(),
                regex: regex.into(),
            })
        };
        assert!(bad("acme_token", "acme_[a-z0-9]{32}").is_ok());
        assert!(bad("acme token", "x").is_err());
        assert!(bad("a", "(").is_err());
        assert!(bad("a", "x*").is_err());
        let g = Guard::new(
            &[CustomPattern {
                name: "acme_token".into(),
                regex: "acme_[a-z0-9]{32}".into(),
            }],
            vec![],
        )
        .unwrap();
        let text = format!("use acme_{}", "a1".repeat(16));
        let (out, hits) = g.scan(&text);
        assert_eq!(out, "use [redacted: acme_token]");
        assert_eq!(hits, ["acme_token"]);
    }
}
