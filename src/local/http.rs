//! The playground: a Slack-like page and the JSON API behind it. Posting a message is the local
//! connector's inbound path: it is stored, and a mention becomes an inbox event like Slack's.

use super::{guard, mention_text, LocalWorkspace, Role, CHANNELS, PEOPLE, TEAM};
use crate::binding::Binding;
use crate::connector::Connectors;
use crate::event::{Author, ButtonAction, ButtonClicked, ChannelMessage, Event, Mention};
use crate::ids::{ChannelId, ThreadTs, UserId};
use crate::queue::inbox::InboxWriter;
use crate::session::view;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::stream::Stream;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Longest message the playground accepts, like Slack's own limit for a message's text.
const MAX_TEXT: usize = 4000;

pub struct Playground {
    pub workspace: Arc<LocalWorkspace>,
    pub inbox: InboxWriter,
    /// Required on every request when set (a playground reachable from other machines).
    pub access_token: Option<SecretString>,
    /// Where the server listens: a loopback Host must name this port.
    pub addr: SocketAddr,
    /// Made per process and rendered into the page; every `/api/*` request must carry it.
    pub page_token: String,
    /// Every connector running here, for links in the Sessions view.
    pub connectors: Arc<Connectors>,
    /// Store channel messages for the relevance policy (`suggestions.enabled`).
    pub channel_messages: bool,
}

pub fn routes(state: Arc<Playground>) -> Router {
    Router::new()
        .route("/", get(index))
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript", include_str!("assets/app.js")) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css", include_str!("assets/app.css")) }),
        )
        .route("/api/local/workspace", get(workspace))
        .route(
            "/api/local/channels/{channel}/messages",
            get(channel_messages),
        )
        .route("/api/local/channels/{channel}/threads/{ts}", get(thread))
        .route("/api/local/messages", post(post_message))
        .route("/api/local/actions", post(press_button))
        .route("/api/local/stream", get(stream))
        .route("/api/sessions", get(sessions))
        .route("/api/digest", get(digest))
        // The last layer runs first: headers on everything, then Host, the operator token, and
        // Origin and page token.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::check_api,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::check_host,
        ))
        .layer(middleware::from_fn(guard::security_headers))
        .with_state(state)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The page, with this process's token in it (so it is never cached).
async fn index(State(state): State<Arc<Playground>>) -> Response {
    let page =
        include_str!("assets/index.html").replace(guard::TOKEN_PLACEHOLDER, &state.page_token);
    let mut resp = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response();
    if let Ok(v) = guard::page_cookie(&state.page_token).parse() {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

pub(super) fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (status, Json(json!({ "error": reason.into() }))).into_response()
}

/// With an access token configured, every request must carry it: as a bearer token, a
/// `chime_token` cookie, or once as `?token=` on the page (which sets the cookie).
async fn require_token(
    State(state): State<Arc<Playground>>,
    headers: HeaderMap,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = &state.access_token else {
        return next.run(req).await;
    };
    let expected = expected.expose_secret().as_bytes();
    let matches = |given: &str| given.as_bytes().ct_eq(expected).into();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(matches);
    let cookie = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| {
            c.split(';')
                .filter_map(|kv| kv.trim().strip_prefix("chime_token="))
                .any(matches)
        });
    let query = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.strip_prefix("token="))
        .find(|t| matches(t));
    if bearer || cookie {
        return next.run(req).await;
    }
    if let Some(token) = query {
        let cookie = format!("chime_token={token}; HttpOnly; SameSite=Strict; Path=/");
        let mut resp = next.run(req).await;
        if let Ok(v) = cookie.parse() {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
        return resp;
    }
    error(
        StatusCode::UNAUTHORIZED,
        "this playground needs its access token (?token=… once, or Authorization: Bearer …)",
    )
}

