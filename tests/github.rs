//! GitHub's webhook for the pull requests Chime's turns opened: a turn that reports a pull
//! request is tracked; signed `check_suite` and `pull_request` deliveries move it and the thread
//! hears of CI and the merge once; forged, replayed and unconfigured deliveries change nothing.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const HOOK_SECRET: &str = "github-hook-secret-0123456789";
const PR: &str = "https://github.com/acme/api/pull/7";

async fn deliver(
    app: &TestApp,
    event: &str,
    guid: &str,
    body: &Value,
    secret: &str,
) -> reqwest::Response {
    let body = body.to_string();
    app.http
        .post(app.url("/github/webhook"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", guid)
        .header(
            "x-hub-signature-256",
            chime::github::sign(secret, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap()
}

fn suite(conclusion: &str, number: i64) -> Value {
    json!({ "action": "completed", "repository": { "full_name": "acme/api" },
        "check_suite": { "conclusion": conclusion, "head_sha": "abc123", "head_branch": "chime/x",
            "pull_requests": [{ "number": number }] } })
}

fn closed(merged: bool) -> Value {
    json!({ "action": "closed", "number": 7, "repository": { "full_name": "acme/api" },
        "pull_request": { "number": 7, "merged": merged, "html_url": PR } })
}

/// Thread messages that mention the pull request after the result card.
fn news(slack: &FakeSlack, root: &str) -> Vec<String> {
    slack
        .thread("C9", root)
        .into_iter()
        .map(|m| m["blocks"].to_string())
        .filter(|b| b.contains("CI ") || b.contains("was merged") || b.contains("was closed"))
        .collect()
}

async fn pull_request_news_reaches_the_thread_once(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = write_agent(
        dir.path(),
        &format!("cat >/dev/null\necho '{{\"type\":\"pr\",\"url\":\"{PR}\"}}'\necho '{{\"type\":\"result\",\"text\":\"opened a pull request\"}}'"),
    );
    let mut config = test_config(&db, &slack);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = dir.path().join("work");
    config.secrets.github_webhook_secret = Some(HOOK_SECRET.to_string().into());
    let app = TestApp::spawn(config).await;
    let root = "1700000900.000100";
    app.post_event(&mention(
        "EvG1",
        "C9",
        "U1",
        root,
        None,
        "fix the flaky test",
    ))
    .await;
    slack.card("C9", root, "opened a pull request").await;
    eventually(
        Duration::from_secs(10),
        "the pull request tracked",
        || async {
            (app.count("SELECT COUNT(*) FROM pull_requests WHERE state = 'open'")
                .await
                == 1)
                .then_some(())
        },
    )
    .await;

    // CI failed: one short reply, addressed to the requester.
    let r = deliver(
        &app,
        "check_suite",
        "guid-1",
        &suite("failure", 7),
        HOOK_SECRET,
    )
    .await;
    assert_eq!(r.status(), 200);
    let ci = eventually(Duration::from_secs(10), "the CI news", || async {
        news(&slack, root).into_iter().next()
    })
    .await;
    assert!(
        ci.contains("CI did not pass") && ci.contains(PR) && ci.contains("<@U1>"),
        "{ci}"
    );

    // Redelivered (same GUID), replayed under a new GUID, forged, or for a pull request Chime did
    // not open: nothing more is said.
    let replayed = deliver(
        &app,
        "check_suite",
        "guid-1",
        &suite("failure", 7),
        HOOK_SECRET,
    )
    .await;
    assert_eq!(replayed.status(), 401, "a replayed delivery");
    deliver(
        &app,
        "check_suite",
        "guid-2",
        &suite("failure", 7),
        HOOK_SECRET,
    )
    .await;
    let forged = deliver(
        &app,
        "pull_request",
        "guid-3",
        &closed(true),
        "not-the-secret",
    )
    .await;
    assert_eq!(forged.status(), 401);
    let unsigned = app
        .http
        .post(app.url("/github/webhook"))
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "guid-4")
        .body(closed(true).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    deliver(
        &app,
        "check_suite",
        "guid-5",
        &suite("success", 99),
        HOOK_SECRET,
    )
    .await;
    let bad = deliver(&app, "pull_request", "guid-6", &json!({ "action": "closed", "repository": { "full_name": "a/../b" }, "pull_request": { "number": 7 } }), HOOK_SECRET).await;
    assert_eq!(bad.status(), 400);
    eventually(
        Duration::from_secs(10),
        "every delivery handled",
        || async {
            (app.count("SELECT COUNT(*) FROM inbox WHERE state <> 'done'")
                .await
                == 0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(news(&slack, root).len(), 1, "{:?}", news(&slack, root));
    assert_eq!(app.text("SELECT state FROM pull_requests").await, "open");

    // CI passes, then the merge: one reply each, and the stored state has the time.
    deliver(
        &app,
        "check_suite",
        "guid-7",
        &suite("success", 7),
        HOOK_SECRET,
    )
    .await;
    deliver(&app, "pull_request", "guid-8", &closed(true), HOOK_SECRET).await;
    eventually(Duration::from_secs(10), "the merge news", || async {
        news(&slack, root)
            .iter()
            .any(|m| m.contains("was merged"))
            .then_some(())
    })
    .await;
    let all = news(&slack, root);
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(all[1].contains("CI passed"), "{all:?}");
    assert_eq!(app.text("SELECT state FROM pull_requests").await, "merged");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM pull_requests WHERE merged_at IS NOT NULL")
            .await,
        1
    );
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM pull_request_events ORDER BY at, kind")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    for k in ["opened", "checks:failure", "checks:success", "merged"] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing: {kinds:?}");
    }
    app.stop().await;
}
dual_db!(news_test, pull_request_news_reaches_the_thread_once);

/// Without GITHUB_WEBHOOK_SECRET the endpoint refuses everything, signed or not.
async fn unconfigured_webhook_refuses(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let r = deliver(&app, "pull_request", "guid-1", &closed(true), HOOK_SECRET).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("GITHUB_WEBHOOK_SECRET"));
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 0);
    app.stop().await;
}
dual_db!(unconfigured_test, unconfigured_webhook_refuses);
