//! The `cursor` backend against a local fake of Cursor's Cloud Agents API (v1) that checks each
//! request's shape: launch → result with Cursor's pull request in the thread, a follow-up as a new
//! run of the same agent, milestones from the run's event stream, Stop and the timeout cancelling
//! the run.

mod common;

use chime::config::{BackendConfig, RepoConfig};
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::path_regex;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "cur_test_0123456789";
const WAIT: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    /// run id → (agent id, status, reads left, prompt)
    runs: HashMap<String, (String, &'static str, u32, String)>,
    agents: usize,
    run_requests: usize,
    cancels: usize,
    /// The `Last-Event-ID` of each stream opening (None for a first one).
    streams: Vec<Option<String>>,
    bodies: Vec<Value>,
    violations: Vec<String>,
}

#[derive(Clone)]
struct FakeCursor {
    state: Arc<Mutex<State>>,
    hold: Arc<AtomicBool>,
}

fn check_prompt(p: &Value) -> Result<(), String> {
    let obj = p.as_object().ok_or("prompt must be an object")?;
    if obj.keys().any(|k| k != "text" && k != "images") || !p["text"].is_string() {
        return Err("prompt must be {text}".into());
    }
    Ok(())
}

impl Respond for FakeCursor {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let mut s = self.state.lock().unwrap();
        if req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            != Some(&format!("Bearer {KEY}"))
        {
            s.violations.push("missing or wrong bearer key".into());
            return ResponseTemplate::new(401).set_body_json(json!({ "error": "unauthorized" }));
        }
        let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        s.bodies.push(body.clone());
        let path = req.url.path().to_string();
        let parts: Vec<&str> = path.trim_start_matches("/v1/agents").split('/').collect();
        let bad = |s: &mut State, why: String| {
            s.violations.push(why.clone());
            ResponseTemplate::new(400).set_body_json(json!({ "error": { "message": why } }))
        };
        let new_run = |s: &mut State, agent: &str, prompt: &Value| {
            s.run_requests += 1;
            let run = format!("run-{}", s.run_requests);
            s.runs.insert(
                run.clone(),
                (
                    agent.to_string(),
                    "RUNNING",
                    2,
                    prompt["text"].as_str().unwrap_or("").to_string(),
                ),
            );
            json!({ "id": run, "status": "CREATING" })
        };
        match (req.method.as_str(), &parts[..]) {
            ("POST", [""]) => {
                let ok = body.as_object().is_some_and(|o| {
                    o.keys().all(|k| {
                        ["prompt", "model", "repos", "autoCreatePR", "webhook"]
                            .contains(&k.as_str())
                    })
                }) && check_prompt(&body["prompt"]).is_ok()
                    && body["repos"].as_array().is_some_and(|r| {
                        !r.is_empty()
                            && r.iter().all(|x| {
                                x["url"].is_string()
                                    && x.as_object()
                                        .unwrap()
                                        .keys()
                                        .all(|k| k == "url" || k == "startingRef")
                            })
                    })
                    && body.get("autoCreatePR").is_none_or(Value::is_boolean)
                    && body.get("model").is_none_or(|m| m["id"].is_string());
                if !ok {
                    return bad(&mut s, format!("bad launch body {body}"));
                }
                s.agents += 1;
                let agent = format!("bc_{}", s.agents);
                let run = new_run(&mut s, &agent, &body["prompt"]);
                ResponseTemplate::new(201)
                    .set_body_json(json!({ "agent": { "id": agent, "name": "chime" }, "run": run }))
            }
            ("POST", [_, agent, "runs"]) => {
                if body
                    .as_object()
                    .is_none_or(|o| o.keys().any(|k| k != "prompt"))
                    || check_prompt(&body["prompt"]).is_err()
                {
                    return bad(&mut s, format!("bad run body {body}"));
                }
                if s.runs
                    .values()
                    .any(|(a, st, _, _)| a == agent && *st == "RUNNING")
                {
                    return ResponseTemplate::new(409).set_body_json(
                        json!({ "error": { "code": "agent_busy", "message": "agent busy" } }),
                    );
                }
                let agent = agent.to_string();
                let run = new_run(&mut s, &agent, &body["prompt"]);
                ResponseTemplate::new(201).set_body_json(json!({ "run": run }))
            }
            ("GET", [_, agent, "runs", run]) => {
                let hold = self.hold.load(Ordering::SeqCst);
                let n = s.run_requests;
                let Some(r) = s.runs.get_mut(*run).filter(|r| r.0 == *agent) else {
                    return ResponseTemplate::new(404)
                        .set_body_json(json!({ "error": "no such run" }));
                };
                if r.1 == "RUNNING" && !hold {
                    if r.2 == 0 {
                        r.1 = "FINISHED";
                    } else {
                        r.2 -= 1;
                    }
                }
                let mut v = json!({ "id": run, "status": r.1 });
                if r.1 == "FINISHED" {
                    v["result"] = json!(format!("Run {}: renamed the flag.", &run[4..]));
                    v["git"] = json!({ "branches": [{ "branch": "cursor/rename", "prUrl": format!("https://github.com/acme/api/pull/{n}") }] });
                }
                ResponseTemplate::new(200).set_body_json(v)
            }
            ("GET", [_, _agent, "runs", _run, "stream"]) => {
                let last = req
                    .headers
                    .get("last-event-id")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let accepts = req
                    .headers
                    .get("accept")
                    .is_some_and(|v| v.as_bytes() == b"text/event-stream");
                if !accepts {
                    return bad(&mut s, "a stream must accept text/event-stream".into());
                }
                s.streams.push(last.clone());
                if last.is_some() {
                    // Everything was sent once; Cursor keeps streams for a while only.
                    return ResponseTemplate::new(410).set_body_json(
                        json!({ "error": { "code": "stream_expired", "message": "expired" } }),
                    );
                }
                let body = "id: 1\nevent: assistant\ndata: {\"text\":\"Reading the retry client\"}\n\n\
                            id: 2\nevent: tool_call\ndata: {\"name\":\"edit_file\",\"args\":{}}\n\n";
                ResponseTemplate::new(200).set_body_raw(body, "text/event-stream")
            }
            ("POST", [_, _agent, "runs", run, "cancel"]) => {
                s.cancels += 1;
                if let Some(r) = s.runs.get_mut(*run) {
                    r.1 = "CANCELLED";
                }
                ResponseTemplate::new(200)
                    .set_body_json(json!({ "id": run, "status": "CANCELLED" }))
            }
            _ => bad(&mut s, format!("unexpected {} {path}", req.method)),
        }
    }
}

