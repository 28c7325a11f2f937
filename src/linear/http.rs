//! Linear's HTTP endpoints: `POST /linear/webhook` (verify the signature and the timestamp on the
//! raw body, turn the payload into Chime's event, store it, answer at once), and the OAuth
//! install: `GET /linear/install` sends an admin to Linear's consent screen (`actor=app`), and
//! `GET /linear/oauth/callback` trades the code for the workspace's token and stores it.

use super::api::LinearApi;
use super::{events, graphql, store, verify};
use crate::binding::Binding;
use crate::db::Db;
use crate::event::{Event, Mention, StopRequested};
use crate::ids::{now_ms, OrgId};
use crate::queue::inbox::{Accepted, InboxWriter};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::sync::Arc;

/// Scopes Chime asks for: read and write, and to be assignable and mentionable as an agent.
pub const SCOPES: &str = "read,write,app:assignable,app:mentionable";
/// How long an install link stays valid.
const STATE_TTL_MS: i64 = 15 * 60 * 1000;

pub struct LinearIngress {
    pub secret: SecretString,
    pub inbox: InboxWriter,
    pub db: Db,
    pub api: Arc<LinearApi>,
    pub client_id: String,
    pub client_secret: Option<SecretString>,
    pub redirect_url: String,
    /// `LINEAR_ACCESS_TOKEN`, for workspaces without an OAuth install.
    pub fallback_token: Option<SecretString>,
    /// How people @-mention Chime in a comment (`linear.mention_name`).
    pub mention_name: String,
    /// The app user Chime acts as, per workspace, once known.
    pub app_users: std::sync::Mutex<std::collections::HashMap<OrgId, String>>,
}

impl LinearIngress {
    /// The app user Chime acts as in `org`: from its OAuth install, else asked of Linear once.
    async fn app_user(&self, org: &OrgId) -> anyhow::Result<Option<String>> {
        if let Some(u) = self.app_users.lock().ok().and_then(|m| m.get(org).cloned()) {
            return Ok(Some(u));
        }
        let mut user = store::app_user(&self.db, org).await?;
        if user.is_none() {
            if let Some(token) = store::token(&self.db, org, self.fallback_token.as_ref()).await? {
                let v = self
                    .api
                    .call(&token, graphql::VIEWER, serde_json::json!({}))
                    .await?;
                user = v["viewer"]["id"].as_str().map(str::to_string);
            }
        }
        if let (Some(u), Ok(mut m)) = (&user, self.app_users.lock()) {
            m.insert(org.clone(), u.clone());
        }
        Ok(user)
    }

    /// What a delivery is for Chime; None when it is not Chime's to act on.
    async fn relevant(&self, parsed: events::Parsed) -> anyhow::Result<Option<events::Inbound>> {
        match parsed {
            events::Parsed::Session(inbound) => {
                if let Event::Mention(Mention {
                    binding: Binding::Linear { org, .. },
                    ..
                })
                | Event::StopRequested(StopRequested {
                    binding: Binding::Linear { org, .. },
                    ..
                }) = &inbound.event
                {
                    store::mark_agent_org(&self.db, org).await?;
                }
                Ok(Some(inbound))
            }
            events::Parsed::Plain(plain) => {
                // With agent sessions, the same mention or assignment also comes as a session.
                if store::is_agent_org(&self.db, &plain.org).await? {
                    return Ok(None);
                }
                let Some(me) = self.app_user(&plain.org).await? else {
                    tracing::warn!(org = %plain.org, "cannot tell which Linear user Chime is here (no token); ignoring an issue event");
                    return Ok(None);
                };
                Ok(plain.for_chime(&me, &self.mention_name))
            }
        }
    }
}

pub fn routes(state: Arc<LinearIngress>) -> Router {
    Router::new()
        .route("/linear/webhook", post(webhook))
        .route("/linear/install", get(install))
        .route("/linear/oauth/callback", get(callback))
        .with_state(state)
}

fn reply(status: StatusCode, text: &str) -> Response {
    (status, text.to_string()).into_response()
}

async fn webhook(
    State(state): State<Arc<LinearIngress>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let v = match verify::verify(&state.secret, header("linear-signature"), &body, now_ms()) {
        Ok(v) => v,
        Err(refusal) => {
            let reason = match refusal {
                verify::Refusal::Stale => "stale",
                _ => "signature",
            };
            crate::metrics::event_rejected("linear", reason);
            tracing::warn!(reason = %refusal, "refused a Linear webhook");
            return reply(StatusCode::UNAUTHORIZED, &refusal.to_string());
        }
    };
    let Some(delivery) = header("linear-delivery").filter(|d| {
        !d.is_empty() && d.len() <= 100 && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    }) else {
        return reply(
            StatusCode::BAD_REQUEST,
            "missing or invalid Linear-Delivery",
        );
    };
    let parsed = match events::parse(&v) {
        Ok(Some(p)) => p,
        Ok(None) => {
            tracing::debug!(
                kind = v["type"].as_str().unwrap_or("?"),
                "ignored a Linear webhook"
            );
            return reply(StatusCode::OK, "ignored");
        }
        Err(e) => {
            tracing::warn!(delivery, reason = %e, "refused a signed but malformed Linear webhook");
            return reply(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let inbound = match state.relevant(parsed).await {
        Ok(Some(i)) => i,
        Ok(None) => return reply(StatusCode::OK, "ignored"),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not judge a Linear webhook");
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not handle it now; redeliver later",
            );
        }
    };
    if let Err(e) = store::save_people(&state.db, &events::people(&v)).await {
        tracing::warn!(error = %format!("{e:#}"), "could not record Linear users; going on");
    }
    if let Some(thread) = &inbound.thread {
        if let Err(e) = store::save_thread(&state.db, thread).await {
            tracing::error!(error = %format!("{e:#}"), "could not record a Linear session");
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not store it; redeliver later",
            );
        }
    }
    match state.inbox.accept("linear", delivery, &inbound.event).await {
        Ok(Accepted::New) => reply(StatusCode::OK, "accepted"),
        Ok(Accepted::Duplicate) => {
            // Linear redelivers what it thinks failed; a replay inside the timestamp window
            // lands here too. Either way it was handled once, and nothing happens again.
            tracing::warn!(delivery, "a Linear delivery already received; ignored");
            reply(StatusCode::OK, "already received")
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not store a Linear webhook");
            reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not store it; redeliver later",
            )
        }
    }
}

