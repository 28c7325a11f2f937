//! The `devin` backend against a local fake of Devin's sessions API that checks each request's
//! shape: launch → progress → result in the thread, a follow-up to the same Devin session, Stop,
//! a timeout, and kill -9 mid-run (the restarted Chime resumes the session; no second launch).

mod common;

use chime::config::BackendConfig;
use common::process::{free_port, ChimeProcess, FAST_CONFIG};
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::path_regex;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "apk_test_0123456789";
const WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Session {
    prompt: String,
    status: &'static str,
    /// Reads left before the current turn finishes.
    polls_left: u32,
    messages: Vec<Value>,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    /// New sessions made.
    launches: usize,
    /// Create requests, new or not (an idempotent repeat finds its session).
    launch_requests: usize,
    follow_ups: usize,
    deletes: usize,
    violations: Vec<String>,
}

#[derive(Clone)]
struct FakeDevin {
    state: Arc<Mutex<State>>,
    /// While set, sessions keep working.
    hold: Arc<AtomicBool>,
}

fn only_keys(body: &Value, keys: &[&str]) -> Result<(), String> {
    let obj = body.as_object().ok_or("the body is not an object")?;
    match obj.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(format!("unknown field {k:?}")),
        None => Ok(()),
    }
}

impl Respond for FakeDevin {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.state.lock().unwrap();
        if req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            != Some(&format!("Bearer {KEY}"))
        {
            s.violations.push("missing or wrong bearer key".into());
            return ResponseTemplate::new(401).set_body_json(json!({ "detail": "unauthorized" }));
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        let path = req.url.path().to_string();
        let parts: Vec<&str> = path.trim_start_matches("/v1/sessions").split('/').collect();
        let bad = |s: &mut State, why: String| {
            s.violations.push(why.clone());
            ResponseTemplate::new(422).set_body_json(json!({ "detail": why }))
        };
        match (req.method.as_str(), &parts[..]) {
            ("POST", [""]) => {
                let checked = only_keys(
                    &body,
                    &[
                        "prompt",
                        "idempotent",
                        "title",
                        "tags",
                        "snapshot_id",
                        "unlisted",
                        "knowledge_ids",
                        "playbook_id",
                        "max_acu_limit",
                        "secret_ids",
                    ],
                )
                .and_then(|_| {
                    body["prompt"]
                        .as_str()
                        .filter(|p| !p.is_empty())
                        .map(|_| ())
                        .ok_or("prompt must be a non-empty string".into())
                })
                .and_then(|_| {
                    if body.get("idempotent").is_some_and(|i| !i.is_boolean()) {
                        Err("idempotent must be a boolean".into())
                    } else {
                        Ok(())
                    }
                })
                .and_then(|_| {
                    if body.get("tags").is_some_and(|t| {
                        !t.as_array().is_some_and(|a| a.iter().all(Value::is_string))
                    }) {
                        Err("tags must be strings".into())
                    } else {
                        Ok(())
                    }
                });
                if let Err(why) = checked {
                    return bad(&mut s, why);
                }
                let prompt = body["prompt"].as_str().unwrap().to_string();
                s.launch_requests += 1;
                if body["idempotent"] == true {
                    if let Some((id, _)) = s.sessions.iter().find(|(_, x)| x.prompt == prompt) {
                        let id = id.clone();
                        return ResponseTemplate::new(200).set_body_json(json!({
                            "session_id": id, "url": format!("https://app.devin.ai/sessions/{id}"), "is_new_session": false }));
                    }
                }
                s.launches += 1;
                let id = format!("devin-{}", s.launches);
                s.sessions.insert(
                    id.clone(),
                    Session {
                        prompt: prompt.clone(),
                        status: "working",
                        polls_left: 2,
                        messages: vec![
                            json!({ "type": "initial_user_message", "message": prompt }),
                        ],
                    },
                );
                ResponseTemplate::new(200).set_body_json(json!({
                    "session_id": id, "url": format!("https://app.devin.ai/sessions/{id}"), "is_new_session": true }))
            }
            ("POST", [_, id, "message"]) => {
                if let Err(why) = only_keys(&body, &["message"]).and_then(|_| {
                    body["message"]
                        .as_str()
                        .map(|_| ())
                        .ok_or("message must be a string".into())
                }) {
                    return bad(&mut s, why);
                }
                s.follow_ups += 1;
                let Some(session) = s.sessions.get_mut(*id) else {
                    return ResponseTemplate::new(404)
                        .set_body_json(json!({ "detail": "no such session" }));
                };
                session
                    .messages
                    .push(json!({ "type": "user_message", "message": body["message"] }));
                session.status = "working";
                session.polls_left = 2;
                ResponseTemplate::new(200).set_body_json(Value::Null)
            }
            ("GET", [_, id]) => {
                let hold = self.hold.load(Ordering::SeqCst);
                let Some(session) = s.sessions.get_mut(*id) else {
                    return ResponseTemplate::new(404)
                        .set_body_json(json!({ "detail": "no such session" }));
                };
                if session.status == "working" && !hold {
                    if session.polls_left == 0 {
                        session.status = "finished";
                        let n = session
                            .messages
                            .iter()
                            .filter(|m| m["type"] == "user_message")
                            .count();
                        session.messages.push(json!({ "type": "devin_message", "message": format!("Reply {}: fixed the flaky test.", n + 1) }));
                    } else {
                        session.polls_left -= 1;
                    }
                }
                ResponseTemplate::new(200).set_body_json(json!({
                    "session_id": id, "status_enum": session.status, "url": format!("https://app.devin.ai/sessions/{id}"),
                    "messages": session.messages,
                    "pull_request": if session.status == "finished" { json!({ "url": "https://github.com/acme/api/pull/9" }) } else { Value::Null },
                }))
            }
            ("DELETE", [_, id]) => {
                s.deletes += 1;
                if let Some(session) = s.sessions.get_mut(*id) {
                    session.status = "stopped";
                }
                ResponseTemplate::new(200).set_body_json(Value::Null)
            }
            _ => bad(&mut s, format!("unexpected {} {path}", req.method)),
        }
    }
}

