//! Caps on load (`[limits]`), through signed mentions: a person over their cap of turns at once
//! is told so and nothing is queued (it starts only when they ask again, once there is room);
//! another person is not held back; a day's cap and a session's turn cap refuse with their reason;
//! two replicas on one database enforce one cap.

mod common;

use chime::config::LimitsConfig;
use common::process::{free_port, ChimeProcess, FAST_CONFIG};
use common::*;
use futures::stream::{self, StreamExt};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn no_caps() -> LimitsConfig {
    LimitsConfig {
        concurrent_per_person: 0,
        concurrent_per_channel: 0,
        concurrent_per_workspace: 0,
        daily_per_person: 0,
        daily_per_channel: 0,
        daily_per_workspace: 0,
        turns_per_session: 0,
    }
}

/// An agent that works until the test lets it go (a `release` file).
fn held_agent(dir: &std::path::Path) -> String {
    let release = dir.join("release");
    write_agent(
        dir,
        &format!(
            "cat >/dev/null\nwhile [ ! -f {r} ]; do sleep 0.1; done\necho '{{\"type\":\"result\",\"text\":\"released\"}}'",
            r = release.display()
        ),
    )
}

async fn person_cap_refuses_and_does_not_queue(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, &slack);
    command_backend(&mut config, "agent", vec![held_agent(dir.path())], 60);
    // A workdir of its own: another test's Chime sweeps the default one's sessions it does not
    // know (git clean then fails under the running agent).
    config.agent.workdir = dir.path().join("work");
    config.limits = LimitsConfig {
        concurrent_per_person: 2,
        ..no_caps()
    };
    let app = TestApp::spawn(config).await;
    for (i, root) in ["1700000100.000001", "1700000100.000002"]
        .iter()
        .enumerate()
    {
        app.post_event(&mention(&format!("EvL{i}"), "CL", "U1", root, None, "work"))
            .await;
    }
    eventually(WAIT, "two turns running", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE state = 'running'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    // The third is refused in its thread, with the cap and what to do.
    let third = "1700000100.000003";
    app.post_event(&mention("EvL3", "CL", "U1", third, None, "more work"))
        .await;
    let card = slack.card("CL", third, "Not started").await;
    let text = card["blocks"].to_string();
    assert!(
        text.contains("at once (2)") && text.contains("Ask again"),
        "{text}"
    );
    assert!(text.contains("<@U1>"), "addressed to the requester: {text}");
    // Someone else is not held back by U1's cap.
    app.post_event(&mention(
        "EvL4",
        "CL",
        "U2",
        "1700000100.000004",
        None,
        "mine",
    ))
    .await;
    eventually(WAIT, "U2's turn", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE requester = 'U2'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    // Room again: nothing of the refused request starts by itself...
    std::fs::write(dir.path().join("release"), "").unwrap();
    eventually(WAIT, "the turns finished", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'")
            .await
            == 3)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE requester = 'U1'")
            .await,
        2
    );
    // ...until U1 asks again.
    app.post_event(&mention(
        "EvL5",
        "CL",
        "U1",
        "1700000100.000005",
        Some(third),
        "more work",
    ))
    .await;
    slack.card("CL", third, "released").await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE requester = 'U1'")
            .await,
        3
    );
    app.stop().await;
}
dual_db!(person_cap_test, person_cap_refuses_and_does_not_queue);

async fn daily_and_session_caps(db: TestDb) {
    let slack = FakeSlack::start().await;
    let mut config = test_config(&db, &slack);
    config.limits = LimitsConfig {
        daily_per_channel: 2,
        turns_per_session: 1,
        ..no_caps()
    };
    let app = TestApp::spawn(config).await;
    let root = "1700000200.000001";
    app.post_event(&mention("EvD1", "CD", "U1", root, None, "first"))
        .await;
    slack.card("CD", root, "Dry run").await;
    // A second turn in the same session: over the session's cap.
    app.post_event(&mention(
        "EvD2",
        "CD",
        "U1",
        "1700000200.000002",
        Some(root),
        "again",
    ))
    .await;
    let card = slack.card("CD", root, "limit of 1 turns").await;
    assert!(card["blocks"].to_string().contains("new thread"));
    // A new thread is a new session; the channel's third turn of the day is refused with when.
    let second = "1700000200.000003";
    app.post_event(&mention("EvD3", "CD", "U2", second, None, "second"))
        .await;
    slack.card("CD", second, "Dry run").await;
    let third = "1700000200.000004";
    app.post_event(&mention("EvD4", "CD", "U3", third, None, "third"))
        .await;
    let card = slack.card("CD", third, "in the last 24 hours").await;
    let text = card["blocks"].to_string();
    assert!(
        text.contains("this channel") && text.contains(" UTC"),
        "{text}"
    );
    // Another channel has its own day.
    app.post_event(&mention("EvD5", "CD2", "U3", third, None, "elsewhere"))
        .await;
    slack.card("CD2", third, "Dry run").await;
    app.stop().await;
}
dual_db!(daily_test, daily_and_session_caps);

/// Two replicas, six requests from one person at once, three to each: exactly two start.
async fn two_replicas_enforce_one_cap(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = held_agent(dir.path());
    let env = vec![
        ("DATABASE_URL", db.url().to_string()),
        ("SLACK_SIGNING_SECRET", SECRET.to_string()),
        ("SLACK_BOT_TOKEN", "xoxb-test-token".to_string()),
        ("SLACK_API_URL", slack.api_url()),
    ];
    let config = format!(
        "{}\n[agent]\ndefault_backend = \"held\"\nworkdir = \"{}\"\n\n[backends.held]\nkind = \"command\"\ncommand = [\"{agent}\"]\ntimeout_secs = 60\nsandbox = \"none\"\n",
        FAST_CONFIG.replace("concurrent_per_person = 0", "concurrent_per_person = 2"),
        dir.path().join("work").display()
    );
    let a = ChimeProcess::start(dir.path(), "a", free_port(), &env, &config).await;
    let b = ChimeProcess::start(dir.path(), "b", free_port(), &env, &config).await;
    let http = reqwest::Client::new();
    let bases = [a.base.clone(), b.base.clone()];
    let statuses: Vec<u16> = stream::iter(0..6)
        .map(|i| {
            let (http, url) = (http.clone(), format!("{}/slack/events", bases[i % 2]));
            async move {
                let ev = mention(
                    &format!("EvR{i}"),
                    "CR",
                    "U1",
                    &format!("1700000300.{i:06}"),
                    None,
                    "work",
                );
                signed_post(
                    &http,
                    &url,
                    ev.to_string().into_bytes(),
                    "application/json",
                    &[],
                )
                .await
                .status()
                .as_u16()
            }
        })
        .buffer_unordered(6)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let refusals = eventually(WAIT, "four refusals", || async {
        let n = slack
            .all_calls()
            .into_iter()
            .filter(|c| {
                c.method == "chat.postMessage" && c.params.to_string().contains("Not started")
            })
            .count();
        (n >= 4).then_some(n)
    })
    .await;
    assert_eq!(refusals, 4);
    let pool = chime::db::Db::connect(&chime::config::DatabaseConfig {
        url: db.url().into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .pool;
    let tasks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(tasks, 2, "one cap across both replicas");
    std::fs::write(dir.path().join("release"), "").unwrap();
    drop((a, b));
}
dual_db!(replicas_cap_test, two_replicas_enforce_one_cap);
