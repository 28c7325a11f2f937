//! `POST /backends/cursor/webhook`: the signed `statusChange` webhook of Cursor's v0 API, for
//! teams still on it. `X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the raw body>` with
//! `CURSOR_WEBHOOK_SECRET` (401 when it does not hold, or the secret is not set); stored once per
//! `X-Webhook-ID` (the same id again is a replay: 401). A finished or failed agent's status
//! reaches the turn running it, which ends without waiting for its next poll.

use crate::event::{Event, RemoteStatus};
use crate::queue::inbox::{Accepted, InboxWriter};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use secrecy::SecretString;
use serde_json::Value;
use std::sync::Arc;

pub struct CursorWebhook {
    pub secret: Option<SecretString>,
    pub inbox: InboxWriter,
}

pub fn routes(state: Arc<CursorWebhook>) -> Router {
    Router::new()
        .route("/backends/cursor/webhook", post(webhook))
        .with_state(state)
}

/// Whether `signature` is `sha256=` and the HMAC-SHA256 of `body`; compared in constant time.
pub fn verify(secret: &SecretString, signature: Option<&str>, body: &[u8]) -> bool {
    signature
        .and_then(|s| s.trim().strip_prefix("sha256="))
        .is_some_and(|hex| crate::signing::body_hmac_matches(secret, hex, body))
}

/// A `statusChange` body as Chime's event; Ok(None) for statuses that end nothing.
pub fn parse(body: &[u8]) -> Result<Option<RemoteStatus>, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if v["event"] != "statusChange" {
        return Ok(None);
    }
    let id = v["id"]
        .as_str()
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 200
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        })
        .ok_or("missing or invalid id")?;
    let summary = v["summary"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(20_000)
        .collect::<String>();
    let (kind, text) = match v["status"].as_str().unwrap_or("") {
        "FINISHED" => (
            "result",
            if summary.is_empty() {
                "Cursor's agent finished.".into()
            } else {
                summary
            },
        ),
        "ERROR" => (
            "error",
            format!(
                "Cursor's agent stopped with an error{}",
                if summary.is_empty() {
                    String::new()
                } else {
                    format!(": {summary}")
                }
            ),
        ),
        _ => return Ok(None),
    };
    let short = |v: &Value| v.as_str().filter(|s| s.len() <= 500).map(str::to_string);
    Ok(Some(RemoteStatus {
        remote: id.to_string(),
        kind: kind.into(),
        text,
        pr_url: short(&v["target"]["prUrl"]),
        branch: short(&v["target"]["branchName"]),
    }))
}

async fn webhook(
    State(state): State<Arc<CursorWebhook>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let Some(secret) = &state.secret else {
        return (
            StatusCode::UNAUTHORIZED,
            "Cursor webhooks are not configured here: CURSOR_WEBHOOK_SECRET is not set".into(),
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if !verify(secret, header("x-webhook-signature"), &body) {
        tracing::warn!("refused a Cursor webhook with a bad signature");
        return (
            StatusCode::UNAUTHORIZED,
            "bad or missing X-Webhook-Signature".into(),
        );
    }
    let Some(id) = header("x-webhook-id").filter(|d| {
        !d.is_empty()
            && d.len() <= 200
            && d.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    }) else {
        return (
            StatusCode::BAD_REQUEST,
            "missing or invalid X-Webhook-ID".into(),
        );
    };
    let status = match parse(&body) {
        Ok(Some(s)) => s,
        Ok(None) => return (StatusCode::OK, "ignored".into()),
        Err(why) => return (StatusCode::BAD_REQUEST, why),
    };
    match state
        .inbox
        .accept("cursor", id, &Event::RemoteStatus(status))
        .await
    {
        Ok(Accepted::New) => (StatusCode::OK, "accepted".into()),
        Ok(Accepted::Duplicate) => (
            StatusCode::UNAUTHORIZED,
            "this webhook was already received (replay)".into(),
        ),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not store a Cursor webhook");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "could not store it; send it again".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use sha2::Sha256;

    #[test]
    fn status_changes_parse_and_hostile_ones_are_refused() {
        let s = parse(br#"{"event":"statusChange","timestamp":"2026-11-30T00:00:00Z","id":"bc_1","status":"FINISHED","summary":"Renamed it.","target":{"prUrl":"https://github.com/a/b/pull/2","branchName":"cursor/x"}}"#).unwrap().unwrap();
        assert_eq!(
            (s.remote.as_str(), s.kind.as_str(), s.text.as_str()),
            ("bc_1", "result", "Renamed it.")
        );
        assert_eq!(
            parse(br#"{"event":"statusChange","id":"bc_1","status":"RUNNING"}"#).unwrap(),
            None
        );
        assert_eq!(parse(br#"{"event":"other"}"#).unwrap(), None);
        for bad in [
            &b"nope"[..],
            br#"{"event":"statusChange","status":"FINISHED"}"#,
            br#"{"event":"statusChange","id":"../x","status":"ERROR"}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        let secret = SecretString::from("s3cret-s3cret-s3cret-s3cret-s3cret");
        let body = b"{}";
        let mut mac =
            Hmac::<Sha256>::new_from_slice(b"s3cret-s3cret-s3cret-s3cret-s3cret").unwrap();
        mac.update(body);
        let good = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert!(verify(&secret, Some(&good), body));
        assert!(!verify(&secret, Some(&good), b"{ }"));
        assert!(!verify(&secret, None, body));
        assert!(!verify(&secret, Some("sha256=00"), body));
    }
}
