//! Errors that end (issue 7 item 5): work that can never succeed is parked once, with its reason,
//! instead of being retried forever; work that may succeed later keeps its retries.

mod common;

use common::*;
use reqwest::Method;
use serde_json::json;
use std::time::Duration;

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
    local.stop().await;

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
    let attempts = app.count("SELECT SUM(attempts) FROM tasks").await;
    // Longer than two leases: a task that loops would be claimed again meanwhile.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        app.count("SELECT SUM(attempts) FROM tasks").await,
        attempts,
        "nothing is claimed again"
    );
    assert!(attempts <= 4, "attempts stay bounded: {attempts}");
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
