//! Local mode: the playground's API, its trust rules, its refusal to listen beyond loopback, and
//! its access token.

mod common;

use common::*;
use reqwest::Method;
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
    app.playground(Method::POST, "/api/local/messages")
        .await
        .json(&body)
        .send()
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
        app.local_thread(&root)
            .await
            .into_iter()
            .find(|m| m["blocks"].to_string().contains("Dry run"))
    })
    .await;
    assert_eq!(result["user"], "UCHIME");
    let msgs = app.local_thread(&root).await;
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
            app.local_thread(&ts)
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
        .playground(Method::GET, "/api/sessions")
        .await
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
        .playground(Method::POST, "/api/local/messages")
        .await
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app.playground(Method::POST, "/api/local/actions").await.json(&json!({ "user": "U0ANA", "channel": "CGENERAL", "thread_ts": "1.1", "action_id": "rm -rf", "value": "x" })).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 0);
    app.stop().await;
}
dual_db!(bad_input_test, bad_playground_input_is_refused);

/// The page token in a page's HTML.
fn token_in(html: &str) -> String {
    let marker = r#"<meta name="chime-token" content=""#;
    let start = html.find(marker).expect("the page carries its token") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

/// With `CHIME_PLAYGROUND_TOKEN` (a playground shared beyond loopback), the operator's token is
/// needed on every request, any Host is accepted, and the API still needs the page token.
async fn access_token_guards_a_shared_playground(db: TestDb) {
    let slack = FakeSlack::start().await;
    let mut config = test_config(&db, &slack);
    config.secrets = Default::default();
    config.secrets.playground_token = Some(SecretString::from("s3cret-token"));
    let app = TestApp::spawn(config).await;
    for path in ["/", "/api/sessions"] {
        let r = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let page = app
        .http
        .get(app.url("/?token=s3cret-token"))
        .header("host", "chime.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("chime_token=s3cret-token")));
    let token = token_in(&page.text().await.unwrap());
    let sessions = |page_token: Option<String>| {
        let mut req = app
            .http
            .get(app.url("/api/sessions"))
            .header("host", "chime.example.com")
            .bearer_auth("s3cret-token");
        if let Some(t) = page_token {
            req = req.header("x-chime-token", t);
        }
        req.send()
    };
    assert_eq!(sessions(Some(token)).await.unwrap().status(), 200);
    assert_eq!(sessions(None).await.unwrap().status(), 403);
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
        app.local_thread(&root)
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

/// DNS rebinding and cross-site requests: a page on another origin, even one that resolves to
/// 127.0.0.1, can neither drive the playground nor read its sessions.
async fn rebinding_and_cross_site_requests_are_refused(db: TestDb) {
    let app = local_app(&db).await;
    let port = app.addr.port();
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    let token = token_in(&page.text().await.unwrap());
    let say_body = json!({ "channel": "CGENERAL", "user": "U0ANA", "text": "@chime run rm -rf" });
    let attacker = format!("attacker.example:{port}");

    // A rebound name: refused with a reason, for the page (which would hand out the token) and
    // for the API, even with the right token and a matching Origin.
    let r = app
        .http
        .get(app.url("/"))
        .header("host", &attacker)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let why: Value = r.json().await.unwrap();
    assert!(why["error"].as_str().unwrap().contains("Host"), "{why}");
    for (host, origin) in [
        (attacker.clone(), format!("http://{attacker}")),
        (
            format!("127.0.0.1:{}", port + 1),
            format!("http://127.0.0.1:{}", port + 1),
        ),
    ] {
        let r = app
            .http
            .post(app.url("/api/local/messages"))
            .header("host", &host)
            .header("origin", &origin)
            .header("x-chime-token", &token)
            .json(&say_body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{host}");
        let r = app
            .http
            .get(app.url("/api/sessions"))
            .header("host", &host)
            .header("x-chime-token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{host}");
    }

    // The right Host, but another origin: another site, or another port on localhost.
    for (origin, site) in [
        ("http://evil.example".to_string(), "cross-site"),
        (format!("http://localhost:{}", port + 1), "same-site"),
        ("null".to_string(), "cross-site"),
    ] {
        let r = app
            .http
            .post(app.url("/api/local/messages"))
            .header("origin", &origin)
            .header("x-chime-token", &token)
            .json(&say_body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{origin}");
        let why: Value = r.json().await.unwrap();
        assert!(why["error"].as_str().unwrap().contains("refused"), "{why}");
        for path in ["/api/sessions", "/api/digest"] {
            let r = app
                .http
                .get(app.url(path))
                .header("sec-fetch-site", site)
                .header("x-chime-token", &token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 403, "{site} {path}");
            assert!(r.headers().get("access-control-allow-origin").is_none());
        }
    }

    // No token, or a stale one: refused, on loopback too.
    for given in [None, Some("0".repeat(64))] {
        let mut req = app
            .http
            .post(app.url("/api/local/messages"))
            .json(&say_body);
        if let Some(t) = &given {
            req = req.header("x-chime-token", t);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 403);
        let why: Value = r.json().await.unwrap();
        assert!(why["error"].as_str().unwrap().contains("token"), "{why}");
        // Every read is guarded alike: the sessions and the digest.
        for path in ["/api/sessions", "/api/digest"] {
            let r = app.http.get(app.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 403, "{path}");
        }
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM local_messages").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 0);

    // The page's own requests: loopback names on the port, same origin, with the token.
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let r = app
            .http
            .get(app.url("/api/sessions"))
            .header("host", &host)
            .header("origin", format!("http://{host}"))
            .header("sec-fetch-site", "same-origin")
            .header("x-chime-token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{host}");
    }
    // The event stream cannot send headers: the cookie the page load set lets it in.
    let r = app
        .http
        .get(app.url("/api/local/stream"))
        .header("cookie", format!("chime_page={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    app.stop().await;
}
dual_db!(
    rebinding_test,
    rebinding_and_cross_site_requests_are_refused
);
