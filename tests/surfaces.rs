//! Several surfaces in one process: Slack and the playground (`chime serve --playground`) side by
//! side, each answering on its own surface, and one Sessions view over both.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

async fn slack_and_playground_side_by_side(db: TestDb) {
    let slack = FakeSlack::start().await;
    let mut config = test_config(&db, &slack);
    config.playground.enabled = true;
    let app = TestApp::spawn(config).await;

    // A Slack mention and a playground mention at the same time.
    let playground = async {
        app.playground(Method::POST, "/api/local/messages")
            .await
            .json(&json!({ "channel": "CGENERAL", "user": "U0ANA", "text": "@chime add a playground health check" }))
            .send()
            .await
            .unwrap()
    };
    let event = mention(
        "EvBoth1",
        "C1",
        "U1",
        "1700000000.000100",
        None,
        "add a slack health check",
    );
    let from_slack = app.post_event(&event);
    let (posted, r) = tokio::join!(playground, from_slack);
    assert_eq!(r.status(), 200);
    assert_eq!(posted.status(), 201);
    let posted: Value = posted.json().await.unwrap();
    let root = posted["ts"].as_str().unwrap().to_string();

    // Each gets its answer on its own surface.
    let card = slack.card("C1", "1700000000.000100", "Dry run").await;
    assert!(card["blocks"].to_string().contains("slack health check"));
    let local = eventually(WAIT, "the playground's dry-run result", || async {
        app.local_thread(&root)
            .await
            .into_iter()
            .find(|m| m["blocks"].to_string().contains("Dry run"))
    })
    .await;
    assert!(local["blocks"]
        .to_string()
        .contains("playground health check"));
    assert_eq!(local["user"], "UCHIME");

    // Nothing crossed over: Slack heard only about C1, the playground only its own thread.
    for method in ["chat.postMessage", "chat.update", "reactions.add"] {
        for call in slack.calls(method) {
            assert_eq!(
                call["channel"], "C1",
                "{method} went to Slack for another surface: {call}"
            );
            assert!(!call.to_string().contains("playground health"), "{call}");
        }
    }
    let msgs = app.local_thread(&root).await;
    assert_eq!(
        msgs.len(),
        2,
        "the request and one status message: {msgs:?}"
    );
    assert!(!msgs.iter().any(|m| m.to_string().contains("slack health")));

    // One Sessions view lists both, each linking to where it lives.
    let sessions: Value = app
        .playground(Method::GET, "/api/sessions")
        .await
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = sessions.as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let by_entry = |e: &str| {
        sessions
            .iter()
            .find(|s| s["entry_point"] == e)
            .unwrap_or_else(|| panic!("no {e} session in {sessions:?}"))
            .clone()
    };
    let (s, l) = (by_entry("slack"), by_entry("local"));
    assert_eq!(s["state"], "succeeded");
    assert_eq!(l["state"], "succeeded");
    assert_eq!(
        s["link"],
        "https://slack.com/app_redirect?team=T1&channel=C1&message_ts=1700000000.000100"
    );
    assert_eq!(l["link"], format!("/#/thread/CGENERAL/{root}"));
    app.stop().await;
}
dual_db!(side_by_side_test, slack_and_playground_side_by_side);

/// Without `--playground`, a Slack process serves no playground.
async fn slack_alone_has_no_playground(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 404);
    let api = app.http.get(app.url("/api/sessions")).send().await.unwrap();
    assert_eq!(api.status(), 404);
    app.stop().await;
}
dual_db!(slack_alone_test, slack_alone_has_no_playground);

/// `chime serve --playground` beside Slack keeps the playground's rule: loopback only.
#[test]
fn playground_beside_slack_stays_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chime"))
        .args(["serve", "--playground"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CHIME_LISTEN", "0.0.0.0:0")
        .env("SLACK_BOT_TOKEN", "xoxb-test-token")
        .env("SLACK_SIGNING_SECRET", "test-secret")
        .env("SLACK_API_URL", "http://127.0.0.1:9")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/x.db", dir.path().display()),
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve the local playground on 0.0.0.0"),
        "{err}"
    );
}

/// A session bound to two places answers each turn where that turn was asked: the first in Slack,
/// the second in the playground thread bound to the same session (as a Linear agent session or
/// an IDE connection will be).
async fn each_turn_answers_where_it_was_asked(db: TestDb) {
    let slack = FakeSlack::start().await;
    let mut config = test_config(&db, &slack);
    config.playground.enabled = true;
    let app = TestApp::spawn(config).await;
    let r = app
        .post_event(&mention(
            "EvTwo1",
            "C1",
            "U1",
            "1700000000.000500",
            None,
            "first turn from slack",
        ))
        .await;
    assert_eq!(r.status(), 200);
    slack.card("C1", "1700000000.000500", "Dry run").await;

    // A playground thread, bound to the Slack thread's session.
    let root: Value = app
        .playground(Method::POST, "/api/local/messages")
        .await
        .json(&json!({ "channel": "CGENERAL", "user": "U0ANA", "text": "carrying on here" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let root = root["ts"].as_str().unwrap().to_string();
    let session = app.text("SELECT id FROM sessions").await;
    let place: chime::binding::Binding = format!("local:CGENERAL/{root}").parse().unwrap();
    let mut conn = app.db.pool.acquire().await.unwrap();
    chime::session::bind(&mut conn, &chime::ids::SessionId::new(&session), &place)
        .await
        .unwrap();
    drop(conn);

    let posts_before = slack.calls("chat.postMessage").len();
    let r = app
        .playground(Method::POST, "/api/local/messages")
        .await
        .json(&json!({ "channel": "CGENERAL", "user": "U0ANA", "text": "@chime second turn from the playground", "thread_ts": root }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let answer = eventually(
        WAIT,
        "the second turn's result in the playground",
        || async {
            app.local_thread(&root)
                .await
                .into_iter()
                .find(|m| m["blocks"].to_string().contains("Dry run"))
        },
    )
    .await;
    // Turn 2 of the same session, with turn 1 in its history.
    assert!(answer["blocks"].to_string().contains("turn 2"), "{answer}");
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(
        app.text("SELECT binding FROM tasks WHERE turn_no = 2")
            .await,
        place.to_string()
    );
    assert_eq!(
        slack.calls("chat.postMessage").len(),
        posts_before,
        "the playground's turn posted nothing to Slack"
    );
    assert!(!slack
        .calls("chat.update")
        .iter()
        .any(|u| u.to_string().contains("second turn")));
    app.stop().await;
}
dual_db!(two_places_test, each_turn_answers_where_it_was_asked);
