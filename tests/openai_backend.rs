//! The `openai` backend against a local fake of an OpenAI-compatible server that checks each
//! request's shape (and refuses what the documented API would not take): a mention in, the
//! model's streamed answer out in the thread; a follow-up continues the remote conversation;
//! Stop, a timeout and a refusal end the turn with a clear card.

mod common;

use chime::config::{BackendConfig, Config, OpenaiApi};
use common::*;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "sk-test-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Seen {
    bodies: Vec<Value>,
    auth: Vec<Option<String>>,
    /// Requests the real API would refuse, and why.
    violations: Vec<String>,
    issued: Vec<String>,
}

/// A fake OpenAI-compatible server: `/v1/responses` and `/v1/chat/completions`, streamed.
#[derive(Clone)]
struct FakeModel {
    seen: Arc<Mutex<Seen>>,
    delay: Duration,
    /// Answer with this status and error message instead.
    refuse: Option<(u16, String)>,
}

fn allowed(body: &Value, keys: &[&str]) -> Result<(), String> {
    let obj = body.as_object().ok_or("the body is not an object")?;
    match obj.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown parameter {k:?}")),
        None => Ok(()),
    }
}

impl FakeModel {
    fn check_responses(&self, b: &Value) -> Result<(), String> {
        allowed(
            b,
            &[
                "model",
                "input",
                "instructions",
                "stream",
                "store",
                "previous_response_id",
                "max_output_tokens",
                "metadata",
                "temperature",
            ],
        )?;
        if b["model"].as_str().is_none_or(str::is_empty) {
            return Err("model must be a non-empty string".into());
        }
        if !(b["input"].is_string() || b["input"].is_array()) {
            return Err("input must be a string or an array".into());
        }
        if b["stream"] != true {
            return Err("this fake only streams".into());
        }
        if let Some(prev) = b.get("previous_response_id") {
            let prev = prev
                .as_str()
                .ok_or("previous_response_id must be a string")?;
            if !self.seen.lock().unwrap().issued.iter().any(|i| i == prev) {
                return Err(format!("previous_response_id {prev:?} was never issued"));
            }
        }
        Ok(())
    }

    fn check_chat(&self, b: &Value) -> Result<(), String> {
        allowed(
            b,
            &[
                "model",
                "messages",
                "stream",
                "stream_options",
                "max_tokens",
                "temperature",
            ],
        )?;
        if b["model"].as_str().is_none_or(str::is_empty) {
            return Err("model must be a non-empty string".into());
        }
        let messages = b["messages"]
            .as_array()
            .ok_or("messages must be an array")?;
        if messages.is_empty() {
            return Err("messages must not be empty".into());
        }
        for m in messages {
            allowed(m, &["role", "content", "name"])?;
            if !matches!(m["role"].as_str(), Some("system" | "user" | "assistant")) {
                return Err(format!("bad role {}", m["role"]));
            }
            if !m["content"].is_string() {
                return Err("content must be a string".into());
            }
        }
        Ok(())
    }
}

fn sse(frames: &[(Option<&str>, String)]) -> String {
    frames
        .iter()
        .map(|(event, data)| match event {
            Some(e) => format!("event: {e}\ndata: {data}\n\n"),
            None => format!("data: {data}\n\n"),
        })
        .collect()
}

