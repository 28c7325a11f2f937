//! Slack's HTTP endpoints. Each request is verified on its raw body, translated, written to the
//! inbox and answered; nothing else happens before the ack.

use super::events::{
    parse_command_body, parse_event_body, parse_interaction_body, plan_command, CommandPlan,
    Inbound, ParseError,
};
use super::verify::verify;
use crate::ids::now_ms;
use crate::queue::inbox::{Accepted, InboxWriter};
use crate::server::Sampled;
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
    /// The workspace the bot token belongs to (auth.test): the only one served when
    /// `allowed_workspaces` is empty. Unknown until auth.test answers.
    pub home_team: Arc<RwLock<Option<String>>>,
    /// Store channel messages for the relevance policy (`suggestions.enabled`).
    pub channel_messages: bool,
    /// Read by `/chime settings`, which answers at once from the store.
    pub db: crate::db::Db,
    /// Who may mint an IDE token (`/chime ide-token`): the membership check, answered at once.
    pub api: Arc<super::api::SlackApi>,
    pub slack: crate::config::SlackConfig,
}

/// Chime does not know yet which workspace it serves (auth.test has not answered), so it cannot
/// tell whether an event is from it: the event is not stored, and Slack delivers it again.
#[derive(Debug, thiserror::Error)]
#[error("Chime does not know its workspace yet (auth.test has not answered); Slack will retry")]
pub struct WorkspaceUnknown;

pub fn routes(state: Arc<SlackIngress>) -> Router {
    Router::new()
        .route("/slack/events", post(events))
        .route("/slack/interactions", post(interactions))
        .route("/slack/commands", post(commands))
        .with_state(state)
}

/// Slack's endpoints when Slack is not configured: a clear 503 instead of a bare 404, so whoever
/// points Slack here learns what is missing.
pub fn unconfigured_routes() -> Router {
    let refuse = || async {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "Slack is not configured here: SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are not set",
        )
    };
    Router::new()
        .route("/slack/events", post(refuse))
        .route("/slack/interactions", post(refuse))
        .route("/slack/commands", post(refuse))
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
            let reason = match e {
                crate::signing::VerifyError::Stale => "stale",
                _ => "signature",
            };
            crate::metrics::event_rejected("slack", reason);
            // Anyone can send these, as fast as they like: one WARN line a minute, with a count.
            static REFUSED: Sampled = Sampled::new(std::time::Duration::from_secs(60));
            match REFUSED.hit() {
                Some(suppressed) => tracing::warn!(
                    reason = %e,
                    suppressed,
                    "refused a Slack request with a bad signature (logged at most once a minute; \
                     `suppressed` counts those refused since the last line)"
                ),
                None => tracing::debug!(reason = %e, "refused a Slack request"),
            }
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
    let parsed = parse_event_body(&body, state.own_user().as_deref());
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

/// An answer only the person who ran the command sees.
fn ephemeral(text: &str) -> Response {
    axum::Json(serde_json::json!({ "response_type": "ephemeral", "text": text })).into_response()
}

