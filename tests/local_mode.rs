//! Local mode: the playground's API, its trust rules, its refusal to listen beyond loopback, and
//! its access token.

mod common;

use common::*;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn local_app(db: &TestDb) -> TestApp {
    let slack = FakeSlack::start().await;
    let mut config = test_config(db, &slack);
    config.secrets = Default::default();
    TestApp::spawn(config).await
}

async fn say(app: &TestApp, body: Value) -> reqwest::Response {
    app.http
        .post(app.url("/api/local/messages"))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn thread(app: &TestApp, root: &str) -> Vec<Value> {
    let url = app.url(&format!("/api/local/channels/CGENERAL/threads/{root}"));
    app.http
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn playground_round_trip_and_trust(db: TestDb) {
    let app = local_app(&db).await;
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("/assets/app.js"));

    let posted: Value = say(
        &app,
        json!({ "channel": "CGENERAL", "user": "U0ANA", "text": "@chime add a health check" }),
    )
    .await
    .json()
    .await
    .unwrap();
    let root = posted["ts"].as_str().unwrap().to_string();
    let result = eventually(WAIT, "the dry-run result", || async {
        thread(&app, &root)
            .await
            .into_iter()
            .find(|m| m["blocks"].to_string().contains("Dry run"))
    })
    .await;
    assert_eq!(result["user"], "UCHIME");
    let msgs = thread(&app, &root).await;
    assert_eq!(
        msgs.len(),
        2,
        "the request and ONE status message, edited in place"
    );
    assert_eq!(msgs[0]["reactions"], json!(["eyes"]));

    // A guest and an external person are refused, in the thread, and nothing runs.
    for (user, why) in [("U0GUS", "guests cannot"), ("U0EVE", "other organisations")] {
        let p: Value = say(
            &app,
            json!({ "channel": "CGENERAL", "user": user, "text": "@chime do it" }),
        )
        .await
        .json()
        .await
        .unwrap();
        let ts = p["ts"].as_str().unwrap().to_string();
        eventually(WAIT, why, || async {
            thread(&app, &ts)
                .await
                .into_iter()
                .find(|m| m["text"].as_str().unwrap_or("").contains(why))
        })
        .await;
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);

    // A message without a mention is just a message.
    say(
        &app,
        json!({ "channel": "CGENERAL", "user": "U0BEN", "text": "lunch?" }),
    )
    .await;
    // The sessions view lists the session with its turns.
    let sessions: Value = app
        .http
        .get(app.url("/api/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sessions.as_array().unwrap().len(), 1);
    assert_eq!(sessions[0]["entry_point"], "local");
    assert_eq!(sessions[0]["state"], "succeeded");
    assert_eq!(sessions[0]["link"], format!("/#/thread/CGENERAL/{root}"));
    app.stop().await;
}
dual_db!(playground_test, playground_round_trip_and_trust);

async fn bad_playground_input_is_refused(db: TestDb) {
    let app = local_app(&db).await;
    let cases = [
        (
            json!({ "channel": "CNOPE", "user": "U0ANA", "text": "@chime hi" }),
            400,
        ),
        (
            json!({ "channel": "CGENERAL", "user": "UNOPE", "text": "@chime hi" }),
            400,
        ),
        (
            json!({ "channel": "CGENERAL", "user": "U0ANA", "text": "   " }),
            400,
        ),
        (
            json!({ "channel": "CGENERAL", "user": "U0ANA", "text": "x".repeat(5000) }),
            413,
        ),
        (
            json!({ "channel": "CGENERAL", "user": "U0ANA", "text": "@chime hi", "thread_ts": "999.1" }),
            400,
        ),
        (json!({ "channel": 5 }), 400),
    ];
    for (body, status) in cases {
        let r = say(&app, body.clone()).await;
        assert_eq!(r.status().as_u16(), status, "{body}");
        let err: Value = r.json().await.unwrap();
        assert!(
            err["error"].as_str().is_some_and(|e| !e.is_empty()),
            "a reason is given"
        );
    }
    let r = app
        .http
        .post(app.url("/api/local/messages"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app.http.post(app.url("/api/local/actions")).json(&json!({ "user": "U0ANA", "channel": "CGENERAL", "thread_ts": "1.1", "action_id": "rm -rf", "value": "x" })).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 0);
    app.stop().await;
}
dual_db!(bad_input_test, bad_playground_input_is_refused);

async fn access_token_guards_a_shared_playground(db: TestDb) {
    let slack = FakeSlack::start().await;
    let mut config = test_config(&db, &slack);
    config.secrets = Default::default();
    config.secrets.playground_token = Some(SecretString::from("s3cret-token"));
    let app = TestApp::spawn(config).await;
    assert_eq!(
        app.http
            .get(app.url("/api/sessions"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let ok = app
        .http
        .get(app.url("/api/sessions"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let page = app
        .http
        .get(app.url("/?token=s3cret-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("chime_token=s3cret-token"));
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "health stays open"
    );
    app.stop().await;
}
dual_db!(token_test, access_token_guards_a_shared_playground);

#[test]
fn refuses_to_expose_the_playground() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], token: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chime"));
        cmd.arg("serve")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        cmd.env("CHIME_LISTEN", "0.0.0.0:0").env(
            "DATABASE_URL",
            format!("sqlite://{}/x.db", dir.path().display()),
        );
        if let Some(t) = token {
            cmd.env("CHIME_PLAYGROUND_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let out = run(&[], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve the local playground on 0.0.0.0"),
        "{err}"
    );
    assert!(err.contains("--allow-remote-playground"), "{err}");
    let out = run(&["--allow-remote-playground"], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CHIME_PLAYGROUND_TOKEN"));
}

/// U+0000 in a playground message, or in an agent's result shown in the playground, is stored and
/// shown like any other text (Postgres refuses NUL in TEXT columns, so it must not reach one).
async fn nul_in_playground_text(db: TestDb) {
    use std::os::unix::fs::PermissionsExt;
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let agent = tmp.path().join("agent.sh");
    std::fs::write(
        &agent,
        "#!/bin/bash\ncat >/dev/null\necho '{\"type\":\"result\",\"text\":\"done \\u0000 and dusted\"}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = test_config(&db, &slack);
    config.secrets = Default::default();
    config.agent.workdir = tmp.path().join("work");
    command_backend(&mut config, "agent", vec![agent.display().to_string()], 60);
    let app = TestApp::spawn(config).await;
    let r = say(
        &app,
        json!({ "channel": "CGENERAL", "user": "U0ANA", "text": "@chime fix the \u{0} parser" }),
    )
    .await;
    assert_eq!(r.status(), 201, "{:?}", r.text().await);
    let root = r.json::<Value>().await.unwrap()["ts"]
        .as_str()
        .unwrap()
        .to_string();
    let card = eventually(WAIT, "the result in the playground", || async {
        thread(&app, &root)
            .await
            .into_iter()
            .find(|m| m["blocks"].to_string().contains("and dusted"))
    })
    .await;
    assert!(card["blocks"].to_string().contains("done"), "{card}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'")
            .await,
        1
    );
    app.stop().await;
}
dual_db!(nul_test, nul_in_playground_text);