impl Respond for FakeModel {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let chat = req.url.path().ends_with("/chat/completions");
        let checked = if chat {
            self.check_chat(&body)
        } else {
            self.check_responses(&body)
        };
        let mut seen = self.seen.lock().unwrap();
        seen.bodies.push(body.clone());
        seen.auth.push(
            req.headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        );
        if let Err(why) = checked {
            seen.violations.push(why.clone());
            return ResponseTemplate::new(400).set_body_json(
                json!({ "error": { "message": why, "type": "invalid_request_error" } }),
            );
        }
        if let Some((status, message)) = &self.refuse {
            return ResponseTemplate::new(*status)
                .set_body_json(json!({ "error": { "message": message } }));
        }
        let n = seen.bodies.len();
        let answer = format!("Answer {n}: the retry loop never resets its backoff.");
        let (head, tail) = answer.split_at(10);
        let text = if chat {
            let chunk = |delta: Value, finish: Value| {
                json!({ "id": "chatcmpl-1", "object": "chat.completion.chunk", "model": body["model"],
                    "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }] })
                .to_string()
            };
            sse(&[
                (
                    None,
                    chunk(json!({ "role": "assistant", "content": head }), Value::Null),
                ),
                (None, chunk(json!({ "content": tail }), Value::Null)),
                (None, chunk(json!({}), json!("stop"))),
                (None, "[DONE]".into()),
            ])
        } else {
            let id = format!("resp_{n}");
            seen.issued.push(id.clone());
            let frame = |kind: &str, seq: u32, extra: Value| {
                let mut v = json!({ "type": kind, "sequence_number": seq });
                v.as_object_mut()
                    .unwrap()
                    .extend(extra.as_object().unwrap().clone());
                (Some(kind.to_string()), v.to_string())
            };
            let frames = [
                frame(
                    "response.created",
                    0,
                    json!({ "response": { "id": id, "status": "in_progress" } }),
                ),
                frame(
                    "response.output_text.delta",
                    1,
                    json!({ "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": head }),
                ),
                frame(
                    "response.output_text.delta",
                    2,
                    json!({ "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": tail }),
                ),
                frame(
                    "response.completed",
                    3,
                    json!({ "response": { "id": id, "status": "completed",
                    "usage": { "input_tokens": 10, "output_tokens": 12, "total_tokens": 22 } } }),
                ),
            ];
            let frames: Vec<(Option<&str>, String)> = frames
                .iter()
                .map(|(e, d)| (e.as_deref(), d.clone()))
                .collect();
            sse(&frames)
        };
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/event-stream")
            .set_body_string(text)
            .set_delay(self.delay)
    }
}

async fn fake_model(delay: Duration, refuse: Option<(u16, String)>) -> (MockServer, FakeModel) {
    let server = MockServer::start().await;
    let fake = FakeModel {
        seen: Arc::new(Mutex::new(Seen::default())),
        delay,
        refuse,
    };
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    (server, fake)
}

fn with_model(
    db: &TestDb,
    slack: &FakeSlack,
    server: &MockServer,
    api: OpenaiApi,
    key: bool,
    timeout_secs: u64,
) -> Config {
    let mut c = test_config(db, slack);
    c.backends.insert(
        "gpt".into(),
        BackendConfig::Openai {
            model: "gpt-test".into(),
            api,
            timeout_secs,
            instructions: Some("You help a software team.".into()),
            max_output_tokens: None,
        },
    );
    c.agent.default_backend = "gpt".into();
    c.endpoints.openai = Some(format!("{}/v1", server.uri()));
    c.secrets.openai_api_key = key.then(|| KEY.to_string().into());
    c
}

/// A mention is answered with the model's streamed reply; a follow-up in the thread continues
/// the remote conversation from the first answer's id.
async fn responses_answer_and_follow_up(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (server, fake) = fake_model(Duration::ZERO, None).await;
    let app = TestApp::spawn(with_model(
        &db,
        &slack,
        &server,
        OpenaiApi::Responses,
        true,
        60,
    ))
    .await;
    let root = "1700000100.000100";
    app.post_event(&mention(
        "EvO1",
        "C1",
        "U1",
        root,
        None,
        "why do retries pile up?",
    ))
    .await;
    let card = slack.card("C1", root, "Answer 1:").await;
    assert!(card["blocks"]
        .to_string()
        .contains("never resets its backoff"));

    app.post_event(&mention(
        "EvO2",
        "C1",
        "U1",
        "1700000100.000200",
        Some(root),
        "and how do we fix it?",
    ))
    .await;
    slack.card("C1", root, "Answer 2:").await;
    let seen = std::mem::take(&mut *fake.seen.lock().unwrap());
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert_eq!(seen.bodies.len(), 2);
    assert_eq!(seen.bodies[0]["model"], "gpt-test");
    assert_eq!(seen.bodies[0]["instructions"], "You help a software team.");
    assert!(seen.bodies[0]["input"]
        .as_str()
        .unwrap()
        .contains("why do retries pile up?"));
    assert!(seen.bodies[0].get("previous_response_id").is_none());
    assert_eq!(seen.bodies[1]["previous_response_id"], "resp_1");
    // The remote conversation holds turn 1: the follow-up sends only its own turn.
    let second = seen.bodies[1]["input"].as_str().unwrap();
    assert!(second.contains("and how do we fix it?"), "{second}");
    assert!(
        !second.contains("Earlier turns of this session"),
        "{second}"
    );
    assert!(second.contains("in this conversation already"), "{second}");
    assert!(seen
        .auth
        .iter()
        .all(|a| a.as_deref() == Some(&format!("Bearer {KEY}"))));
    app.stop().await;
}
dual_db!(responses_test, responses_answer_and_follow_up);

/// A local model server speaking only Chat Completions, with no key: the reply is posted, and
/// no Authorization header is sent.
async fn chat_api_local_model(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (server, fake) = fake_model(Duration::ZERO, None).await;
    let app = TestApp::spawn(with_model(&db, &slack, &server, OpenaiApi::Chat, false, 60)).await;
    let root = "1700000200.000100";
    app.post_event(&mention(
        "EvL1",
        "C2",
        "U1",
        root,
        None,
        "summarise the incident",
    ))
    .await;
    slack.card("C2", root, "Answer 1:").await;
    let seen = std::mem::take(&mut *fake.seen.lock().unwrap());
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert_eq!(seen.auth, vec![None]);
    let messages = seen.bodies[0]["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages[1]["role"], "user");
    assert!(messages[1]["content"]
        .as_str()
        .unwrap()
        .contains("summarise the incident"));
    app.stop().await;
}
dual_db!(chat_test, chat_api_local_model);

/// Stop ends a turn whose model is still thinking; a model slower than the backend's timeout
/// fails the turn with the reason.
async fn stop_and_timeout(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (server, _fake) = fake_model(Duration::from_secs(30), None).await;
    // Stop first, with a timeout far longer than a loaded machine needs to press it.
    let app = TestApp::spawn(with_model(
        &db,
        &slack,
        &server,
        OpenaiApi::Responses,
        true,
        60,
    ))
    .await;
    let root = "1700000300.000100";
    app.post_event(&mention("EvS1", "C3", "U1", root, None, "think hard"))
        .await;
    eventually(WAIT, "the turn running", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE state = 'running'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let task = app.text("SELECT id FROM tasks").await;
    app.click(&button(
        "chime_stop",
        &task,
        "U1",
        "C3",
        root,
        "1700000300.000200",
    ))
    .await;
    eventually(WAIT, "stopped", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE state = 'cancelled'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    slack.card("C3", root, "Stopped").await;
    app.stop().await;

    let app = TestApp::spawn(with_model(
        &db,
        &slack,
        &server,
        OpenaiApi::Responses,
        true,
        2,
    ))
    .await;
    let root = "1700000300.000300";
    app.post_event(&mention(
        "EvS2",
        "C3",
        "U1",
        root,
        None,
        "think even harder",
    ))
    .await;
    let card = slack.card("C3", root, "timed out").await;
    assert!(card["blocks"].to_string().contains("2s"), "{card}");
    app.stop().await;
}
dual_db!(stop_timeout_test, stop_and_timeout);

/// A refusal (a bad key, say) fails the turn with the server's reason, and the key the server
/// echoed never reaches the thread.
async fn refusal_is_shown_without_the_key(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (server, fake) = fake_model(
        Duration::ZERO,
        Some((401, format!("Incorrect API key provided: {KEY}"))),
    )
    .await;
    let app = TestApp::spawn(with_model(
        &db,
        &slack,
        &server,
        OpenaiApi::Responses,
        true,
        60,
    ))
    .await;
    let root = "1700000400.000100";
    app.post_event(&mention("EvR1", "C4", "U1", root, None, "hello"))
        .await;
    // Waits for the reason itself: "401" alone also matches a status card whose task id (in its
    // Stop button) happens to contain those digits.
    let card = slack.card("C4", root, "Incorrect API key").await;
    let all = serde_json::to_string(
        &slack
            .all_calls()
            .iter()
            .map(|c| &c.params)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!all.contains(KEY), "the key reached Slack: {card}");
    assert!(card["blocks"].to_string().contains("401"), "{card}");
    // 401 is not worth retrying.
    assert_eq!(fake.seen.lock().unwrap().bodies.len(), 1);
    app.stop().await;
}
dual_db!(refusal_test, refusal_is_shown_without_the_key);

/// A secret pasted into the thread never reaches the model: the input is guarded as it is built.
async fn a_pasted_secret_never_reaches_the_model(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (server, fake) = fake_model(Duration::ZERO, None).await;
    let app = TestApp::spawn(with_model(&db, &slack, &server, OpenaiApi::Chat, false, 60)).await;
    let root = "1700000260.000100";
    let key = "sk-proj-Zq8vN3xK5pR2mW7tY4bJzq8vN3xK5pR2mW7tY4bJ";
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV";
    slack.add_user_message(
        "C2",
        root,
        root,
        "U2",
        &format!("our key is {key}, the cookie {jwt}"),
    );
    app.post_event(&mention(
        "EvS1",
        "C2",
        "U1",
        "1700000260.000200",
        Some(root),
        &format!("why does {key} get a 401?"),
    ))
    .await;
    slack.card("C2", root, "Answer 1:").await;
    let seen = std::mem::take(&mut *fake.seen.lock().unwrap());
    let body = seen.bodies[0].to_string();
    assert!(!body.contains(key) && !body.contains(jwt), "{body}");
    assert!(
        body.contains("[redacted: openai_key]") && body.contains("[redacted: jwt]"),
        "{body}"
    );
    app.stop().await;
}
dual_db!(guarded_input_test, a_pasted_secret_never_reaches_the_model);
