//! A stateful in-memory fake of the Slack Web API, served by wiremock, recording every call.

use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wiremock::matchers::path_regex;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The app-level token tests configure for Socket Mode.
pub const APP_TOKEN: &str = "xapp-1-test-token";

#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub params: Value,
}

#[derive(Default)]
pub struct State {
    pub calls: Vec<Call>,
    /// channel → messages (each with ts, thread_ts, text, blocks, metadata, user/bot_id).
    pub messages: HashMap<String, Vec<Value>>,
    next_ts: u64,
    /// Answer this many chat.postMessage calls with 429 Retry-After: 1 first.
    pub posts_to_rate_limit: usize,
    /// user id → users.info `user` object overrides.
    pub users: HashMap<String, Value>,
    /// user id → the error code users.info answers for them (e.g. `user_not_found`).
    pub user_errors: HashMap<String, String>,
    /// channel id → its name for conversations.info (default: the id in lower case).
    pub channel_names: HashMap<String, String>,
    /// What apps.connections.open hands out (a fake Socket Mode server); unset, it answers an error.
    pub socket_url: Option<String>,
    /// Channels Chime is not in: chat.postMessage there answers `not_in_channel`.
    pub not_in: Vec<String>,
    /// Each person's Home tab as last published (views.publish).
    pub homes: HashMap<String, Value>,
    /// The app is not declared as an agent: agents.sessions.setStatus is refused.
    pub not_an_agent: bool,
    /// Streamed replies (chat.startStream …) are enabled for the app; unset, Slack refuses them
    /// as it does for an app without its agent features.
    pub streams: bool,
    /// Every error answered, as (method, code), to check a run met none it should not have.
    pub errors: Vec<(String, String)>,
}

#[derive(Clone)]
pub struct FakeSlack {
    pub server: Arc<MockServer>,
    pub state: Arc<Mutex<State>>,
}

struct Responder(Arc<Mutex<State>>);