async fn workspace() -> Json<serde_json::Value> {
    Json(json!({
        "team": TEAM,
        "bot": { "id": super::BOT_USER, "name": "chime" },
        "channels": CHANNELS,
        "people": PEOPLE,
    }))
}

async fn channel_messages(
    State(state): State<Arc<Playground>>,
    Path(channel): Path<String>,
) -> Response {
    if LocalWorkspace::channel(&channel).is_none() {
        return error(StatusCode::NOT_FOUND, format!("no channel {channel}"));
    }
    match state.workspace.channel_messages(&channel).await {
        Ok(m) => Json(m).into_response(),
        Err(e) => internal(e),
    }
}

async fn thread(
    State(state): State<Arc<Playground>>,
    Path((channel, ts)): Path<(String, String)>,
) -> Response {
    match state.workspace.thread(&channel, &ts).await {
        Ok(m) if m.is_empty() => error(StatusCode::NOT_FOUND, "no such thread"),
        Ok(m) => Json(m).into_response(),
        Err(e) => internal(e),
    }
}

fn internal(e: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "playground request failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see Chime's log",
    )
}

#[derive(Deserialize)]
struct NewMessage {
    channel: String,
    user: String,
    text: String,
    #[serde(default)]
    thread_ts: Option<String>,
}

/// Someone writes in the playground. A mention of @chime (or any message in the DM with Chime) is
/// turned into the same `Mention` event a Slack mention becomes.
async fn post_message(
    State(state): State<Arc<Playground>>,
    body: Result<Json<NewMessage>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(m) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(channel) = LocalWorkspace::channel(&m.channel) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("no channel {:?}", m.channel),
        );
    };
    let Some(person) = LocalWorkspace::person(&m.user) else {
        return error(StatusCode::BAD_REQUEST, format!("no person {:?}", m.user));
    };
    let text = m.text.trim();
    if text.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the message is empty");
    }
    if text.chars().count() > MAX_TEXT {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("messages are limited to {MAX_TEXT} characters"),
        );
    }
    if let Some(root) = &m.thread_ts {
        match state.workspace.get(root).await {
            Ok(Some(r)) if r.channel == channel.id && r.thread_ts.is_none() => {}
            Ok(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "thread_ts names no thread in this channel",
                )
            }
            Err(e) => return internal(e),
        }
    }
    let message = match state
        .workspace
        .insert(
            channel.id,
            m.thread_ts.as_deref(),
            person.id,
            text,
            None,
            None,
        )
        .await
    {
        Ok(msg) => msg,
        Err(e) => return internal(e),
    };
    if let Some(request) = mention_text(text, channel.is_dm) {
        let event = Event::Mention(Mention {
            binding: Binding::LocalThread {
                channel: ChannelId::new(channel.id),
                thread: ThreadTs::new(m.thread_ts.clone().unwrap_or_else(|| message.ts.clone())),
            },
            message: message.ts.clone(),
            author: Author {
                user: UserId::new(person.id),
                external: person.role == Role::External,
            },
            text: request,
        });
        if let Err(e) = state.inbox.accept("local", &message.ts, &event).await {
            return internal(e);
        }
    } else if state.channel_messages && !channel.is_dm {
        let root = m.thread_ts.clone().unwrap_or_else(|| message.ts.clone());
        let event = Event::Message(ChannelMessage {
            binding: Binding::LocalThread {
                channel: ChannelId::new(channel.id),
                thread: ThreadTs::new(&root),
            },
            top_level: m.thread_ts.is_none(),
            message: message.ts.clone(),
            author: Author {
                user: UserId::new(person.id),
                external: person.role == Role::External,
            },
            author_is_bot: false,
            place_name: channel.name.to_string(),
            at_ms: message.created_at,
            text: text.to_string(),
        });
        let delivery = format!("chat:{}", message.ts);
        if let Err(e) = state.inbox.accept("local", &delivery, &event).await {
            return internal(e);
        }
    }
    (StatusCode::CREATED, Json(message)).into_response()
}

