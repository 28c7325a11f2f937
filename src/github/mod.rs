//! GitHub's webhook: merges, closes and CI results of the pull requests Chime's turns opened.
//! `POST /github/webhook` verifies `X-Hub-Signature-256` on the raw body (HMAC-SHA256 with
//! `GITHUB_WEBHOOK_SECRET`), turns what matters into Chime's own event, stores it in the inbox
//! (deduplicated on `X-GitHub-Delivery`) and answers. Everything else is acknowledged and dropped.

pub mod publish;

use crate::event::{Event, PullRequestChange, PullRequestEvent};
use crate::ids::{now_ms, RepoName};
use crate::queue::inbox::{Accepted, InboxWriter};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use secrecy::SecretString;
use serde_json::Value;
use std::sync::Arc;

pub struct GithubIngress {
    pub secret: Option<SecretString>,
    pub inbox: InboxWriter,
}

pub fn routes(state: Arc<GithubIngress>) -> Router {
    Router::new()
        .route("/github/webhook", post(webhook))
        .with_state(state)
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`; compared
/// in constant time.
pub fn verify(secret: &SecretString, signature: Option<&str>, body: &[u8]) -> bool {
    signature
        .and_then(|s| s.trim().strip_prefix("sha256="))
        .is_some_and(|hex| crate::signing::body_hmac_matches(secret, hex, body))
}

/// `X-Hub-Signature-256` for a body: for tests and local tools.
pub fn sign(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", crate::signing::body_hmac(secret, body))
}

/// Why a signed delivery is refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("the body is not JSON: {0}")]
    Json(String),
    #[error("missing or invalid field {0}")]
    Shape(&'static str),
}

/// What a delivery means for Chime: Ok(None) for events it does not follow.
pub fn parse(event: &str, body: &[u8]) -> Result<Option<PullRequestEvent>, Refusal> {
    let v: Value = serde_json::from_slice(body).map_err(|e| Refusal::Json(e.to_string()))?;
    let repo = || {
        v["repository"]["full_name"]
            .as_str()
            .and_then(RepoName::parse)
            .ok_or(Refusal::Shape("repository.full_name"))
    };
    let number = |n: &Value| {
        n.as_i64()
            .filter(|n| (1..=i64::from(u32::MAX)).contains(n))
            .ok_or(Refusal::Shape("number"))
    };
    let change = match (event, v["action"].as_str()) {
        ("pull_request", Some("closed")) => {
            let pr = &v["pull_request"];
            let change = if pr["merged"] == true {
                PullRequestChange::Merged
            } else {
                PullRequestChange::Closed
            };
            return Ok(Some(PullRequestEvent {
                repo: repo()?,
                numbers: vec![number(&pr["number"])?],
                change,
                at_ms: now_ms(),
            }));
        }
        ("check_suite", Some("completed")) => &v["check_suite"],
        // check_run: one per job, so the suite's conclusion is the one Chime reports; ping,
        // opened, synchronize and the rest change nothing Chime shows.
        _ => return Ok(None),
    };
    let conclusion = change["conclusion"]
        .as_str()
        .filter(|c| c.len() <= 40 && c.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .ok_or(Refusal::Shape("check_suite.conclusion"))?;
    let numbers = change["pull_requests"]
        .as_array()
        .map(|prs| {
            prs.iter()
                .map(|p| number(&p["number"]))
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    if numbers.is_empty() {
        // A suite on a branch without a pull request (or a fork's): nothing to report.
        return Ok(None);
    }
    Ok(Some(PullRequestEvent {
        repo: repo()?,
        numbers,
        change: PullRequestChange::Checks {
            conclusion: conclusion.to_string(),
        },
        at_ms: now_ms(),
    }))
}

fn reply(status: StatusCode, text: &str) -> (StatusCode, String) {
    (status, text.to_string())
}

async fn webhook(
    State(state): State<Arc<GithubIngress>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let Some(secret) = &state.secret else {
        return reply(
            StatusCode::UNAUTHORIZED,
            "GitHub webhooks are not configured here: GITHUB_WEBHOOK_SECRET is not set",
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !verify(secret, header("x-hub-signature-256"), &body) {
        crate::metrics::event_rejected("github", "signature");
        tracing::warn!("refused a GitHub webhook with a bad signature");
        return reply(
            StatusCode::UNAUTHORIZED,
            "bad or missing X-Hub-Signature-256",
        );
    }
    let Some(delivery) = header("x-github-delivery").filter(|d| {
        !d.is_empty() && d.len() <= 100 && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "missing or invalid X-GitHub-Delivery",
        );
    };
    let event = header("x-github-event").unwrap_or_default();
    let parsed = match parse(event, &body) {
        Ok(Some(p)) => p,
        Ok(None) => return reply(StatusCode::OK, "ignored"),
        Err(e) => {
            tracing::warn!(event, reason = %e, "refused a signed but malformed GitHub webhook");
            return reply(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    match state
        .inbox
        .accept("github", delivery, &Event::PullRequest(parsed))
        .await
    {
        Ok(Accepted::New) => reply(StatusCode::OK, "accepted"),
        // A replay (or a manual redelivery): stored once, handled once, and refused as a replay.
        Ok(Accepted::Duplicate) => {
            tracing::warn!(
                delivery,
                "refused a GitHub delivery already received (replay?)"
            );
            reply(
                StatusCode::UNAUTHORIZED,
                "this delivery was already received (replay)",
            )
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not store a GitHub webhook");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not store it; redeliver later",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_test_vector_and_forgeries() {
        // GitHub's documented example.
        let secret = SecretString::from("It's a Secret to Everybody");
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(verify(&secret, Some(good), b"Hello, World!"));
        assert_eq!(sign("It's a Secret to Everybody", b"Hello, World!"), good);
        for bad in [
            None,
            Some(""),
            Some("sha256="),
            Some("sha1=abc"),
            Some("sha256=zz"),
            Some(&good[..20]),
        ] {
            assert!(!verify(&secret, bad, b"Hello, World!"), "{bad:?}");
        }
        assert!(!verify(&secret, Some(good), b"Hello, World?"));
    }

    #[test]
    fn deliveries_parse_to_chimes_events_and_hostile_ones_are_refused() {
        let merged = br#"{"action":"closed","number":7,"pull_request":{"number":7,"merged":true},"repository":{"full_name":"acme/api"}}"#;
        let e = parse("pull_request", merged).unwrap().unwrap();
        assert_eq!(
            (e.repo.as_str(), e.numbers.clone(), e.change),
            ("acme/api", vec![7], PullRequestChange::Merged)
        );
        let suite = br#"{"action":"completed","check_suite":{"conclusion":"failure","head_sha":"abc","pull_requests":[{"number":7},{"number":8}]},"repository":{"full_name":"acme/api"}}"#;
        let e = parse("check_suite", suite).unwrap().unwrap();
        assert_eq!(e.numbers, vec![7, 8]);
        assert_eq!(
            e.change,
            PullRequestChange::Checks {
                conclusion: "failure".into()
            }
        );
        assert_eq!(parse("ping", br#"{"zen":"x"}"#).unwrap(), None);
        assert_eq!(
            parse("pull_request", br#"{"action":"opened"}"#).unwrap(),
            None
        );
        assert_eq!(parse("check_suite", br#"{"action":"completed","check_suite":{"conclusion":"success","pull_requests":[]},"repository":{"full_name":"acme/api"}}"#).unwrap(), None);
        for (event, body) in [
            ("pull_request", &b"not json"[..]),
            ("pull_request", br#"{"action":"closed","pull_request":{"number":-1,"merged":true},"repository":{"full_name":"acme/api"}}"#),
            ("pull_request", br#"{"action":"closed","pull_request":{"number":7},"repository":{"full_name":"../etc"}}"#),
            ("check_suite", br#"{"action":"completed","check_suite":{"conclusion":"<!channel>","pull_requests":[{"number":7}]},"repository":{"full_name":"acme/api"}}"#),
            ("check_suite", br#"{"action":"completed","check_suite":{"conclusion":"success","pull_requests":[{"number":"7"}]},"repository":{"full_name":"acme/api"}}"#),
        ] {
            assert!(parse(event, body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
