//! Slack's HTTP endpoints. Each request is verified on its raw body, translated, written to the
//! inbox and answered; nothing else happens before the ack.

use super::events::{parse_event_body, parse_interaction_body, Inbound, ParseError};
use super::verify::verify;
use crate::ids::now_ms;
use crate::inbox::{Accepted, InboxWriter};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use secrecy::SecretString;
use std::sync::{Arc, RwLock};

pub struct SlackIngress {
    pub signing_secret: Option<SecretString>,
    pub inbox: InboxWriter,
    pub allowed_workspaces: Vec<String>,
    /// The bot's user id, once known (config, or auth.test at startup).
    pub bot_user_id: RwLock<Option<String>>,
}

pub fn routes(state: Arc<SlackIngress>) -> Router {
    Router::new()
        .route("/slack/events", post(events))
        .route("/slack/interactions", post(interactions))
        .with_state(state)
}

fn reply(status: StatusCode, reason: &str) -> Response {
    (status, reason.to_string()).into_response()
}

/// Verifies the signature; returns the response to send when it does not hold.
fn check_signature(
    state: &SlackIngress,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Box<Response>> {
    let Some(secret) = &state.signing_secret else {
        return Err(Box::new(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "Slack is not configured here: SLACK_SIGNING_SECRET is not set",
        )));
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match verify(
        secret,
        header("x-slack-signature"),
        header("x-slack-request-timestamp"),
        body,
        now_ms() / 1000,
    ) {
        Ok(()) => Ok(()),
        Err(e) => {
            tracing::warn!(reason = %e, "refused a Slack request");
            Err(Box::new(reply(StatusCode::UNAUTHORIZED, &e.to_string())))
        }
    }
}

async fn events(
    State(state): State<Arc<SlackIngress>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_signature(&state, &headers, &body) {
        return *r;
    }
    let own = state.bot_user_id.read().ok().and_then(|g| g.clone());
    let parsed = parse_event_body(&body, own.as_deref());
    accept(&state, &headers, parsed).await
}

async fn interactions(
    State(state): State<Arc<SlackIngress>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_signature(&state, &headers, &body) {
        return *r;
    }
    accept(&state, &headers, parse_interaction_body(&body)).await
}

#[tracing::instrument(skip_all)]
async fn accept(
    state: &SlackIngress,
    headers: &HeaderMap,
    parsed: Result<Inbound, ParseError>,
) -> Response {
    let inbound = match parsed {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(reason = %e, "refused a signed but malformed Slack request");
            return reply(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    match inbound {
        Inbound::UrlVerification(challenge) => (
            [(axum::http::header::CONTENT_TYPE, "text/plain")],
            challenge,
        )
            .into_response(),
        Inbound::Ignored(why) => {
            tracing::debug!(reason = why, "ignored a Slack request");
            reply(StatusCode::OK, "")
        }
        Inbound::Event {
            delivery_id,
            team,
            event,
        } => {
            if !state.allowed_workspaces.is_empty()
                && !state.allowed_workspaces.iter().any(|t| t == team.as_str())
            {
                tracing::warn!(team = %team, "refused an event from a workspace outside slack.allowed_workspaces");
                let mut r = reply(
                    StatusCode::FORBIDDEN,
                    "this workspace is not allowed to use this Chime",
                );
                r.headers_mut()
                    .insert("x-slack-no-retry", HeaderValue::from_static("1"));
                return r;
            }
            // Retry headers are read only now that the request is known to come from Slack.
            let retry = headers
                .get("x-slack-retry-num")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("0");
            match state.inbox.accept("slack", &delivery_id, &event).await {
                Ok(Accepted::New) => {
                    tracing::info!(delivery_id = %delivery_id, team = %team, retry, "accepted Slack event");
                    reply(StatusCode::OK, "")
                }
                Ok(Accepted::Duplicate) => {
                    tracing::info!(delivery_id = %delivery_id, retry, "duplicate Slack delivery ignored");
                    reply(StatusCode::OK, "")
                }
                Err(e) => {
                    // Slack retries a failed delivery, so nothing is lost by refusing here.
                    tracing::error!(delivery_id = %delivery_id, error = %format!("{e:#}"), "could not store a Slack event");
                    reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "could not store the event; Slack will retry",
                    )
                }
            }
        }
    }
}
