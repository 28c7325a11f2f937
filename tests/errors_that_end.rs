//! Errors that end (issue 7 item 5): work that can never succeed is parked once, with its reason,
//! instead of being retried forever; work that may succeed later keeps its retries.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;
use wiremock::matchers::{body_string_contains, path};
use wiremock::{Mock, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(30);

/// A queued playground task, restarted in Slack-only mode, was claimed every lease forever
/// ("no reporter for surface local"). Now it fails once, with its reason, and stays failed.
async fn task_of_a_surface_not_running_fails_once(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = write_agent(dir.path(), "cat >/dev/null\nsleep 60\necho done");
    let mut config = test_config(&db, &slack);
    config.secrets = Default::default();
    config.agent.workdir = dir.path().join("work");
    config.worker.concurrency = 1;
    command_backend(&mut config, "slow", vec![agent], 120);
    let local = TestApp::spawn(config.clone()).await;
    for (i, text) in ["@chime first", "@chime second"].iter().enumerate() {
        let r = local
            .playground(Method::POST, "/api/local/messages")
            .await
            .json(&json!({ "channel": "CGENERAL", "user": "U0ANA", "text": text }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "message {i} accepted");
    }
    eventually(WAIT, "one task running and one queued", || async {
        let running = local
            .count("SELECT COUNT(*) FROM tasks WHERE state = 'running'")
            .await;
        let queued = local
            .count("SELECT COUNT(*) FROM tasks WHERE state = 'queued'")
            .await;
        (running == 1 && queued == 1).then_some(())
    })
    .await;
    let store = local.db.clone();
    local.stop().await;
    // An accepted playground event not yet handled at the restart (a replay of a real one).
    sqlx::query(
        "INSERT INTO inbox (source, delivery_id, payload, received_at) \
         SELECT source, 'unhandled', payload, received_at FROM inbox WHERE source = 'local' AND payload LIKE '%second%'",
    )
    .execute(&store.pool)
    .await
    .unwrap();

    // The same database, now with Slack credentials: the playground is not running.
    let mut config = test_config(&db, &slack);
    config.agent.workdir = dir.path().join("work");
    config.worker.concurrency = 1;
    command_backend(
        &mut config,
        "slow",
        vec![write_agent(dir.path(), "cat >/dev/null\necho done")],
        120,
    );
    let app = TestApp::spawn(config).await;
    eventually(WAIT, "both tasks failed", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE state = 'failed'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    let error = app
        .text("SELECT error FROM tasks ORDER BY created_at LIMIT 1")
        .await;
    assert!(
        error.contains("local") && error.contains("not running"),
        "{error}"
    );
    let attempts = app
        .count("SELECT CAST(SUM(attempts) AS BIGINT) FROM tasks")
        .await;
    // Longer than two leases: a task that loops would be claimed again meanwhile.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        app.count("SELECT CAST(SUM(attempts) AS BIGINT) FROM tasks")
            .await,
        attempts,
        "nothing is claimed again"
    );
    assert!(attempts <= 4, "attempts stay bounded: {attempts}");
    // The event is parked once, with its reason, not retried with backoff forever.
    let parked = "FROM inbox WHERE delivery_id = 'unhandled' AND state = 'failed'";
    assert_eq!(app.count(&format!("SELECT attempts {parked}")).await, 1);
    let reason = app.text(&format!("SELECT last_error {parked}")).await;
    assert!(reason.contains("local surface is not running"), "{reason}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE state = 'failed'")
            .await,
        2
    );
    assert!(
        slack.calls("chat.postMessage").is_empty(),
        "nothing goes to Slack"
    );
    app.stop().await;
}
dual_db!(
    surface_not_running_test,
    task_of_a_surface_not_running_fails_once
);

/// Requests to `method` whose body contains `marker`, as the fake Slack received them (including
/// those a refusing mock answered, which the fake's own record does not hold).
async fn received(slack: &FakeSlack, method: &str, marker: &str) -> usize {
    slack
        .server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == format!("/api/{method}"))
        .filter(|r| String::from_utf8_lossy(&r.body).contains(marker))
        .count()
}

/// A post Slack refuses for good (`channel_not_found`) is parked after one try, and later work in
/// other channels still gets its answer; a 500 or a 429 is still retried until the post goes out.
async fn refused_posts_are_parked_after_one_try(db: TestDb) {
    let slack = FakeSlack::start().await;
    Mock::given(path("/api/chat.postMessage"))
        .and(body_string_contains("CGONE"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": false, "error": "channel_not_found" })),
        )
        .with_priority(1)
        .mount(&slack.server)
        .await;
    // C500's first post meets a server error, then Slack recovers.
    Mock::given(path("/api/chat.postMessage"))
        .and(body_string_contains("C500"))
        .respond_with(ResponseTemplate::new(500).set_body_string("upstream trouble"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&slack.server)
        .await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;

    let gone = "1700000000.700000";
    app.post_event(&mention("EvGone", "CGONE", "U1", gone, None, "hello"))
        .await;
    eventually(WAIT, "every CGONE row settled", || async {
        let open = app
            .count("SELECT COUNT(*) FROM outbox WHERE target LIKE '%CGONE%' AND state IN ('pending', 'sending')")
            .await;
        let failed = app
            .count("SELECT COUNT(*) FROM outbox WHERE target LIKE '%CGONE%' AND state = 'failed'")
            .await;
        (open == 0 && failed > 0).then_some(())
    })
    .await;
    let status_error = app
        .text("SELECT last_error FROM outbox WHERE target LIKE '%CGONE%' AND kind IN ('post', 'stream_start') ORDER BY id LIMIT 1")
        .await;
    assert!(status_error.contains("channel_not_found"), "{status_error}");
    assert_eq!(
        app.count("SELECT MAX(attempts) FROM outbox WHERE target LIKE '%CGONE%'")
            .await,
        1,
        "each refused row was tried once"
    );
    // A refused final card queues its fallback just after the row is parked, so settle on both
    // counts: every post row sent exactly once.
    eventually(WAIT, "every CGONE post sent exactly once", || async {
        let posts = app
            .count("SELECT COUNT(*) FROM outbox WHERE target LIKE '%CGONE%' AND kind IN ('post', 'stream_start')")
            .await as usize;
        let open = app
            .count("SELECT COUNT(*) FROM outbox WHERE target LIKE '%CGONE%' AND state IN ('pending', 'sending')")
            .await;
        let sent = received(&slack, "chat.postMessage", "CGONE").await;
        assert!(sent <= posts, "a post was sent twice: {sent} sends for {posts} rows");
        (open == 0 && sent == posts).then_some(())
    })
    .await;

    // Later work in other channels is answered: after a 500, and after a 429.
    let (flaky, limited) = ("1700000000.700100", "1700000000.700200");
    app.post_event(&mention("Ev500", "C500", "U1", flaky, None, "hello"))
        .await;
    slack.card("C500", flaky, ":test_tube:").await;
    assert!(
        received(&slack, "chat.postMessage", "C500").await >= 2,
        "the 500 was retried"
    );
    slack.rate_limit_next_posts(1);
    app.post_event(&mention("Ev429", "C429", "U1", limited, None, "hello"))
        .await;
    slack.card("C429", limited, ":test_tube:").await;
    assert!(
        received(&slack, "chat.postMessage", "C429").await >= 2,
        "the 429 was retried"
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM outbox WHERE state = 'failed' AND target NOT LIKE '%CGONE%'"
        )
        .await,
        0
    );
    app.stop().await;
}
dual_db!(refused_post_test, refused_posts_are_parked_after_one_try);