async fn fake_devin() -> (MockServer, FakeDevin) {
    let server = MockServer::start().await;
    let fake = FakeDevin {
        state: Arc::new(Mutex::new(State::default())),
        hold: Arc::new(AtomicBool::new(false)),
    };
    Mock::given(path_regex("^/v1/sessions"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    (server, fake)
}

fn with_devin(
    db: &TestDb,
    slack: &FakeSlack,
    server: &MockServer,
    timeout_secs: u64,
) -> chime::config::Config {
    let mut c = test_config(db, slack);
    c.backends.insert(
        "devin".into(),
        BackendConfig::Devin {
            timeout_secs,
            poll_ms: 100,
            tags: vec!["chime".into()],
        },
    );
    c.agent.default_backend = "devin".into();
    c.endpoints.devin = Some(server.uri());
    c.secrets.devin_api_key = Some(KEY.to_string().into());
    c
}

/// Launch → result (with the session and its pull request) in the thread; a follow-up goes to the
/// same Devin session as a message, not a second launch.
async fn launch_and_follow_up(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (server, fake) = fake_devin().await;
    let app = TestApp::spawn(with_devin(&db, &slack, &server, 60)).await;
    let root = "1700000500.000100";
    app.post_event(&mention(
        "EvD1",
        "C5",
        "U1",
        root,
        None,
        "fix the flaky checkout test",
    ))
    .await;
    let card = slack.card("C5", root, "Reply 1:").await;
    let blocks = card["blocks"].to_string();
    assert!(
        blocks.contains("https://app.devin.ai/sessions/devin-1"),
        "{blocks}"
    );
    assert!(
        blocks.contains("https://github.com/acme/api/pull/9"),
        "{blocks}"
    );
    assert_eq!(
        app.text("SELECT remote_ref FROM tasks").await,
        "devin-1@0",
        "the session was recorded on the task"
    );

    app.post_event(&mention(
        "EvD2",
        "C5",
        "U1",
        "1700000500.000200",
        Some(root),
        "also fix the docs",
    ))
    .await;
    slack.card("C5", root, "Reply 2:").await;
    {
        let s = fake.state.lock().unwrap();
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        assert_eq!((s.launches, s.follow_ups), (1, 1));
        let last = s.sessions["devin-1"]
            .messages
            .iter()
            .rev()
            .find(|m| m["type"] == "user_message")
            .unwrap();
        assert!(last["message"]
            .as_str()
            .unwrap()
            .contains("also fix the docs"));
    }
    app.stop().await;
}
dual_db!(launch_test, launch_and_follow_up);

/// Stop ends the Devin session; a run slower than timeout_secs fails the turn and is left alone.
async fn stop_and_timeout(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (server, fake) = fake_devin().await;
    fake.hold.store(true, Ordering::SeqCst);
    // Stop under a timeout far longer than a loaded machine needs to press it.
    let app = TestApp::spawn(with_devin(&db, &slack, &server, 60)).await;
    let root = "1700000600.000100";
    app.post_event(&mention(
        "EvD3",
        "C6",
        "U1",
        root,
        None,
        "refactor the client",
    ))
    .await;
    eventually(WAIT, "the session recorded", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE remote_ref IS NOT NULL")
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
        "C6",
        root,
        "1700000600.000200",
    ))
    .await;
    slack.card("C6", root, "Stopped").await;
    assert_eq!(
        fake.state.lock().unwrap().deletes,
        1,
        "Stop ends the Devin session"
    );
    app.stop().await;

    let app = TestApp::spawn(with_devin(&db, &slack, &server, 3)).await;
    let root = "1700000600.000300";
    app.post_event(&mention("EvD4", "C6", "U1", root, None, "a very long job"))
        .await;
    slack.card("C6", root, "timed out").await;
    {
        let s = fake.state.lock().unwrap();
        assert_eq!(s.deletes, 1, "a timeout is not a Stop");
        assert!(s.violations.is_empty(), "{:?}", s.violations);
    }
    app.stop().await;
}
dual_db!(stop_timeout_test, stop_and_timeout);

/// kill -9 while the Devin session works, restart: the new process resumes polling the recorded
/// session; no second launch, and the result arrives once.
async fn kill9_resumes_the_session(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (server, fake) = fake_devin().await;
    fake.hold.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{FAST_CONFIG}\n[agent]\ndefault_backend = \"devin\"\n\n[backends.devin]\nkind = \"devin\"\npoll_ms = 100\n"
    );
    let env = vec![
        ("DATABASE_URL", db.url().to_string()),
        ("SLACK_SIGNING_SECRET", SECRET.to_string()),
        ("SLACK_BOT_TOKEN", "xoxb-test-token".to_string()),
        ("SLACK_API_URL", slack.api_url()),
        ("DEVIN_API_KEY", KEY.to_string()),
        ("DEVIN_API_URL", server.uri()),
    ];
    let port = free_port();
    let mut first = ChimeProcess::start(dir.path(), "first", port, &env, &config).await;
    let root = "1700000700.000100";
    let ev = mention("EvD5", "C7", "U1", root, None, "survive a crash");
    let http = reqwest::Client::new();
    let r = signed_post(
        &http,
        &format!("{}/slack/events", first.base),
        ev.to_string().into_bytes(),
        "application/json",
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    sqlx::any::install_default_drivers();
    eventually(WAIT, "the session recorded on the task", || async {
        use sqlx::Connection;
        let mut c = sqlx::AnyConnection::connect(db.url()).await.ok()?;
        let r: Option<String> = sqlx::query_scalar("SELECT remote_ref FROM tasks")
            .fetch_optional(&mut c)
            .await
            .ok()??;
        r
    })
    .await;
    first.kill9();

    let second = ChimeProcess::start(dir.path(), "second", port, &env, &config).await;
    fake.hold.store(false, Ordering::SeqCst);
    // The killed process's lease (10 s) must run out before the new one claims the turn.
    eventually(
        Duration::from_secs(60),
        "the result after the restart",
        || async {
            slack
                .thread("C7", root)
                .into_iter()
                .find(|m| m["blocks"].to_string().contains("Reply 1:"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let finals = slack
        .calls("chat.update")
        .into_iter()
        .filter(|u| u["blocks"].to_string().contains("Reply 1:"))
        .count();
    assert_eq!(finals, 1, "the result arrives once");
    {
        let s = fake.state.lock().unwrap();
        assert_eq!(s.launch_requests, 1, "no second launch");
        assert!(s.violations.is_empty(), "{:?}", s.violations);
    }
    drop(second);
}
dual_db!(kill9_test, kill9_resumes_the_session);
