//! The `webhook` backend end to end: the real `chime` binary sends a signed envelope to the
//! reference service in `integrations/webhook/example/`, which calls back (signed) with progress
//! and a result that lands in the thread. Forged, stale and unconfigured callbacks get 401 and
//! change nothing; a repeated callback is taken once.

mod common;

use common::process::{free_port, ChimeProcess, FAST_CONFIG};
use common::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const HOOK: &str = "webhook-backend-secret-0123456789";

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_service(port: u16, log: &std::path::Path) -> Service {
    let out = std::fs::File::create(log).unwrap();
    Service(
        Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/integrations/webhook/example/service.py"
            ))
            .env("CHIME_WEBHOOK_BACKEND_SECRET", HOOK)
            .env("PORT", port.to_string())
            .stdout(Stdio::from(out))
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs the reference service"),
    )
}

async fn post_callback(
    http: &reqwest::Client,
    base: &str,
    body: &serde_json::Value,
    secret: &str,
    ts: i64,
) -> reqwest::Response {
    let body = body.to_string();
    let ts = ts.to_string();
    http.post(format!("{base}/backends/webhook/callback"))
        .header("content-type", "application/json")
        .header("x-chime-request-timestamp", &ts)
        .header(
            "x-chime-signature",
            chime::signing::sign(&secret.to_string().into(), &ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn envelope_and_callbacks(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let svc_port = free_port();
    let svc_log = dir.path().join("service.log");
    let _service = start_service(svc_port, &svc_log);
    eventually(
        Duration::from_secs(10),
        "the reference service listening",
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", svc_port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    let port = free_port();
    let config = format!(
        "{FAST_CONFIG}\n[server]\npublic_url = \"http://127.0.0.1:{port}\"\n\n[agent]\ndefault_backend = \"ours\"\n\n[backends.ours]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{svc_port}/\"\npoll_ms = 100\n"
    );
    let env = vec![
        ("DATABASE_URL", db.url().to_string()),
        ("SLACK_SIGNING_SECRET", SECRET.to_string()),
        ("SLACK_BOT_TOKEN", "xoxb-test-token".to_string()),
        ("SLACK_API_URL", slack.api_url()),
        ("CHIME_WEBHOOK_BACKEND_SECRET", HOOK.to_string()),
    ];
    let chime = ChimeProcess::start(dir.path(), "chime", port, &env, &config).await;
    let http = reqwest::Client::new();
    let root = "1700001100.000100";
    let ev = mention(
        "EvW1",
        "C1",
        "U1",
        root,
        None,
        "summarise the release notes",
    );
    let r = signed_post(
        &http,
        &format!("{}/slack/events", chime.base),
        ev.to_string().into_bytes(),
        "application/json",
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let card = slack
        .card("C1", root, "Echo: summarise the release notes")
        .await;
    assert!(card["blocks"].to_string().contains("Done"), "{card}");
    let log = std::fs::read_to_string(&svc_log).unwrap();
    assert_eq!(
        log.lines().filter(|l| l.starts_with("task ")).count(),
        1,
        "{log}"
    );

    // Forged, stale, or for no running turn: refused or dropped, and nothing changes.
    let now = chrono_now();
    let report = |id: &str| json!({ "version": 1, "id": id, "task_id": "t-unknown", "type": "result", "text": "forged" });
    assert_eq!(
        post_callback(&http, &chime.base, &report("cb-1"), "wrong-secret", now)
            .await
            .status(),
        401
    );
    assert_eq!(
        post_callback(&http, &chime.base, &report("cb-2"), HOOK, now - 600)
            .await
            .status(),
        401
    );
    let unsigned = http
        .post(format!("{}/backends/webhook/callback", chime.base))
        .body(report("cb-3").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    let bad = json!({ "version": 1, "id": "cb-4", "task_id": "t", "type": "rm -rf" });
    assert_eq!(
        post_callback(&http, &chime.base, &bad, HOOK, now)
            .await
            .status(),
        400
    );
    let r = post_callback(&http, &chime.base, &report("cb-5"), HOOK, now).await;
    assert_eq!(r.status(), 200);
    let again = post_callback(&http, &chime.base, &report("cb-5"), HOOK, now).await;
    assert_eq!(again.status(), 401, "a replayed callback");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!slack
        .all_calls()
        .iter()
        .any(|c| c.params.to_string().contains("forged")));
    drop(chime);
}
dual_db!(webhook_test, envelope_and_callbacks);

/// Without CHIME_WEBHOOK_BACKEND_SECRET the callback endpoint refuses everything.
async fn unconfigured_callbacks_refused(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let body = json!({ "version": 1, "id": "cb-1", "task_id": "t", "type": "result", "text": "x" });
    let r = post_callback(
        &app.http,
        &format!("http://{}", app.addr),
        &body,
        HOOK,
        chrono_now(),
    )
    .await;
    assert_eq!(r.status(), 401);
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 0);
    app.stop().await;
}
dual_db!(unconfigured_test, unconfigured_callbacks_refused);

/// A fake agent service, in process: it checks each envelope's signature and its shape against the
/// committed schema (`integrations/webhook/task.schema.json`), keeps it, and calls back only when
/// the test does.
#[derive(Clone, Default)]
struct FakeService {
    envelopes: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    violations: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// Whether `v` fits the schema's variant for its `type`: its required keys, and nothing else.
fn fits_schema(v: &serde_json::Value) -> Result<(), String> {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../integrations/webhook/task.schema.json")).unwrap();
    let variant = schema["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["properties"]["type"]["const"] == v["type"])
        .ok_or(format!("no schema variant for type {}", v["type"]))?;
    let obj = v.as_object().ok_or("not an object")?;
    for k in variant["required"].as_array().unwrap() {
        if !obj.contains_key(k.as_str().unwrap()) {
            return Err(format!("missing {k}"));
        }
    }
    for k in obj.keys() {
        if variant["properties"].get(k).is_none() {
            return Err(format!("unexpected key {k}"));
        }
    }
    Ok(())
}

impl wiremock::Respond for FakeService {
    fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
        let header = |k: &str| {
            req.headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let ts = header("x-chime-request-timestamp");
        let expected = chime::signing::sign(&HOOK.to_string().into(), &ts, &req.body);
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap_or_default();
        let problem = if header("x-chime-signature") != expected {
            Some("bad signature".to_string())
        } else if header("idempotency-key") != v["task_id"].as_str().unwrap_or("-") {
            Some("Idempotency-Key is not the task id".to_string())
        } else {
            fits_schema(&v).err()
        };
        if let Some(p) = problem {
            self.violations.lock().unwrap().push(p.clone());
            return wiremock::ResponseTemplate::new(400).set_body_string(p);
        }
        self.envelopes.lock().unwrap().push(v);
        wiremock::ResponseTemplate::new(202)
    }
}

async fn with_fake_service(
    db: &TestDb,
    slack: &FakeSlack,
    timeout_secs: u64,
) -> (TestApp, FakeService, wiremock::MockServer) {
    let server = wiremock::MockServer::start().await;
    let fake = FakeService::default();
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    let mut config = test_config(db, slack);
    config.backends.insert(
        "ours".into(),
        chime::config::BackendConfig::Webhook {
            url: format!("{}/agent", server.uri()),
            timeout_secs,
            poll_ms: 100,
        },
    );
    config.agent.default_backend = "ours".into();
    config.server.public_url = Some("http://chime.example".into());
    config.secrets.webhook_backend_secret = Some(HOOK.to_string().into());
    (TestApp::spawn(config).await, fake, server)
}

/// The envelope of the `n`th task Chime sent, once it is there.
async fn nth_task(fake: &FakeService, n: usize) -> serde_json::Value {
    eventually(
        Duration::from_secs(20),
        &format!("task envelope {n}"),
        || async {
            fake.envelopes
                .lock()
                .unwrap()
                .iter()
                .filter(|e| e["type"] == "task")
                .nth(n - 1)
                .cloned()
        },
    )
    .await
}

async fn progress_follow_up_and_stop(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (app, fake, _server) = with_fake_service(&db, &slack, 60).await;
    let root = "1700001200.000100";
    // A secret in the request, or pasted into the thread, never reaches the service.
    let token = "ghp_Zq8vN3xK5pR2mW7tY4bJzq8vN3xK5pR2mW7t";
    let pasted = "AKIAZ7Q3X5V2N8M4K6J2";
    slack.add_user_message(
        "C1",
        root,
        "1700001200.000050",
        "U2",
        &format!("creds: {pasted}"),
    );
    app.post_event(&mention(
        "EvWs1",
        "C1",
        "U1",
        root,
        None,
        &format!("summarise the notes (token {token})"),
    ))
    .await;
    let first = nth_task(&fake, 1).await;
    assert!(!first.to_string().contains(token), "{first}");
    assert!(!first.to_string().contains(pasted), "{first}");
    assert!(
        first["input"]
            .as_str()
            .unwrap()
            .contains("creds: [redacted]"),
        "{first}"
    );
    assert!(first["prompt"]
        .as_str()
        .unwrap()
        .contains("[redacted: github_token]"));
    assert_eq!(first["previous"], serde_json::Value::Null);
    assert_eq!(
        first["callback_url"],
        "http://chime.example/backends/webhook/callback"
    );
    let task = first["task_id"].as_str().unwrap().to_string();
    let callback = |id: &str, kind: &str, text: &str| json!({ "version": 1, "id": id, "task_id": task, "type": kind, "text": text, "remote": "svc-A" });
    let base = app.url("");
    let http = &app.http;
    let now = chrono_now();
    let r = post_callback(
        http,
        &base,
        &callback("w1", "progress", "Reading the notes"),
        HOOK,
        now,
    )
    .await;
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(20), "the progress shown", || async {
        slack
            .calls("chat.update")
            .into_iter()
            .find(|c| c.to_string().contains("Reading the notes"))
    })
    .await;
    post_callback(
        http,
        &base,
        &callback("w2", "result", "Notes summarised"),
        HOOK,
        now,
    )
    .await;
    slack.card("C1", root, "Notes summarised").await;

    // A follow-up goes to the same remote session.
    app.post_event(&mention(
        "EvWs2",
        "C1",
        "U1",
        "1700001200.000200",
        Some(root),
        "shorter",
    ))
    .await;
    let second = nth_task(&fake, 2).await;
    assert_eq!(second["previous"], "svc-A");
    assert_eq!(second["session_id"], first["session_id"]);
    assert_eq!(second["turn"], 2);

    // Stop sends the service a signed cancel for that task.
    let stopped = second["task_id"].as_str().unwrap().to_string();
    app.click(&button(
        "chime_stop",
        &stopped,
        "U1",
        "C1",
        root,
        "1700001200.000300",
    ))
    .await;
    slack.card("C1", root, "Stopped").await;
    eventually(Duration::from_secs(20), "the cancel envelope", || async {
        fake.envelopes
            .lock()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "cancel" && e["task_id"] == stopped.as_str())
            .cloned()
    })
    .await;
    assert!(
        fake.violations.lock().unwrap().is_empty(),
        "{:?}",
        fake.violations.lock().unwrap()
    );
    app.stop().await;
}
dual_db!(follow_up_stop_test, progress_follow_up_and_stop);

/// A service that never calls back: the turn ends at its timeout with a clear reason, and the
/// service is told to stop.
async fn silent_service_times_out(db: TestDb) {
    let slack = FakeSlack::start().await;
    let (app, fake, _server) = with_fake_service(&db, &slack, 1).await;
    let root = "1700001300.000100";
    app.post_event(&mention(
        "EvWt1",
        "C1",
        "U1",
        root,
        None,
        "summarise the notes",
    ))
    .await;
    let card = slack.card("C1", root, "Failed").await;
    assert!(
        card["blocks"].to_string().contains("timed out after 1s"),
        "{card}"
    );
    let task = nth_task(&fake, 1).await["task_id"].clone();
    eventually(Duration::from_secs(20), "the cancel envelope", || async {
        fake.envelopes
            .lock()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "cancel" && e["task_id"] == task)
            .cloned()
    })
    .await;
    app.stop().await;
}
dual_db!(timeout_test, silent_service_times_out);