impl FakeSlack {
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(State {
            next_ts: 1,
            ..State::default()
        }));
        Mock::given(path_regex("^/api/.+"))
            .respond_with(Responder(state.clone()))
            .mount(&server)
            .await;
        FakeSlack {
            server: Arc::new(server),
            state,
        }
    }

    pub fn api_url(&self) -> String {
        format!("{}/api", self.server.uri())
    }

    pub fn calls(&self, method: &str) -> Vec<Value> {
        self.state
            .lock()
            .unwrap()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .map(|c| c.params.clone())
            .collect()
    }

    pub fn all_calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Chime's messages in a thread, as they read now.
    pub fn thread(&self, channel: &str, thread_ts: &str) -> Vec<Value> {
        let s = self.state.lock().unwrap();
        s.messages
            .get(channel)
            .map(|ms| {
                ms.iter()
                    .filter(|m| m["thread_ts"] == thread_ts)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits (up to 20 s) for a message of Chime's in a thread whose blocks contain `marker`.
    pub async fn card(&self, channel: &str, thread_ts: &str, marker: &str) -> Value {
        super::eventually(
            std::time::Duration::from_secs(20),
            &format!("a card containing {marker:?}"),
            || async {
                self.thread(channel, thread_ts)
                    .into_iter()
                    .find(|m| m["blocks"].to_string().contains(marker))
            },
        )
        .await
    }

    /// Adds a human message to a thread, as if someone wrote it (for thread context).
    pub fn add_user_message(
        &self,
        channel: &str,
        thread_ts: &str,
        ts: &str,
        user: &str,
        text: &str,
    ) {
        let mut s = self.state.lock().unwrap();
        s.messages.entry(channel.into()).or_default().push(json!({
            "type": "message", "user": user, "text": text, "ts": ts, "thread_ts": thread_ts
        }));
    }

    pub fn set_user(&self, id: &str, user: Value) {
        self.state.lock().unwrap().users.insert(id.into(), user);
    }

    /// Makes users.info answer `{"ok": false, "error": code}` for this user.
    pub fn set_user_error(&self, id: &str, code: &str) {
        self.state
            .lock()
            .unwrap()
            .user_errors
            .insert(id.into(), code.into());
    }

    /// Makes apps.connections.open return `url` (for a test Socket Mode server).
    pub fn set_socket_url(&self, url: &str) {
        self.state.lock().unwrap().socket_url = Some(url.into());
    }

    /// Chime is not a member of `channel`: posts there are refused.
    /// `user`'s Home tab as last published, once it is (waits up to 10 s for one newer than
    /// `after` publishes).
    pub async fn home(&self, user: &str, after: usize) -> Value {
        for _ in 0..200 {
            if self.calls("views.publish").len() > after {
                if let Some(v) = self.state.lock().unwrap().homes.get(user).cloned() {
                    return v;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "no Home tab was published for {user}: {:?}",
            self.calls("views.publish")
        )
    }

    /// The app is not an agent from now on: agent session statuses are refused.
    pub fn not_an_agent(&self) {
        self.state.lock().unwrap().not_an_agent = true;
    }

    /// The statuses set on `thread`'s agent session, in order.
    pub fn agent_statuses(&self, thread: &str) -> Vec<String> {
        self.calls("agents.sessions.setStatus")
            .into_iter()
            .filter(|p| p["thread_ts"] == thread)
            .map(|p| p["status"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    pub fn leave(&self, channel: &str) {
        self.state.lock().unwrap().not_in.push(channel.into());
    }

    pub fn enable_streams(&self) {
        self.state.lock().unwrap().streams = true;
    }

    /// The errors answered so far, as (method, code).
    pub fn errors(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().errors.clone()
    }

    /// The stream calls for the streamed reply in `thread`, in order, as (method, params).
    pub fn stream_calls(&self, channel: &str, thread: &str) -> Vec<(String, Value)> {
        // The stream's ts is read once: appends and stops name it, not the thread.
        let ts = self.stream_ts(channel, thread);
        let mut out = vec![];
        for c in self.all_calls() {
            let ours = match c.method.as_str() {
                "chat.startStream" => c.params["thread_ts"] == thread,
                "chat.appendStream" | "chat.stopStream" => {
                    ts.is_some() && ts.as_deref() == c.params["ts"].as_str()
                }
                _ => false,
            };
            if ours && c.params["channel"] == channel {
                out.push((c.method, c.params));
            }
        }
        out
    }

    /// The ts of the streamed reply in `thread`, once started.
    pub fn stream_ts(&self, channel: &str, thread: &str) -> Option<String> {
        self.thread(channel, thread)
            .into_iter()
            .find(|m| m.get("streaming").is_some())
            .and_then(|m| m["ts"].as_str().map(String::from))
    }

    pub fn rate_limit_next_posts(&self, n: usize) {
        self.state.lock().unwrap().posts_to_rate_limit = n;
    }
}

fn params(req: &Request) -> Value {
    let mut map = Map::new();
    for (k, v) in req.url.query_pairs() {
        map.insert(k.to_string(), Value::String(v.to_string()));
    }
    if let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&req.body) {
        map.extend(body);
    } else if let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&req.body) {
        for (k, v) in form {
            map.insert(k, Value::String(v));
        }
    }
    Value::Object(map)
}

/// What Slack checks of a `views.publish`: a user, a `home` view of at most 100 blocks, unique
/// action ids per block, and each select's initial option among its options.
fn check_home_view(p: &Value) -> Result<String, &'static str> {
    let user = p["user_id"].as_str().filter(|u| u.starts_with('U'));
    let user = user.ok_or("invalid_arguments")?.to_string();
    let view = &p["view"];
    if view["type"] != "home" {
        return Err("invalid_arguments");
    }
    let blocks = view["blocks"].as_array().ok_or("invalid_blocks")?;
    if blocks.is_empty()
        || blocks.len() > 100
        || serde_json::to_string(view).unwrap().len() > 250_000
    {
        return Err("invalid_blocks");
    }
    for b in blocks {
        let mut ids = std::collections::HashSet::new();
        let mut elements: Vec<&Value> = b["elements"]
            .as_array()
            .map(|e| e.iter().collect())
            .unwrap_or_default();
        if b.get("accessory").is_some() {
            elements.push(&b["accessory"]);
        }
        for e in elements {
            if let Some(id) = e["action_id"].as_str() {
                if !ids.insert(id.to_string()) {
                    return Err("invalid_blocks");
                }
            }
            if e["type"] == "static_select" {
                let options = e["options"].as_array().ok_or("invalid_blocks")?;
                if options.is_empty() || options.len() > 100 {
                    return Err("invalid_blocks");
                }
                if let Some(init) = e.get("initial_option") {
                    if !options.contains(init) {
                        return Err("invalid_blocks");
                    }
                }
            }
        }
        if b["type"].as_str().is_none() {
            return Err("invalid_blocks");
        }
    }
    Ok(user)
}

/// What Slack checks of streamed chunks: known types with their fields, known task statuses, and
/// no step going back from done to pending or in progress (`steps` is the stream's so far).
fn check_chunks(chunks: &Value, steps: &mut HashMap<String, String>) -> Result<(), &'static str> {
    let Some(chunks) = chunks.as_array() else {
        return Ok(());
    };
    for c in chunks {
        let text = |k: &str| c[k].as_str().is_some_and(|t| !t.is_empty());
        match c["type"].as_str() {
            Some("markdown_text") if text("text") => {}
            Some("plan_update") if text("title") => {}
            Some("blocks") if c["blocks"].is_array() => {}
            Some("task_update") if text("id") && text("title") => {
                let status = c["status"].as_str().unwrap_or_default();
                if !["pending", "in_progress", "complete", "error"].contains(&status) {
                    return Err("invalid_chunks");
                }
                let id = c["id"].as_str().unwrap_or_default().to_string();
                let was = steps.get(&id).map(String::as_str);
                if matches!(was, Some("complete" | "error"))
                    && matches!(status, "pending" | "in_progress")
                {
                    return Err("invalid_chunks");
                }
                if c["title"].as_str().unwrap_or_default().chars().count() > 256
                    || c["output"].as_str().unwrap_or_default().chars().count() > 4000
                {
                    return Err("invalid_chunks");
                }
                steps.insert(id, status.to_string());
            }
            _ => return Err("invalid_chunks"),
        }
    }
    Ok(())
}

fn ok(extra: Value) -> ResponseTemplate {
    let mut body = json!({ "ok": true });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    ResponseTemplate::new(200).set_body_json(body)
}

thread_local! {
    /// The error code `err` last answered on this thread (the responder runs synchronously).
    static LAST_ERROR: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn err(code: &str) -> ResponseTemplate {
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(code.to_string()));
    ResponseTemplate::new(200).set_body_json(json!({ "ok": false, "error": code }))
}

impl Respond for Responder {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let method = req.url.path().trim_start_matches("/api/").to_string();
        let p = params(req);
        let mut s = self.0.lock().unwrap();
        LAST_ERROR.with(|e| e.borrow_mut().take());
        let answer = self.answer(&mut s, req, &method, &p);
        if let Some(code) = LAST_ERROR.with(|e| e.borrow_mut().take()) {
            s.errors.push((method, code));
        }
        answer
    }
}

impl Responder {
    fn answer(&self, s: &mut State, req: &Request, method: &str, p: &Value) -> ResponseTemplate {
        let (method, p) = (method.to_string(), p.clone());
        s.calls.push(Call {
            method: method.clone(),
            params: p.clone(),
        });
        // apps.connections.open takes the app-level token; every other method the bot token.
        let token = if method == "apps.connections.open" {
            format!("Bearer {APP_TOKEN}")
        } else {
            "Bearer xoxb-test-token".to_string()
        };
        if req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            != Some(token.as_str())
        {
            return err("not_authed");
        }
        let channel = p["channel"].as_str().unwrap_or_default().to_string();
        match method.as_str() {
            "auth.test" => ok(
                json!({ "user_id": "UBOT", "bot_id": "BCHIME", "team_id": "T1", "user": "chime" }),
            ),
            "chat.postMessage" => {
                if s.posts_to_rate_limit > 0 {
                    s.posts_to_rate_limit -= 1;
                    return ResponseTemplate::new(429)
                        .insert_header("retry-after", "1")
                        .set_body_json(json!({ "ok": false, "error": "ratelimited" }));
                }
                if s.not_in.contains(&channel) {
                    return err("not_in_channel");
                }
                s.next_ts += 1;
                let ts = format!("1800000000.{:06}", s.next_ts);
                let msg = json!({
                    "type": "message", "user": "UBOT", "bot_id": "BCHIME", "ts": ts,
                    "thread_ts": p.get("thread_ts").cloned().unwrap_or(Value::String(ts.clone())),
                    "text": p["text"], "blocks": p["blocks"], "metadata": p["metadata"],
                });
                s.messages
                    .entry(channel.clone())
                    .or_default()
                    .push(msg.clone());
                ok(json!({ "channel": channel, "ts": ts, "message": msg }))
            }
            "chat.update" => {
                let ts = p["ts"].as_str().unwrap_or_default().to_string();
                let Some(m) = s
                    .messages
                    .get_mut(&channel)
                    .and_then(|ms| ms.iter_mut().find(|m| m["ts"] == ts.as_str()))
                else {
                    return err("message_not_found");
                };
                if m["streaming"] == true {
                    return err("cant_update_message");
                }
                m["text"] = p["text"].clone();
                m["blocks"] = p["blocks"].clone();
                ok(json!({ "channel": channel, "ts": ts, "text": p["text"] }))
            }
            "reactions.add" => ok(json!({})),
            "conversations.replies" => {
                let ts = p["ts"].as_str().unwrap_or_default();
                let msgs: Vec<Value> = s
                    .messages
                    .get(&channel)
                    .map(|ms| {
                        ms.iter()
                            .filter(|m| m["thread_ts"] == ts || m["ts"] == ts)
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                // Pages from the oldest, as Slack does: `limit` (at most 1000) per page, and a
                // cursor (here the offset) to the next page while there is more.
                let limit = p["limit"]
                    .as_str()
                    .and_then(|l| l.parse::<usize>().ok())
                    .unwrap_or(1000)
                    .clamp(1, 1000);
                let from = p["cursor"]
                    .as_str()
                    .and_then(|c| c.parse::<usize>().ok())
                    .unwrap_or(0)
                    .min(msgs.len());
                let to = (from + limit).min(msgs.len());
                let has_more = to < msgs.len();
                let next = if has_more {
                    to.to_string()
                } else {
                    String::new()
                };
                ok(json!({
                    "messages": msgs[from..to], "has_more": has_more,
                    "response_metadata": { "next_cursor": next }
                }))
            }
            "users.info" => {
                let id = p["user"].as_str().unwrap_or_default();
                if let Some(code) = s.user_errors.get(id) {
                    return err(code);
                }
                let user = s.users.get(id).cloned().unwrap_or_else(|| {
                    json!({ "id": id, "team_id": "T1", "is_bot": false, "is_restricted": false, "is_ultra_restricted": false, "deleted": false })
                });
                ok(json!({ "user": user }))
            }
            // Everyone at acme.dev is in the workspace (as U + the address's name); nobody else.
            "users.lookupByEmail" => {
                let email = p["email"].as_str().unwrap_or_default().to_string();
                match email.strip_suffix("@acme.dev") {
                    Some(name) if !name.is_empty() => {
                        let id = format!("U{}", name.to_uppercase().replace(['-', '.'], ""));
                        ok(json!({ "user": { "id": id, "team_id": "T1" } }))
                    }
                    _ => err("users_not_found"),
                }
            }
            "conversations.info" => {
                let id = p["channel"].as_str().unwrap_or_default();
                let name = s
                    .channel_names
                    .get(id)
                    .cloned()
                    .unwrap_or_else(|| id.to_lowercase());
                ok(json!({ "channel": { "id": id, "name": name } }))
            }
            "apps.connections.open" => match &s.socket_url {
                Some(url) => ok(json!({ "url": url })),
                None => err("socket_mode_not_enabled"),
            },
            "conversations.open" => {
                let user = p["users"].as_str().unwrap_or_default();
                ok(json!({ "channel": { "id": format!("D{user}") } }))
            }
            "chat.postEphemeral" => ok(json!({ "message_ts": "1800000000.999999" })),
            // Checked as Slack documents it: a known status, the thread it is about.
            "agents.sessions.setStatus" => {
                let status = p["status"].as_str().unwrap_or_default();
                let known = ["active", "processing", "suspended", "closed"].contains(&status);
                let thread = p["thread_ts"].as_str().is_some_and(|t| !t.is_empty());
                let channel = p["channel_id"].as_str().is_some_and(|c| !c.is_empty());
                if s.not_an_agent {
                    err("not_allowed_token_type")
                } else if !known || !thread || !channel {
                    err("invalid_arguments")
                } else {
                    ok(json!({ "status": status }))
                }
            }
            // Starters, checked as Slack documents them: a thread, one to four prompts, each a
            // non-empty title and message.
            "assistant.threads.setSuggestedPrompts" => {
                let thread = p["thread_ts"].as_str().is_some_and(|t| !t.is_empty());
                let channel = p["channel_id"].as_str().is_some_and(|c| !c.is_empty());
                let prompts = p["prompts"].as_array().cloned().unwrap_or_default();
                let each = prompts.iter().all(|q| {
                    let obj = q.as_object();
                    obj.is_some_and(|o| o.keys().all(|k| k == "title" || k == "message"))
                        && ["title", "message"]
                            .iter()
                            .all(|k| q[k].as_str().is_some_and(|v| !v.trim().is_empty()))
                });
                let title = p.get("title").is_none_or(|t| t.is_string());
                if !thread || !channel || prompts.is_empty() || prompts.len() > 4 || !each || !title
                {
                    err("invalid_arguments")
                } else {
                    ok(json!({}))
                }
            }
            // Streamed replies, checked as Slack does: a thread and its recipient to start one,
            // known chunks, and appends and the stop only while it streams.
            "chat.startStream" => {
                if !s.streams {
                    return err("feature_not_enabled");
                }
                let thread = p["thread_ts"].as_str().unwrap_or_default().to_string();
                let recipient = p["recipient_user_id"]
                    .as_str()
                    .is_some_and(|u| u.starts_with('U'))
                    && p["recipient_team_id"]
                        .as_str()
                        .is_some_and(|t| t.starts_with('T'));
                let mode = p
                    .get("task_display_mode")
                    .is_none_or(|m| m == "plan" || m == "timeline");
                if channel.is_empty() || thread.is_empty() || !mode {
                    return err("invalid_arguments");
                }
                if !recipient {
                    return err("missing_recipient_user_id");
                }
                let mut steps = HashMap::new();
                if let Err(code) = check_chunks(&p["chunks"], &mut steps) {
                    return err(code);
                }
                s.next_ts += 1;
                let ts = format!("1800000000.{:06}", s.next_ts);
                let msg = json!({
                    "type": "message", "user": "UBOT", "bot_id": "BCHIME", "ts": ts,
                    "thread_ts": thread, "text": "", "streaming": true,
                    "chunks": p["chunks"].as_array().cloned().unwrap_or_default(),
                    "steps": steps,
                });
                s.messages.entry(channel.clone()).or_default().push(msg);
                ok(json!({ "channel": channel, "ts": ts }))
            }
            "chat.appendStream" | "chat.stopStream" => {
                let ts = p["ts"].as_str().unwrap_or_default().to_string();
                let Some(m) = s
                    .messages
                    .get_mut(&channel)
                    .and_then(|ms| ms.iter_mut().find(|m| m["ts"] == ts.as_str()))
                else {
                    return err("message_not_found");
                };
                if m["streaming"] != true {
                    return err("message_not_in_streaming_state");
                }
                let mut steps: HashMap<String, String> =
                    serde_json::from_value(m["steps"].clone()).unwrap_or_default();
                if let Err(code) = check_chunks(&p["chunks"], &mut steps) {
                    return err(code);
                }
                if method == "chat.appendStream"
                    && p["chunks"].as_array().is_none_or(|c| c.is_empty())
                    && p.get("markdown_text").is_none()
                {
                    return err("invalid_arguments");
                }
                m["steps"] = json!(steps);
                if let (Some(all), Some(new)) = (m["chunks"].as_array_mut(), p["chunks"].as_array())
                {
                    all.extend(new.iter().cloned());
                }
                if method == "chat.stopStream" {
                    m["streaming"] = json!(false);
                    m["text"] = p["text"].clone();
                    m["blocks"] = p["blocks"].clone();
                }
                ok(json!({ "channel": channel, "ts": ts }))
            }
            "views.publish" => match check_home_view(&p) {
                Ok(user) => {
                    s.homes.insert(user, p["view"].clone());
                    ok(json!({ "view": { "id": "VHOME", "type": "home" } }))
                }
                Err(code) => err(code),
            },
            _ => err("unknown_method"),
        }
    }
}
