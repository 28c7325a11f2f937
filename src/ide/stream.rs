//! `GET /ide/stream`: checks the editor's token before the upgrade, then stores each client
//! message in the inbox and acknowledges it; a message sent again (after a reconnect) is
//! acknowledged again and stored once. A revoked token's open connection is closed.

use super::protocol::{self, Body};
use super::tokens::{self, Owner};
use crate::db::Db;
use crate::event::{Author, Event, IdeSignal};
use crate::ids::UserId;
use crate::queue::inbox::InboxWriter;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Frames larger than this are refused (the protocol's bound on a hand-off's diff).
const MAX_FRAME: usize = 256 * 1024;
/// How often an open connection checks that its token was not revoked.
const RECHECK: Duration = Duration::from_secs(2);

pub struct IdeStream {
    pub db: Db,
    pub inbox: InboxWriter,
}

pub fn routes(state: Arc<IdeStream>) -> Router {
    Router::new()
        .route("/ide/stream", get(connect))
        .with_state(state)
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(json!({ "error": reason }))).into_response()
}

async fn connect(
    State(state): State<Arc<IdeStream>>,
    headers: HeaderMap,
    uri: Uri,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // A web page always sends its Origin; an editor never does. No page may drive this.
    if headers.contains_key(header::ORIGIN) {
        crate::metrics::event_rejected("ide", "unauthorized");
        return refuse(
            StatusCode::FORBIDDEN,
            "the IDE stream is for editors, not web pages (a request with an Origin is refused)",
        );
    }
    if uri.query().is_some_and(|q| q.contains("token")) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "send the token in the Authorization header, never in the URL",
        );
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let owner = match tokens::check(&state.db, token.trim()).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            crate::metrics::event_rejected("ide", "unauthorized");
            tracing::info!("refused an IDE connection with a missing, unknown or revoked token");
            return refuse(
                StatusCode::UNAUTHORIZED,
                "missing, unknown or revoked IDE token (mint one with `chime ide-token create`)",
            );
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not check an IDE token");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "could not check the token; try again",
            );
        }
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    tracing::info!(token = owner.token_id, surface = %owner.surface, "IDE connected");
    ws.max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| serve(socket, owner, state))
}

async fn send(socket: &mut WebSocket, v: serde_json::Value) -> bool {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .is_ok()
}

async fn serve(mut socket: WebSocket, owner: Owner, state: Arc<IdeStream>) {
    let mut recheck = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue, // binary, ping, pong
                };
                let reply = handle_text(&state, &owner, text.as_str()).await;
                if !send(&mut socket, reply).await {
                    break;
                }
            }
            _ = recheck.tick() => {
                if !tokens::is_live(&state.db, owner.token_id).await.unwrap_or(true) {
                    let _ = socket.send(Message::Close(Some(CloseFrame {
                        code: 4001,
                        reason: "token revoked".into(),
                    }))).await;
                    tracing::info!(token = owner.token_id, "closed an IDE connection: its token was revoked");
                    break;
                }
            }
        }
    }
}

/// One client message: stored and acknowledged, or refused with a reason.
async fn handle_text(state: &IdeStream, owner: &Owner, text: &str) -> serde_json::Value {
    let msg = match protocol::parse(text) {
        Ok(m) => m,
        Err(refused) => {
            crate::metrics::event_rejected("ide", "malformed");
            return json!({ "v": protocol::VERSION, "type": "error", "id": refused.id, "reason": refused.reason });
        }
    };
    let report = match msg.body {
        Body::Report(r) => r,
        Body::NotYet(kind) => {
            return json!({ "v": protocol::VERSION, "type": "error", "id": msg.id,
                "reason": format!("{kind} is not handled by this Chime yet") });
        }
    };
    let event = Event::IdeSignal(IdeSignal {
        account_surface: owner.surface.clone(),
        author: Author {
            user: UserId::new(owner.user.as_str()),
            external: false,
        },
        token: owner.token_id,
        report,
    });
    // Named by the token and the client's id: a resend after a reconnect is the same event.
    let delivery = format!("{}:{}", owner.token_id, msg.id);
    match state.inbox.accept("ide", &delivery, &event).await {
        Ok(_) => json!({ "v": protocol::VERSION, "type": "ack", "id": msg.id }),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not store an IDE message");
            json!({ "v": protocol::VERSION, "type": "error", "id": msg.id,
                "reason": "could not store the message; send it again" })
        }
    }
}
