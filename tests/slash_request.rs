//! `/chime <request>`: work asked for outside any thread. A signed slash command in, a thread
//! opened by Chime on the fake Slack, and the task's status in that thread; refusals in private.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

async fn slash(app: &TestApp, user: &str, channel: &str, trigger: &str, text: &str) -> Value {
    let r = slash_in(app, user, channel, trigger, text).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Top-level posts in `channel` (the roots Chime opened).
fn roots(slack: &FakeSlack, channel: &str) -> Vec<Value> {
    slack
        .calls("chat.postMessage")
        .into_iter()
        .filter(|p| p["channel"] == channel && p.get("thread_ts").is_none_or(Value::is_null))
        .collect()
}

async fn handled(app: &TestApp) {
    eventually(Duration::from_secs(10), "every event handled", || async {
        (app.count("SELECT COUNT(*) FROM inbox WHERE state <> 'done'")
            .await
            == 0)
            .then_some(())
    })
    .await;
}

/// A member's request opens a thread in the channel, attributed and quoted, and the task runs
/// there exactly as a mention's would. Slack's retry of the command opens nothing more.
async fn request_opens_a_thread(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let answer = slash(
        &app,
        "U1",
        "C4",
        "13345.99",
        "fix the flaky login test <!channel>",
    )
    .await;
    assert_eq!(answer["response_type"], "ephemeral");
    assert!(answer["text"]
        .as_str()
        .unwrap()
        .contains("starting a thread"));

    let root = eventually(
        Duration::from_secs(10),
        "the request's root post",
        || async { roots(&slack, "C4").into_iter().next() },
    )
    .await;
    let blocks = root["blocks"].to_string();
    assert!(blocks.contains("<@U1> asked Chime"), "{blocks}");
    assert!(blocks.contains("fix the flaky login test"), "{blocks}");
    assert!(
        !blocks.contains("<!channel>"),
        "the request's text pinged: {blocks}"
    );
    let root_ts = slack.state.lock().unwrap().messages["C4"][0]["ts"]
        .as_str()
        .unwrap()
        .to_string();
    let card = slack.card("C4", &root_ts, "Dry run").await;
    assert!(card["blocks"]
        .to_string()
        .contains("fix the flaky login test"));
    assert_eq!(
        app.text("SELECT binding FROM tasks").await,
        format!("slack:T1/C4/{root_ts}")
    );
    assert_eq!(app.text("SELECT requester FROM tasks").await, "U1");

    // Slack retries a command it thinks was lost: the same trigger opens no second thread.
    slash(
        &app,
        "U1",
        "C4",
        "13345.99",
        "fix the flaky login test <!channel>",
    )
    .await;
    handled(&app).await;
    assert_eq!(roots(&slack, "C4").len(), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
    app.stop().await;
}
dual_db!(opens_thread_test, request_opens_a_thread);

/// A guest's request never lands in the channel: the thread and the refusal are in their DM.
/// Where Chime is not in the channel, a member's request moves to their DM and still runs.
async fn refusals_and_closed_channels_go_private(db: TestDb) {
    let slack = FakeSlack::start().await;
    slack.set_user(
        "UGUEST",
        json!({ "id": "UGUEST", "team_id": "T1", "is_restricted": true }),
    );
    slack.leave("CSECRET");
    let app = TestApp::spawn(test_config(&db, &slack)).await;

    slash(&app, "UGUEST", "C4", "200.1", "deploy to production").await;
    let refusal = eventually(Duration::from_secs(10), "the refusal", || async {
        slack
            .calls("chat.postMessage")
            .into_iter()
            .find(|p| p["blocks"].to_string().contains("guests cannot"))
    })
    .await;
    assert_eq!(refusal["channel"], "DUGUEST");
    assert!(
        roots(&slack, "C4").is_empty(),
        "a refused request was posted in the channel"
    );
    handled(&app).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);

    slash(&app, "U2", "CSECRET", "200.2", "bump serde").await;
    let root = eventually(Duration::from_secs(10), "the request in a DM", || async {
        roots(&slack, "DU2").into_iter().next()
    })
    .await;
    assert!(root["blocks"].to_string().contains("bump serde"));
    handled(&app).await;
    assert!(app
        .text("SELECT binding FROM tasks")
        .await
        .starts_with("slack:T1/DU2/"));
    app.stop().await;
}
dual_db!(private_test, refusals_and_closed_channels_go_private);
