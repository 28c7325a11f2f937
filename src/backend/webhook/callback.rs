//! `POST /backends/webhook/callback`: a `webhook` backend's service reports on a turn. The raw
//! body's signature and timestamp are checked first (401 when they do not hold, or when
//! `CHIME_WEBHOOK_BACKEND_SECRET` is not set), then the report is parsed (400 with the reason) and
//! stored in the inbox, once per callback `id`.

use super::VERSION;
use crate::event::{BackendUpdate, Event};
use crate::ids::{now_ms, TaskId};
use crate::queue::inbox::{Accepted, InboxWriter};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use secrecy::SecretString;
use serde::Deserialize;
use std::sync::Arc;

pub struct CallbackIngress {
    pub secret: Option<SecretString>,
    pub inbox: InboxWriter,
}

pub fn routes(state: Arc<CallbackIngress>) -> Router {
    Router::new()
        .route("/backends/webhook/callback", post(callback))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Callback {
    version: u64,
    id: String,
    task_id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    pr_url: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    remote: Option<String>,
}

fn id_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A callback's body as Chime's event and its delivery id, or why not.
pub fn parse(body: &[u8]) -> Result<(String, BackendUpdate), String> {
    let c: Callback = serde_json::from_slice(body).map_err(|e| format!("not a callback: {e}"))?;
    if c.version != VERSION {
        return Err(format!(
            "version {} is not supported (this Chime speaks {VERSION})",
            c.version
        ));
    }
    if !id_like(&c.id) || !id_like(&c.task_id) {
        return Err("id and task_id must be 1-128 letters, digits, '-', '_' or '.'".into());
    }
    if !matches!(c.kind.as_str(), "progress" | "result" | "error") {
        return Err(format!(
            "type {:?} is not progress, result or error",
            c.kind.chars().take(40).collect::<String>()
        ));
    }
    if c.text.chars().count() > 100_000 {
        return Err("text is longer than 100000 characters".into());
    }
    let short = |v: Option<String>| v.filter(|s| s.len() <= 500);
    Ok((
        c.id,
        BackendUpdate {
            task: TaskId::new(c.task_id),
            kind: c.kind,
            text: c.text,
            pr_url: short(c.pr_url),
            branch: short(c.branch),
            remote: c.remote.filter(|r| id_like(r)),
        },
    ))
}

async fn callback(
    State(state): State<Arc<CallbackIngress>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let Some(secret) = &state.secret else {
        return (
            StatusCode::UNAUTHORIZED,
            "webhook backend callbacks are not configured here: CHIME_WEBHOOK_BACKEND_SECRET is not set".into(),
        );
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(e) = crate::signing::verify(
        secret,
        header("x-chime-signature"),
        header("x-chime-request-timestamp"),
        &body,
        now_ms() / 1000,
    ) {
        tracing::warn!(reason = %e, "refused a webhook backend callback");
        return (StatusCode::UNAUTHORIZED, e.to_string());
    }
    let (id, update) = match parse(&body) {
        Ok(p) => p,
        Err(why) => {
            tracing::warn!(reason = %why, "refused a signed but malformed webhook backend callback");
            return (StatusCode::BAD_REQUEST, why);
        }
    };
    match state
        .inbox
        .accept("webhook", &id, &Event::BackendUpdate(update))
        .await
    {
        Ok(Accepted::New) => (StatusCode::OK, "accepted".into()),
        // Taken once; the same id again is a replay.
        Ok(Accepted::Duplicate) => (
            StatusCode::UNAUTHORIZED,
            "this callback was already received (replay)".into(),
        ),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not store a webhook backend callback");
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

    #[test]
    fn callbacks_parse_and_hostile_ones_are_refused() {
        let (id, u) = parse(br#"{"version":1,"id":"cb-1","task_id":"t1","type":"result","text":"done","pr_url":"https://github.com/a/b/pull/1","remote":"svc-9"}"#).unwrap();
        assert_eq!(id, "cb-1");
        assert_eq!(
            (u.kind.as_str(), u.text.as_str(), u.remote.as_deref()),
            ("result", "done", Some("svc-9"))
        );
        for bad in [
            &b"{}"[..],
            b"not json",
            br#"{"version":2,"id":"a","task_id":"t","type":"result"}"#,
            br#"{"version":1,"id":"a/b","task_id":"t","type":"result"}"#,
            br#"{"version":1,"id":"a","task_id":"","type":"result"}"#,
            br#"{"version":1,"id":"a","task_id":"t","type":"shell"}"#,
            br#"{"version":1,"id":"a","task_id":"t","type":"result","extra":1}"#,
            br#"{"version":1,"id":"a","task_id":"t","type":"result","text":7}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