/// The OAuth `state`: when it was made and a MAC over that, so a callback Chime did not start
/// (a forged link, a replayed old one) is refused.
fn make_state(key: &SecretString, at_ms: i64) -> String {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let payload = format!("{at_ms}.{nonce}");
    let mac = crate::signing::body_hmac(key.expose_secret(), payload.as_bytes());
    format!("{payload}.{mac}")
}

fn check_state(key: &SecretString, state: &str, now: i64) -> bool {
    let mut parts = state.splitn(3, '.');
    let (Some(at), Some(nonce), Some(mac)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(at_ms) = at.parse::<i64>() else {
        return false;
    };
    let payload = format!("{at}.{nonce}");
    crate::signing::body_hmac_matches(key, mac, payload.as_bytes())
        && (0..=STATE_TTL_MS).contains(&(now - at_ms))
}

async fn install(State(state): State<Arc<LinearIngress>>) -> Response {
    let (Some(secret), false, false) = (
        &state.client_secret,
        state.client_id.is_empty(),
        state.redirect_url.is_empty(),
    ) else {
        return reply(
            StatusCode::NOT_FOUND,
            "OAuth installs are not configured: set linear.client_id, linear.redirect_url and LINEAR_CLIENT_SECRET",
        );
    };
    let query = serde_urlencoded::to_string([
        ("client_id", state.client_id.as_str()),
        ("redirect_uri", state.redirect_url.as_str()),
        ("response_type", "code"),
        ("scope", SCOPES),
        ("actor", "app"),
        ("state", &make_state(secret, now_ms())),
    ])
    .unwrap_or_default();
    let to = format!("https://linear.app/oauth/authorize?{query}");
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(State(state): State<Arc<LinearIngress>>, Query(q): Query<Callback>) -> Response {
    let Some(secret) = &state.client_secret else {
        return reply(
            StatusCode::NOT_FOUND,
            "OAuth installs are not configured: LINEAR_CLIENT_SECRET is not set",
        );
    };
    if let Some(e) = q.error {
        let e = crate::templates::one_line(&e, 100);
        return reply(
            StatusCode::BAD_REQUEST,
            &format!("Linear did not install Chime: {e}"),
        );
    }
    if !q
        .state
        .as_deref()
        .is_some_and(|s| check_state(secret, s, now_ms()))
    {
        tracing::warn!("refused a Linear OAuth callback with a bad or expired state");
        return reply(
            StatusCode::BAD_REQUEST,
            "this install link is invalid or expired; start again from /linear/install",
        );
    }
    let Some(code) = q.code.filter(|c| !c.is_empty() && c.len() <= 500) else {
        return reply(StatusCode::BAD_REQUEST, "missing code");
    };
    let token = match state
        .api
        .exchange_code(&state.client_id, secret, &state.redirect_url, &code)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "Linear OAuth code exchange failed");
            return reply(StatusCode::BAD_GATEWAY, &format!("{e:#}"));
        }
    };
    let viewer = match state
        .api
        .call(&token, graphql::VIEWER, serde_json::json!({}))
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, "Linear viewer query failed after install");
            return reply(
                StatusCode::BAD_GATEWAY,
                &format!("could not ask Linear who Chime is: {e}"),
            );
        }
    };
    let org = viewer["viewer"]["organization"]["id"].as_str().filter(|o| {
        !o.is_empty() && o.len() <= 64 && o.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    });
    let Some(org) = org else {
        return reply(
            StatusCode::BAD_GATEWAY,
            "Linear did not say which workspace this is",
        );
    };
    let app_user = viewer["viewer"]["id"].as_str();
    if let Err(e) =
        store::save_org(&state.db, &OrgId::new(org), token.expose_secret(), app_user).await
    {
        tracing::error!(error = %format!("{e:#}"), "could not store a Linear install");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "could not store the install; try again",
        );
    }
    let name = crate::templates::one_line(
        viewer["viewer"]["organization"]["name"]
            .as_str()
            .unwrap_or(org),
        100,
    );
    tracing::info!(org, "Chime installed in a Linear workspace");
    reply(
        StatusCode::OK,
        &format!("Chime is installed in {name}. You can close this page."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_state_is_bound_to_the_key_and_expires() {
        let key = SecretString::from("k");
        let s = make_state(&key, 1_000_000);
        assert!(check_state(&key, &s, 1_000_000 + 60_000));
        assert!(!check_state(&key, &s, 1_000_000 + STATE_TTL_MS + 1));
        assert!(!check_state(&key, &s, 999_999));
        assert!(!check_state(&SecretString::from("other"), &s, 1_000_001));
        for bad in ["", "1.2", "x.y.z", &s.replace('.', "")] {
            assert!(!check_state(&key, bad, 1_000_001), "{bad:?}");
        }
    }
}
