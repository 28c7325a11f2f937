//! Slack Socket Mode: for teams whose Chime has no public URL. Chime opens WebSockets to Slack
//! (`apps.connections.open` with the app-level `xapp-` token) and Slack pushes the same Events API
//! bodies and interaction payloads over them that it would otherwise POST to `/slack/*`.
//!
//! The connections are slack-morphism's: its clients manager calls `apps.connections.open` (through
//! the same connector as the Web API client, so `SLACK_API_URL` applies), keeps
//! [`CONNECTIONS`] sockets open, pings them, and reconnects. What arrives on them is handled here,
//! through slack-morphism's raw frame hook ([`SlackSocketModeClientListener`]) rather than its
//! typed callbacks (`SlackSocketModeListenerCallbacks`), for two reasons:
//!
//! - **Fidelity.** The typed models drop fields Chime's parser reads: an `app_mention`'s `bot_id`,
//!   `subtype`, `user_team` and `source_team`, a `message`'s `user_team`/`source_team`, and a
//!   click's `container.thread_ts`, so a Slack Connect user would look internal and a bot's
//!   mention like a person's (checked against slack-morphism 2.31.1). A frame the models cannot
//!   parse at all (an action without `type`, an envelope without `accepts_response_payload`)
//!   never reaches a typed callback: the listener acknowledges it and only hands the body to its
//!   error handler, so the event would be lost. Here the raw `payload`
//!   goes to the same parsers as HTTP bodies ([`parse_event_body`], [`parse_interaction_json`]),
//!   so there is one translation path and nothing is lost between Slack and it.
//! - **Acking.** The reply to a frame is the acknowledgement. It is sent only after the inbox
//!   commit succeeded (or the delivery was a duplicate, ignored, or refused by the allowlist);
//!   when the commit fails no ack is sent, and Slack delivers the envelope again, as it retries a
//!   failed HTTP delivery. (slack-morphism's typed listener does the same: it acks after the
//!   callback returns, and after an `Err` only if its error handler answers with a 2xx status.)
//!
//! After parsing, both transports share [`SlackIngress::admit`]: the workspace allowlist, then the
//! inbox write deduplicated on the event id, so a retried envelope, or an event that arrives over
//! both Socket Mode and HTTP, makes one task.