/// `/chime …`. Help is answered at once; anything else is stored in the inbox before it is
/// confirmed.
async fn commands(
    State(state): State<Arc<SlackIngress>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_signature(&state, &headers, &body) {
        return *r;
    }
    let (inbound, confirm) = match plan_command(parse_command_body(&body, now_ms()), now_ms()) {
        Ok(CommandPlan::Answer(text)) => return ephemeral(&text),
        Ok(CommandPlan::ShowSettings { user }) => {
            return ephemeral(&state.describe_settings(&user).await)
        }
        Ok(CommandPlan::MintIdeToken {
            team,
            user,
            channel,
            request,
        }) => {
            let answer = state.mint_ide_token(&team, &user, &channel, &request).await;
            return ephemeral(&answer);
        }
        Ok(CommandPlan::Store { inbound, confirm }) => (inbound, confirm),
        Err(e) => {
            tracing::warn!(reason = %e, "refused a signed but malformed slash command");
            return reply(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    match state.admit(inbound, "http", "0").await {
        Ok(Admitted::New | Admitted::Duplicate) => ephemeral(&confirm),
        Ok(Admitted::NotAllowed) => reply(
            StatusCode::FORBIDDEN,
            "this workspace is not allowed to use this Chime",
        ),
        Ok(_) => reply(StatusCode::OK, ""),
        Err(_) => ephemeral(COULD_NOT_SAVE),
    }
}

/// The answer to a command that could not be stored: nothing was accepted, so it is safe to retry.
pub(super) const COULD_NOT_SAVE: &str = "Sorry, I could not save that just now; please try again.";

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
    // Retry headers are read only now that the request is known to come from Slack.
    let retry = headers
        .get("x-slack-retry-num")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0");
    match state.admit(inbound, "http", retry).await {
        Ok(Admitted::Challenge(challenge)) => (
            [(axum::http::header::CONTENT_TYPE, "text/plain")],
            challenge,
        )
            .into_response(),
        Ok(Admitted::Ignored | Admitted::New | Admitted::Duplicate) => reply(StatusCode::OK, ""),
        Ok(Admitted::NotAllowed) => {
            let mut r = reply(
                StatusCode::FORBIDDEN,
                "this workspace is not allowed to use this Chime",
            );
            r.headers_mut()
                .insert("x-slack-no-retry", HeaderValue::from_static("1"));
            r
        }
        Err(e) if e.is::<WorkspaceUnknown>() => {
            reply(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        // Slack retries a failed delivery, so nothing is lost by refusing here.
        Err(_) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "could not store the event; Slack will retry",
        ),
    }
}

/// What became of a translated Slack delivery.
#[derive(Debug, PartialEq)]
pub enum Admitted {
    /// A URL verification request (HTTP only): answer with this challenge.
    Challenge(String),
    /// Nothing Chime acts on; acknowledge it so Slack does not retry.
    Ignored,
    /// Stored in the inbox.
    New,
    /// Stored before under the same delivery id (a retry, or the same event over another path).
    Duplicate,
    /// From a workspace outside `slack.allowed_workspaces`; acknowledge it and stop retries.
    NotAllowed,
}

impl SlackIngress {
    /// `/chime ide-token`: a new token for the person's editor, shown once in the answer only
    /// they see (never stored as such, never logged). Only in a DM with Chime, only for someone
    /// who may start tasks here, and once per command (`request`): a signed command sent again
    /// within Slack's replay window shows no token.
    pub async fn mint_ide_token(
        &self,
        team: &crate::ids::TeamId,
        user: &crate::ids::UserId,
        channel: &crate::ids::ChannelId,
        request: &str,
    ) -> String {
        if !channel.as_str().starts_with('D') {
            return "An IDE token is a secret: ask for it in your direct messages with Chime \
                    (`/chime ide-token` there)."
                .into();
        }
        let author = crate::event::Author {
            user: user.clone(),
            external: false,
        };
        let membership = super::people::membership(&self.api, &self.slack, team, &author).await;
        if let crate::connector::Membership::Denied(why) = membership {
            tracing::info!(user = %user, reason = %why, "refused an IDE token");
            return format!("Sorry, {why}.");
        }
        let request = format!("slack:{request}");
        match crate::ide_tokens::create_once(&self.db, "slack", user.as_str(), &request).await {
            Ok(None) => {
                tracing::warn!(user = %user, "a /chime ide-token command came again; no token shown");
                "This request was already answered: a token is shown once. Run `/chime ide-token` again for a new one.".into()
            }
            Ok(Some((id, token))) => {
                tracing::info!(user = %user, token_id = id, "minted an IDE token from Slack");
                format!(
                    "Your IDE token (id {id}), shown this once: `{token}`\n\
                     Paste it into your editor's *Chime: Token* setting. It acts as you: keep it \
                     secret. An admin can revoke it with `chime ide-token revoke {id}`."
                )
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "could not mint an IDE token");
                COULD_NOT_SAVE.into()
            }
        }
    }

    /// `/chime settings`: the person's settings as the store has them now.
    pub async fn describe_settings(&self, user: &crate::ids::UserId) -> String {
        let read = async {
            let mut conn = self.db.pool.acquire().await?;
            crate::settings::get(&mut conn, "slack", user.as_str(), now_ms()).await
        };
        match read.await {
            Ok(s) => format!(
                "*Your Chime settings*\n{}\nChange them on Chime's Home tab, or with `/chime mute`, `/chime quiet 18-9` and `/chime progress final`.",
                crate::settings::describe(&s)
            ),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not read settings for /chime settings");
                COULD_NOT_SAVE.replace("save", "read")
            }
        }
    }

    /// Retries auth.test until it answers, then fills in the workspace (and the bot id, if it was
    /// not known); until then events are refused unstored, so Slack redelivers them.
    pub async fn learn_identity(
        self: Arc<Self>,
        api: Arc<super::api::SlackApi>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut wait = std::time::Duration::from_secs(1);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match tokio::time::timeout(std::time::Duration::from_secs(10), api.auth_test()).await {
                Ok(Ok(a)) if a.team_id.is_some() => {
                    tracing::info!(team = ?a.team_id, "auth.test answered; serving this workspace");
                    if let Ok(mut g) = self.bot_user_id.write() {
                        if g.is_none() {
                            *g = a.user_id;
                        }
                    }
                    if let Ok(mut g) = self.home_team.write() {
                        *g = a.team_id;
                    }
                    return;
                }
                Ok(Ok(_)) => tracing::warn!("auth.test named no team; retrying"),
                Ok(Err(e)) => tracing::warn!(error = %e, "auth.test failed; retrying"),
                Err(_) => tracing::warn!("auth.test timed out; retrying"),
            }
            wait = (wait * 2).min(std::time::Duration::from_secs(60));
        }
    }

    /// The bot's user id, when known.
    pub fn own_user(&self) -> Option<String> {
        self.bot_user_id.read().ok().and_then(|g| g.clone())
    }

    /// The step every Slack transport (HTTP, Socket Mode) shares after parsing: the workspace
    /// allowlist, then the durable inbox write, deduplicated on the delivery id. `via` and `retry`
    /// are only logged. An `Err` means the event is not stored: the transport must not
    /// acknowledge it, so that Slack delivers it again.
    // A span per delivery costs as much as a log line, so it exists only when debugging.
    #[tracing::instrument(level = "debug", skip_all, fields(via = %via))]
    pub async fn admit(
        &self,
        inbound: Inbound,
        via: &'static str,
        retry: &str,
    ) -> anyhow::Result<Admitted> {
        let (delivery_id, team, event) = match inbound {
            Inbound::UrlVerification(challenge) => return Ok(Admitted::Challenge(challenge)),
            Inbound::Ignored(why) => {
                tracing::debug!(reason = why, "ignored a Slack delivery");
                return Ok(Admitted::Ignored);
            }
            Inbound::Event {
                delivery_id,
                team,
                event,
            } => (delivery_id, team, event),
        };
        if matches!(*event, crate::event::Event::Message(_)) && !self.channel_messages {
            tracing::debug!("ignored a channel message: suggestions are off");
            return Ok(Admitted::Ignored);
        }
        if !self.allowed_workspaces.is_empty() {
            if !self.allowed_workspaces.iter().any(|t| t == team.as_str()) {
                tracing::warn!(team = %team, via, "refused an event from a workspace outside slack.allowed_workspaces");
                return Ok(Admitted::NotAllowed);
            }
        } else {
            // Fail closed: without an allowlist, only the bot token's own workspace is served.
            let home = self.home_team.read().ok().and_then(|g| g.clone());
            match home {
                Some(h) if h == team.as_str() => {}
                Some(h) => {
                    tracing::warn!(team = %team, home = %h, via, "refused an event from another workspace than the bot token's (set slack.allowed_workspaces to serve more)");
                    return Ok(Admitted::NotAllowed);
                }
                None => {
                    tracing::warn!(team = %team, via, "cannot admit an event before auth.test names this bot's workspace");
                    return Err(WorkspaceUnknown.into());
                }
            }
        }
        match self.inbox.accept("slack", &delivery_id, &event).await {
            Ok(Accepted::New) => {
                // A first delivery is the common case, logged at debug: at ingest rates an info
                // line per event costs about as much CPU as storing it. Retries stay visible.
                if retry == "0" {
                    tracing::debug!(delivery_id = %delivery_id, team = %team, "accepted Slack event");
                } else {
                    tracing::info!(delivery_id = %delivery_id, team = %team, retry, "accepted a retried Slack event");
                }
                Ok(Admitted::New)
            }
            Ok(Accepted::Duplicate) => {
                tracing::info!(delivery_id = %delivery_id, retry, "duplicate Slack delivery ignored");
                Ok(Admitted::Duplicate)
            }
            Err(e) => {
                tracing::error!(delivery_id = %delivery_id, error = %format!("{e:#}"), "could not store a Slack event");
                Err(e)
            }
        }
    }
}