#[derive(Deserialize)]
struct Press {
    user: String,
    channel: String,
    thread_ts: String,
    action_id: String,
    #[serde(default)]
    value: String,
}

async fn press_button(
    State(state): State<Arc<Playground>>,
    body: Result<Json<Press>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(p) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(person) = LocalWorkspace::person(&p.user) else {
        return error(StatusCode::BAD_REQUEST, format!("no person {:?}", p.user));
    };
    if LocalWorkspace::channel(&p.channel).is_none() {
        return error(
            StatusCode::BAD_REQUEST,
            format!("no channel {:?}", p.channel),
        );
    }
    let Some(action) = ButtonAction::from_parts(&p.action_id, &p.value) else {
        return error(StatusCode::BAD_REQUEST, "not one of Chime's buttons");
    };
    let event = Event::ButtonClicked(ButtonClicked {
        binding: Some(Binding::LocalThread {
            channel: ChannelId::new(&p.channel),
            thread: ThreadTs::new(&p.thread_ts),
        }),
        author: Author {
            user: UserId::new(person.id),
            external: person.role == Role::External,
        },
        action,
    });
    let delivery = format!("action:{}", uuid::Uuid::new_v4().simple());
    match state.inbox.accept("local", &delivery, &event).await {
        Ok(_) => (StatusCode::ACCEPTED, Json(json!({ "ok": true }))).into_response(),
        Err(e) => internal(e),
    }
}

async fn stream(
    State(state): State<Arc<Playground>>,
) -> Sse<impl Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let rx = state.workspace.events.subscribe();
    let s = futures::stream::unfold(rx, |mut rx| async move {
        let data = match rx.recv().await {
            Ok(ev) => serde_json::to_string(&ev).unwrap_or_default(),
            // A slow page missed events: tell it to reload what it shows.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                json!({ "kind": "resync" }).to_string()
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(SseEvent::default().data(data)), rx))
    });
    Sse::new(s).keep_alive(KeepAlive::default())
}

/// Every session from every connector, newest first, with its turns and a link to where it lives.
/// The latest weekly digest (last week's, as the schedule posts it on Mondays), and this week's
/// so far.
async fn digest(State(state): State<Arc<Playground>>) -> Response {
    let now = crate::ids::now_ms();
    let this = crate::digest::Week::of(now);
    let mut out = serde_json::Map::new();
    for (name, week) in [("latest", this.previous()), ("this_week", this)] {
        match crate::digest::preview(&state.workspace.db, week, now).await {
            Ok(text) => out.insert(
                name.into(),
                json!({ "week": week.to_string(), "text": text }),
            ),
            Err(e) => return internal(e),
        };
    }
    Json(serde_json::Value::Object(out)).into_response()
}

async fn sessions(State(state): State<Arc<Playground>>) -> Response {
    let sessions = match view::recent(&state.workspace.db, 200).await {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    let out: Vec<serde_json::Value> = sessions
        .into_iter()
        .map(|s| {
            let link = s.bindings.first().and_then(|b| state.connectors.link(b));
            let turns: Vec<serde_json::Value> = s
                .turns
                .iter()
                .map(|t| {
                    json!({
                        "task_id": t.task_id,
                        "turn": t.turn,
                        "state": t.state,
                        "requester": t.requester,
                        "attempts": t.attempts,
                        "surface": t.binding.surface(),
                        "created_at": t.created_at,
                        "started_at": t.started_at,
                        "finished_at": t.finished_at,
                        "error": t.error,
                    })
                })
                .collect();
            json!({
                "id": s.id,
                "entry_point": s.entry_point,
                "requester": s.requester,
                "repo": s.repo,
                "backend": s.backend,
                "state": s.turns.last().map(|t| t.state.clone()),
                "turns": turns,
                "created_at": s.created_at,
                "link": link,
            })
        })
        .collect();
    Json(out).into_response()
}