use super::events::{
    parse_command_json, parse_event_body, parse_interaction_json, plan_command, CommandPlan,
    Inbound, ParseError,
};
use super::http::{Admitted, SlackIngress};
use crate::config::Config;
use crate::ids::now_ms;
use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde_json::Value;
use slack_morphism::clients_manager::{
    SlackSocketModeClientsManager, SlackSocketModeClientsManagerFactory,
};
use slack_morphism::listener::SlackClientEventsListenerEnvironment;
use slack_morphism::prelude::*;
use std::sync::{Arc, Weak};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Sockets kept open at once (slack-morphism's default). Slack sends each envelope over one of
/// them, so events keep arriving while another reconnects.
pub const CONNECTIONS: u32 = 2;

/// Starts Socket Mode when both `SLACK_APP_TOKEN` and `SLACK_BOT_TOKEN` are set; otherwise does
/// nothing. The task ends when `shutdown` fires.
pub fn spawn(
    tasks: &mut JoinSet<()>,
    config: &Config,
    ingress: Arc<SlackIngress>,
    shutdown: CancellationToken,
) {
    let Some(app_token) = &config.secrets.slack_app_token else {
        return;
    };
    if config.secrets.slack_bot_token.is_none() {
        tracing::warn!("SLACK_APP_TOKEN is set without SLACK_BOT_TOKEN: Socket Mode stays off");
        return;
    }
    let token = app_token.expose_secret();
    if !token.starts_with("xapp-") {
        // apps.connections.open refuses other tokens (not_allowed_token_type), and slack-morphism
        // keeps retrying it, so say what is wrong once here.
        tracing::warn!("SLACK_APP_TOKEN does not start with xapp-: Socket Mode needs an app-level token with connections:write");
    }
    let token = SlackApiToken::new(SlackApiTokenValue(token.to_string()));
    let client = Arc::new(SlackClient::new(super::api::connector(
        &config.slack.api_url,
    )));
    tasks.spawn(run(client, token, ingress, shutdown));
}

async fn run(
    client: Arc<SlackClient<super::api::Connector>>,
    token: SlackApiToken,
    ingress: Arc<SlackIngress>,
    shutdown: CancellationToken,
) {
    let env = Arc::new(SlackClientEventsListenerEnvironment::new(client.clone()));
    let manager = client.http_api.connector.new_clients_manager(env);
    let listener = Arc::new(FrameListener {
        ingress,
        manager: Arc::downgrade(&manager),
        shutdown: shutdown.clone(),
    });
    let config = SlackClientSocketModeConfig::new().with_max_connections_count(CONNECTIONS);
    if let Err(e) = manager.register_new_token(&config, token, listener).await {
        tracing::error!(error = %e, "Socket Mode could not start");
        return;
    }
    // Connects in the background (retrying apps.connections.open until it works) and returns.
    manager.start().await;
    tracing::info!(connections = CONNECTIONS, "Socket Mode started");
    shutdown.cancelled().await;
    manager.shutdown().await;
    tracing::info!("Socket Mode stopped");
}

/// One Socket Mode frame. Read leniently: a field of an unexpected type counts as absent, so an odd
/// frame is still acknowledged rather than redelivered forever. `payload` stays raw JSON.
#[derive(Debug)]
struct Frame {
    kind: Option<String>,
    envelope_id: Option<String>,
    payload: Value,
    retry_attempt: u64,
    retry_reason: Option<String>,
    /// `disconnect` frames: why Slack is closing the socket.
    reason: Option<String>,
    /// `hello` frames.
    num_connections: Option<u64>,
}

impl Frame {
    fn parse(body: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
        let Value::Object(mut obj) = v else {
            return Err("not a JSON object".into());
        };
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
        let number = |k: &str| obj.get(k).and_then(Value::as_u64);
        let mut frame = Frame {
            kind: text("type"),
            envelope_id: text("envelope_id"),
            payload: Value::Null,
            retry_attempt: number("retry_attempt").unwrap_or(0),
            retry_reason: text("retry_reason"),
            reason: text("reason"),
            num_connections: number("num_connections"),
        };
        frame.payload = obj.remove("payload").unwrap_or(Value::Null);
        Ok(frame)
    }
}

struct FrameListener {
    ingress: Arc<SlackIngress>,
    manager: Weak<dyn SlackSocketModeClientsManager + Send + Sync>,
    shutdown: CancellationToken,
}

impl FrameListener {
    async fn reconnect(&self, client_id: &SlackSocketModeWssClientId) {
        if self.shutdown.is_cancelled() {
            return;
        }
        if let Some(manager) = self.manager.upgrade() {
            manager.restart_client(client_id).await;
        }
    }
}

/// The acknowledgement frame for an envelope.
fn ack(envelope_id: &str) -> String {
    serde_json::json!({ "envelope_id": envelope_id }).to_string()
}

/// The acknowledgement frame for a slash command, with the answer only its sender sees.
fn ack_with(envelope_id: &str, text: &str) -> String {
    serde_json::json!({
        "envelope_id": envelope_id,
        "payload": { "response_type": "ephemeral", "text": text },
    })
    .to_string()
}

#[async_trait]
impl SlackSocketModeClientListener for FrameListener {
    /// Handles one text frame; the returned string, if any, is sent back on the same socket.
    async fn on_message(
        &self,
        client_id: &SlackSocketModeWssClientId,
        message_body: String,
    ) -> Option<String> {
        let connection = client_id.to_string();
        let frame = match Frame::parse(&message_body) {
            Ok(f) => f,
            Err(e) => {
                // Not a JSON object: there is no envelope id to acknowledge.
                tracing::warn!(connection, error = %e, "unreadable Socket Mode frame");
                return None;
            }
        };
        match frame.kind.as_deref() {
            Some("hello") => {
                tracing::info!(
                    connection,
                    num_connections = frame.num_connections,
                    "Socket Mode connection ready"
                );
                return None;
            }
            Some("disconnect") => {
                tracing::info!(connection, reason = ?frame.reason, "Slack asked Socket Mode to reconnect");
                self.reconnect(client_id).await;
                return None;
            }
            _ => {}
        }
        let Some(envelope_id) = frame
            .envelope_id
            .filter(|id| !id.is_empty() && id.len() <= 256)
        else {
            tracing::warn!(connection, kind = ?frame.kind, "Socket Mode frame without an envelope id");
            return None;
        };
        if self.shutdown.is_cancelled() {
            // Stopping: leave it unacknowledged so that Slack delivers it again elsewhere.
            return None;
        }
        let body = serde_json::to_vec(&frame.payload).unwrap_or_default();
        // A slash command's answer rides on its ack, as the HTTP response would carry it.
        let mut answer = None;
        let parsed: Result<Inbound, ParseError> = match frame.kind.as_deref() {
            Some("events_api") => parse_event_body(&body, self.ingress.own_user().as_deref()),
            Some("interactive") => parse_interaction_json(&body),
            Some("slash_commands") => {
                match plan_command(parse_command_json(&body, now_ms()), now_ms()) {
                    Ok(CommandPlan::Answer(text)) => {
                        return Some(ack_with(&envelope_id, &text));
                    }
                    Ok(CommandPlan::ShowSettings { user }) => {
                        let text = self.ingress.describe_settings(&user).await;
                        return Some(ack_with(&envelope_id, &text));
                    }
                    Ok(CommandPlan::MintIdeToken {
                        team,
                        user,
                        channel,
                        request,
                    }) => {
                        let text = self
                            .ingress
                            .mint_ide_token(&team, &user, &channel, &request)
                            .await;
                        return Some(ack_with(&envelope_id, &text));
                    }
                    Ok(CommandPlan::Store { inbound, confirm }) => {
                        answer = Some(confirm);
                        Ok(inbound)
                    }
                    Err(e) => Err(e),
                }
            }
            // Envelope types Slack may add: acknowledged, never refused.
            _ => Ok(Inbound::Ignored("unhandled Socket Mode envelope type")),
        };
        let inbound = match parsed {
            Ok(i) => i,
            Err(e) => {
                // It will not parse better when redelivered, so acknowledge it (over HTTP the
                // same body gets a 400).
                tracing::warn!(connection, envelope_id, reason = %e, "malformed Socket Mode payload");
                return Some(ack(&envelope_id));
            }
        };
        let retry = frame.retry_attempt.to_string();
        if frame.retry_attempt > 0 {
            tracing::debug!(connection, envelope_id, retry, reason = ?frame.retry_reason, "Socket Mode redelivery");
        }
        match self.ingress.admit(inbound, "socket", &retry).await {
            Ok(
                Admitted::New
                | Admitted::Duplicate
                | Admitted::Ignored
                | Admitted::NotAllowed
                | Admitted::Challenge(_),
            ) => Some(match &answer {
                Some(text) => ack_with(&envelope_id, text),
                None => ack(&envelope_id),
            }),
            // Not stored: no ack, so Slack redelivers the envelope (admit logged the error).
            Err(_) => None,
        }
    }

    async fn on_error(&self, error: Box<dyn std::error::Error + Send + Sync + 'static>) {
        tracing::warn!(error = %error, "Socket Mode connection error");
    }

    async fn on_disconnect(&self, client_id: &SlackSocketModeWssClientId) {
        tracing::info!(connection = %client_id.to_string(), "Socket Mode connection closed");
        self.reconnect(client_id).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_is_the_bare_envelope_id() {
        assert_eq!(ack("a-b\"c"), r#"{"envelope_id":"a-b\"c"}"#);
    }

    #[test]
    fn frames_keep_their_raw_payload() {
        let f = Frame::parse(
            r#"{"envelope_id":"e1","type":"events_api","accepts_response_payload":false,
                "retry_attempt":1,"retry_reason":"timeout",
                "payload":{"type":"event_callback","event":{"user_team":"T9","bot_id":"B1"}}}"#,
        )
        .unwrap();
        assert_eq!(f.kind.as_deref(), Some("events_api"));
        assert_eq!(f.envelope_id.as_deref(), Some("e1"));
        assert_eq!(f.retry_attempt, 1);
        assert_eq!(f.payload["event"]["user_team"], "T9");
        assert_eq!(f.payload["event"]["bot_id"], "B1");
    }

    #[test]
    fn odd_fields_do_not_hide_the_envelope_id() {
        let f = Frame::parse(r#"{"envelope_id":"e2","type":"events_api","retry_attempt":"one"}"#)
            .unwrap();
        assert_eq!(f.envelope_id.as_deref(), Some("e2"));
        assert_eq!(f.retry_attempt, 0);
        assert_eq!(f.payload, Value::Null);
        assert!(Frame::parse("[1]").is_err());
        assert!(Frame::parse("not json").is_err());
    }
}