async fn fake_cursor() -> (MockServer, FakeCursor) {
    let server = MockServer::start().await;
    let fake = FakeCursor {
        state: Arc::new(Mutex::new(State::default())),
        hold: Arc::new(AtomicBool::new(false)),
    };
    Mock::given(path_regex("^/v1/agents"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    (server, fake)
}

fn with_cursor(db: &TestDb, slack: &FakeSlack, server: &MockServer) -> chime::config::Config {
    let mut c = test_config(db, slack);
    c.backends.insert(
        "cursor".into(),
        BackendConfig::Cursor {
            model: Some("claude-4-sonnet".into()),
            auto_create_pr: true,
            timeout_secs: 60,
            poll_ms: 100,
        },
    );
    c.agent.default_backend = "cursor".into();
    c.repos.insert(
        "acme/api".into(),
        RepoConfig {
            url: "https://github.com/acme/api".into(),
            default_branch: Some("main".into()),
            ..Default::default()
        },
    );
    c.routing.default_repo = Some("acme/api".into());
    c.endpoints.cursor = Some(server.uri());
    c.secrets.cursor_api_key = Some(KEY.to_string().into());
    c
}

async fn launch_follow_up_and_stop(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (server, fake) = fake_cursor().await;
    let app = TestApp::spawn(with_cursor(&db, &slack, &server)).await;
    let root = "1700000800.000100";
    app.post_event(&mention(
        "EvC1",
        "C8",
        "U1",
        root,
        None,
        "rename retries to max_retries",
    ))
    .await;
    let card = slack.card("C8", root, "Run 1:").await;
    assert!(
        card["blocks"]
            .to_string()
            .contains("https://github.com/acme/api/pull/1"),
        "{card}"
    );
    assert_eq!(app.text("SELECT remote_ref FROM tasks").await, "bc_1/run-1");

    app.post_event(&mention(
        "EvC2",
        "C8",
        "U1",
        "1700000800.000200",
        Some(root),
        "and update the docs",
    ))
    .await;
    slack.card("C8", root, "Run 2:").await;
    {
        let s = fake.state.lock().unwrap();
        assert!(s.violations.is_empty(), "{:?}", s.violations);
        assert_eq!(
            (s.agents, s.run_requests),
            (1, 2),
            "a follow-up is a run of the same agent"
        );
        assert_eq!(
            s.bodies[0]["repos"][0],
            json!({ "url": "https://github.com/acme/api", "startingRef": "main" })
        );
        assert_eq!(s.bodies[0]["model"]["id"], "claude-4-sonnet");
    }

    // Stop cancels the run in Cursor.
    fake.hold.store(true, Ordering::SeqCst);
    app.post_event(&mention(
        "EvC3",
        "C8",
        "U1",
        "1700000800.000300",
        Some(root),
        "and the changelog",
    ))
    .await;
    eventually(WAIT, "the third run recorded", || async {
        (app.count(
            "SELECT COUNT(*) FROM tasks WHERE remote_ref = 'bc_1/run-3' AND state = 'running'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;
    // While it works, the run's event stream shows in the status message; the stream, read to
    // its end, is resumed after its last event and then left to polling (410).
    eventually(WAIT, "a milestone from the run's stream", || async {
        slack
            .calls("chat.update")
            .into_iter()
            .find(|c| c.to_string().contains("Running edit_file"))
    })
    .await;
    assert!(
        fake.state
            .lock()
            .unwrap()
            .streams
            .contains(&Some("2".to_string())),
        "the stream was resumed after event 2"
    );
    let task = app
        .text("SELECT id FROM tasks WHERE remote_ref = 'bc_1/run-3'")
        .await;
    app.click(&button(
        "chime_stop",
        &task,
        "U1",
        "C8",
        root,
        "1700000800.000400",
    ))
    .await;
    slack.card("C8", root, "Stopped").await;
    assert_eq!(fake.state.lock().unwrap().cancels, 1);
    app.stop().await;
}
dual_db!(cursor_test, launch_follow_up_and_stop);

/// A run that outlasts the backend's timeout fails the turn with a clear reason, and is cancelled
/// in Cursor rather than left running.
async fn timeout_cancels_the_run(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (server, fake) = fake_cursor().await;
    fake.hold.store(true, Ordering::SeqCst);
    let mut config = with_cursor(&db, &slack, &server);
    if let Some(BackendConfig::Cursor { timeout_secs, .. }) = config.backends.get_mut("cursor") {
        *timeout_secs = 2;
    }
    let app = TestApp::spawn(config).await;
    let root = "1700000810.000100";
    app.post_event(&mention("EvCt1", "C8", "U1", root, None, "rename the flag"))
        .await;
    let card = slack.card("C8", root, "Failed").await;
    assert!(
        card["blocks"].to_string().contains("timed out after 2s"),
        "{card}"
    );
    {
        let s = fake.state.lock().unwrap();
        assert_eq!((s.run_requests, s.cancels), (1, 1));
        assert!(s.violations.is_empty(), "{:?}", s.violations);
    }
    app.stop().await;
}
dual_db!(cursor_timeout_test, timeout_cancels_the_run);

const CURSOR_HOOK: &str = "cursor-webhook-secret-0123456789abcdef";

async fn post_status(app: &TestApp, id: &str, body: &Value, secret: &str) -> reqwest::Response {
    use hmac::{Hmac, Mac};
    let body = body.to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    app.http
        .post(app.url("/backends/cursor/webhook"))
        .header("content-type", "application/json")
        .header("x-webhook-id", id)
        .header("x-webhook-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Cursor's v0 `statusChange` webhook ends the running turn of the agent it names; forged and
/// replayed ones get 401 and change nothing.
async fn v0_status_webhook(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (server, fake) = fake_cursor().await;
    fake.hold.store(true, Ordering::SeqCst);
    let mut config = with_cursor(&db, &slack, &server);
    config.secrets.cursor_webhook_secret = Some(CURSOR_HOOK.to_string().into());
    let app = TestApp::spawn(config).await;
    let root = "1700000900.000100";
    app.post_event(&mention("EvV1", "C8", "U1", root, None, "rename the flag"))
        .await;
    eventually(WAIT, "the run recorded", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE remote_ref = 'bc_1/run-1'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let status = |summary: &str| {
        json!({ "event": "statusChange", "timestamp": "2026-11-30T08:00:00Z", "id": "bc_1",
            "status": "FINISHED", "summary": summary,
            "target": { "url": "https://cursor.com/agents?id=bc_1", "prUrl": "https://github.com/acme/api/pull/5", "branchName": "cursor/rename" } })
    };
    let forged = post_status(&app, "wh-1", &status("forged summary"), "not-the-secret").await;
    assert_eq!(forged.status(), 401);
    let r = post_status(
        &app,
        "wh-2",
        &status("Renamed via the webhook."),
        CURSOR_HOOK,
    )
    .await;
    assert_eq!(r.status(), 200);
    let card = slack.card("C8", root, "Renamed via the webhook.").await;
    assert!(card["blocks"]
        .to_string()
        .contains("https://github.com/acme/api/pull/5"));
    let replay = post_status(
        &app,
        "wh-2",
        &status("Renamed via the webhook."),
        CURSOR_HOOK,
    )
    .await;
    assert_eq!(replay.status(), 401, "a replayed webhook");
    assert!(!slack
        .all_calls()
        .iter()
        .any(|c| c.params.to_string().contains("forged summary")));
    app.stop().await;
}
dual_db!(v0_webhook_test, v0_status_webhook);
