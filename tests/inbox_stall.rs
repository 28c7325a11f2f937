//! A Slack call that never answers holds up only its own event: other people's mentions are handled
//! meanwhile, and the stalled call itself gives up after `slack.http_timeout_secs`.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use wiremock::matchers::{path, query_param};
use wiremock::{Mock, ResponseTemplate};

/// users.info for `user` answers only after two minutes.
async fn stall_users_info(slack: &FakeSlack, user: &str) {
    Mock::given(path("/api/users.info"))
        .and(query_param("user", user))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": true, "user": { "id": user, "team_id": "T1" } }))
                .set_delay(Duration::from_secs(120)),
        )
        .with_priority(1)
        .mount(&slack.server)
        .await;
}

async fn asked_about(slack: &FakeSlack, user: &str) -> Option<()> {
    let requests = slack.server.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .any(|r| r.url.path() == "/api/users.info" && r.url.query().unwrap_or("").contains(user))
        .then_some(())
}

/// Issue 6 item 4: the inbox was handled one row after another, so one stalled users.info
/// stopped every later event.
async fn a_stalled_lookup_does_not_block_others(db: TestDb) {
    let slack = FakeSlack::start().await;
    stall_users_info(&slack, "USLOW").await;
    let mut config = test_config(&db, &slack);
    // Long enough that only concurrency, not the timeout, can let the second mention through.
    config.slack.http_timeout_secs = 300;
    let app = TestApp::spawn(config).await;
    let (slow_root, fast_root) = ("1700000000.400000", "1700000000.410000");
    app.post_event(&mention(
        "EvSlowUser",
        "C1",
        "USLOW",
        slow_root,
        None,
        "one",
    ))
    .await;
    eventually(
        Duration::from_secs(20),
        "the slow user's lookup started",
        || asked_about(&slack, "USLOW"),
    )
    .await;
    app.post_event(&mention(
        "EvFastUser",
        "C2",
        "UFAST",
        fast_root,
        None,
        "two",
    ))
    .await;
    // The status card, or already the dry run's result in its place.
    slack.card("C2", fast_root, "<@UFAST>").await;
    assert!(
        slack.thread("C1", slow_root).is_empty(),
        "the stalled lookup should still be pending"
    );
    app.stop().await;
}
dual_db!(stalled_lookup_test, a_stalled_lookup_does_not_block_others);

/// The stalled lookup itself ends at the HTTP timeout and the mention is answered either way
/// (started or refused, as `slack.on_lookup_error` says).
async fn a_stalled_lookup_times_out(db: TestDb) {
    let slack = FakeSlack::start().await;
    stall_users_info(&slack, "USLOW").await;
    let mut config = test_config(&db, &slack);
    config.slack.http_timeout_secs = 1;
    let app = TestApp::spawn(config).await;
    let root = "1700000000.420000";
    app.post_event(&mention("EvTimeout", "C1", "USLOW", root, None, "one"))
        .await;
    eventually(
        Duration::from_secs(20),
        "an answer in the thread",
        || async { (!slack.thread("C1", root).is_empty()).then_some(()) },
    )
    .await;
    app.stop().await;
}
dual_db!(lookup_timeout_test, a_stalled_lookup_times_out);
