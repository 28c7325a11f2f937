//! `GET /ide/stream`: checks the editor's token before the upgrade, then stores each client
//! message in the inbox and acknowledges it; a message sent again (after a reconnect) is
//! acknowledged again and stored once. A revoked token's open connection is closed.

use super::protocol::{self, Body};
use crate::binding::Binding;
use crate::db::Db;
use crate::event::{Author, ButtonAction, ButtonClicked, Event, IdeSignal, Mention};
use crate::ide_tokens::{self as tokens, Owner};
use crate::ids::UserId;
use crate::queue::inbox::InboxWriter;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use sha2::Digest;
use std::sync::Arc;
use std::time::Duration;

/// Frames larger than this are refused (the protocol's bound on a hand-off's diff).
const MAX_FRAME: usize = 256 * 1024;
/// How often an open connection checks that its token was not revoked.
const RECHECK: Duration = Duration::from_secs(2);

pub struct IdeStream {
    pub db: Db,
    pub inbox: InboxWriter,
    /// Woken when a message is queued for an editor.
    pub queued: Arc<tokio::sync::Notify>,
}

/// How often a connection looks for messages queued by another replica.
const POLL: Duration = Duration::from_millis(500);

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

/// The person's queue name: `surface.user`.
pub fn account(owner: &Owner) -> String {
    format!("{}.{}", owner.surface, owner.user)
}

/// Sends what is queued for this person after `cursor`; returns the new cursor, or None when the
/// socket is gone.
async fn send_queued(socket: &mut WebSocket, db: &Db, account: &str, cursor: i64) -> Option<i64> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT seq, payload FROM ide_outbound WHERE account = $1 AND seq > $2 ORDER BY seq LIMIT 100",
    )
    .bind(account)
    .bind(cursor)
    .fetch_all(&db.pool)
    .await
    .unwrap_or_default();
    let mut cursor = cursor;
    for (seq, payload) in rows {
        let mut message: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
        message["seq"] = json!(seq);
        if !send(socket, message).await {
            return None;
        }
        cursor = seq;
    }
    Some(cursor)
}

async fn latest_seq(db: &Db, account: &str) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(seq) FROM ide_outbound WHERE account = $1")
        .bind(account)
        .fetch_one(&db.pool)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

async fn serve(mut socket: WebSocket, owner: Owner, state: Arc<IdeStream>) {
    let mut recheck = tokio::time::interval(RECHECK);
    let mut poll = tokio::time::interval(POLL);
    let account = account(&owner);
    // Nothing is sent before the client's hello says where it left off.
    let mut cursor: Option<i64> = None;
    loop {
        tokio::select! {
            frame = socket.recv() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue, // binary, ping, pong
                };
                let (reply, hello) = handle_text(&state, &owner, text.as_str()).await;
                if let Some(last_seq) = hello {
                    cursor = Some(match last_seq {
                        Some(s) => s,
                        None => latest_seq(&state.db, &account).await,
                    });
                }
                if !send(&mut socket, reply).await {
                    break;
                }
            }
            _ = state.queued.notified() => {}
            _ = poll.tick() => {}
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
        if let Some(c) = cursor {
            match send_queued(&mut socket, &state.db, &account, c).await {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
    }
}

/// A client's message id as part of a binding (hashed: an id may hold characters a binding
/// cannot).
fn id_digest(id: &str) -> String {
    hex::encode(&sha2::Sha256::digest(id.as_bytes())[..8])
}

/// One client message: stored and acknowledged, or refused with a reason. The second value is
/// a hello's `last_seq` (`Some(None)`: a hello without one).
async fn handle_text(
    state: &IdeStream,
    owner: &Owner,
    text: &str,
) -> (serde_json::Value, Option<Option<i64>>) {
    let msg = match protocol::parse(text) {
        Ok(m) => m,
        Err(refused) => {
            crate::metrics::event_rejected("ide", "malformed");
            return (
                json!({ "v": protocol::VERSION, "type": "error", "id": refused.id, "reason": refused.reason }),
                None,
            );
        }
    };
    let author = Author {
        user: UserId::new(owner.user.as_str()),
        external: false,
    };
    let hello = match &msg.body {
        Body::Report(crate::event::IdeReport::Hello {
            client,
            remote,
            branch,
            head,
        }) => {
            // Recorded before the next message of this connection is read: a hand-off sent right
            // behind its hello (a client resending its queue) runs on this workspace. The inbox
            // handlers run in parallel lanes, so this cannot wait for the hello's event.
            let recorded = sqlx::query(
                "INSERT INTO ide_workspaces (token_id, client, remote, branch, head, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (token_id) DO UPDATE SET \
                 client = $2, remote = $3, branch = $4, head = $5, updated_at = $6",
            )
            .bind(owner.token_id)
            .bind(client)
            .bind(remote)
            .bind(branch)
            .bind(head)
            .bind(crate::ids::now_ms())
            .execute(&state.db.pool)
            .await;
            if let Err(e) = recorded {
                tracing::error!(error = %e, "could not record an editor's workspace");
                return (
                    json!({ "v": protocol::VERSION, "type": "error", "id": msg.id,
                        "reason": "could not store the message; send it again" }),
                    None,
                );
            }
            Some(msg.last_seq)
        }
        _ => None,
    };
    let event = match msg.body {
        Body::Report(report) => Event::IdeSignal(IdeSignal {
            account_surface: owner.surface.clone(),
            author,
            token: owner.token_id,
            report,
        }),
        Body::Handoff(text) => {
            // The hand-off's session is named by the token and the client's id.
            Event::Mention(Mention {
                binding: Binding::Ide {
                    account: account(owner),
                    handoff: format!("t{}-{}", owner.token_id, id_digest(&msg.id)),
                },
                message: msg.id.clone(),
                author,
                text,
            })
        }
        Body::Answer { suggestion, accept } => {
            // As a press of the suggestion's button in this person's editor: the suggestion
            // handler checks that it was offered to them, here.
            let action = if accept {
                ButtonAction::Accept { suggestion }
            } else {
                ButtonAction::NotNow { suggestion }
            };
            Event::ButtonClicked(ButtonClicked {
                binding: Some(Binding::Ide {
                    account: account(owner),
                    handoff: format!("t{}-{}", owner.token_id, id_digest(&msg.id)),
                }),
                author,
                action,
            })
        }
    };
    // Named by the token and the client's id: a resend after a reconnect is the same event.
    let delivery = format!("{}:{}", owner.token_id, msg.id);
    let reply = match state.inbox.accept("ide", &delivery, &event).await {
        Ok(_) => json!({ "v": protocol::VERSION, "type": "ack", "id": msg.id }),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not store an IDE message");
            json!({ "v": protocol::VERSION, "type": "error", "id": msg.id,
                "reason": "could not store the message; send it again" })
        }
    };
    (reply, hello)
}
