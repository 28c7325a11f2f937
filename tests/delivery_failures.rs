//! When Slack refuses a message for good, or keeps failing, the person still learns how their task
//! ended and the thread's later messages still go out.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use wiremock::matchers::{body_string_contains, path};
use wiremock::{Mock, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(30);

/// chat.update calls whose body contains `marker` get `response`.
async fn refuse_updates(slack: &FakeSlack, marker: &str, response: ResponseTemplate) {
    Mock::given(path("/api/chat.update"))
        .and(body_string_contains(marker))
        .respond_with(response)
        .with_priority(1)
        .mount(&slack.server)
        .await;
}

/// Chime's messages in a thread, oldest first.
fn chime_messages(slack: &FakeSlack, channel: &str, root: &str) -> Vec<Value> {
    slack
        .thread(channel, root)
        .into_iter()
        .filter(|m| m["user"] == "UBOT")
        .collect()
}

async fn row_error(app: &TestApp, state: &str) -> String {
    use sqlx::Row;
    sqlx::query("SELECT last_error FROM outbox WHERE state = $1 AND idempotency_key LIKE '%:final'")
        .bind(state)
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
        .get::<Option<String>, _>(0)
        .unwrap_or_default()
}

/// Issue 6 item 3: Slack answered `invalid_blocks` to a failed task's card and the status kept
/// saying "Working on it". Now a minimal card with the state, a short reason and Retry replaces it.
async fn refused_final_card_gets_a_fallback(db: TestDb) {
    let slack = FakeSlack::start().await;
    // The failed card quotes the error in a code block; nothing else Chime sends here does.
    refuse_updates(
        &slack,
        "```",
        ResponseTemplate::new(200).set_body_json(json!({ "ok": false, "error": "invalid_blocks" })),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let agent = write_agent(
        dir.path(),
        "cat >/dev/null\necho 'error[E0308]: expected Vec<Option<Box<T>>>, found Vec<T>' >&2\nexit 1",
    );
    let mut config = test_config(&db, &slack);
    config.agent.workdir = dir.path().join("work");
    command_backend(&mut config, "agent", vec![agent], 60);
    let app = TestApp::spawn(config).await;
    let root = "1700000000.500000";
    app.post_event(&mention(
        "EvRefused",
        "C1",
        "U1",
        root,
        None,
        "fix the build",
    ))
    .await;
    let card = slack.card("C1", root, "could not be shown").await;
    let blocks = card["blocks"].to_string();
    assert!(blocks.contains("*Failed*"), "{blocks}");
    assert!(blocks.contains("invalid_blocks"), "says why: {blocks}");
    assert!(
        blocks.contains("E0308"),
        "gives the error's first line: {blocks}"
    );
    assert!(blocks.contains("chime_retry"), "offers Retry: {blocks}");
    assert!(!blocks.contains("Working on it"));
    assert_eq!(
        chime_messages(&slack, "C1", root).len(),
        1,
        "edits the status"
    );
    assert!(row_error(&app, "failed").await.contains("invalid_blocks"));
    app.stop().await;
}
dual_db!(refused_final_test, refused_final_card_gets_a_fallback);

/// Issue 6 item 12: a transient error that never clears was retried forever and held every later
/// message of its thread behind it. Now it is given up after `worker.max_send_attempts`, the
/// final card falls back, and the thread's next turn is answered.
async fn endless_transient_errors_are_capped(db: TestDb) {
    let slack = FakeSlack::start().await;
    // Every dry-run result card meets a Slack that keeps failing.
    refuse_updates(
        &slack,
        ":test_tube:",
        ResponseTemplate::new(500).set_body_string("upstream trouble"),
    )
    .await;
    let mut config = test_config(&db, &slack);
    config.worker.max_send_attempts = 2;
    let app = TestApp::spawn(config).await;
    let root = "1700000000.600000";
    app.post_event(&mention("EvFlaky1", "C1", "U1", root, None, "first"))
        .await;
    let card = slack.card("C1", root, "could not be shown").await;
    let blocks = card["blocks"].to_string();
    assert!(blocks.contains("*Done*"), "{blocks}");
    assert!(blocks.contains("gave up after 2 attempts"), "{blocks}");
    assert!(row_error(&app, "failed")
        .await
        .contains("gave up after 2 attempts"));

    // The thread's queue moves on: a second turn gets its own status message.
    app.post_event(&mention(
        "EvFlaky2",
        "C1",
        "U1",
        "1700000000.600100",
        Some(root),
        "second",
    ))
    .await;
    eventually(WAIT, "the second turn's message", || async {
        (chime_messages(&slack, "C1", root).len() == 2).then_some(())
    })
    .await;
    app.stop().await;
}
dual_db!(transient_cap_test, endless_transient_errors_are_capped);
