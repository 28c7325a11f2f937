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
