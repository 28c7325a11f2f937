//! Two `chime serve` processes on one database share the inbox, the task queue and the outbox.

mod common;

use common::process::{free_port, ChimeProcess, FAST_CONFIG};
use common::*;
use futures::stream::{self, StreamExt};
use sqlx::Row;
use std::collections::HashMap;
use std::time::Duration;

const MENTIONS: usize = 1000;

async fn two_replicas_run_each_task_once(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("DATABASE_URL", db.url().to_string()),
        ("SLACK_SIGNING_SECRET", SECRET.to_string()),
        ("SLACK_BOT_TOKEN", "xoxb-test-token".to_string()),
        ("SLACK_API_URL", slack.api_url()),
    ];
    // A long lease: on a loaded two-core machine a 10 s lease can run out under a live worker,
    // and the task would (correctly) run twice, which this test is not about.
    // The default progress (streams, refused by the fake and then remembered): the first starts
    // of a burst must not wait for chat.startStream's tier.
    let config = FAST_CONFIG.replace("lease_secs = 10", "lease_secs = 60");
    let a = ChimeProcess::start(dir.path(), "a", free_port(), &env, &config).await;
    let b = ChimeProcess::start(dir.path(), "b", free_port(), &env, &config).await;
    let http = reqwest::Client::new();
    let bases = [a.base.clone(), b.base.clone()];
    let statuses: Vec<u16> = stream::iter(0..MENTIONS)
        .map(|i| {
            let (http, url) = (http.clone(), format!("{}/slack/events", bases[i % 2]));
            async move {
                let ev = mention(
                    &format!("EvRep{i}"),
                    &format!("C{}", i % 50),
                    "U1",
                    &format!("1700000000.{i:06}"),
                    None,
                    &format!("task {i}"),
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
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 200));

    let pool = chime::db::Db::connect(&chime::config::DatabaseConfig {
        url: db.url().into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .pool;
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            sqlx::query(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<i64, _>(0)
        }
    };
    let start = std::time::Instant::now();
    loop {
        let done = count("SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'").await;
        let unsent =
            count("SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')").await;
        if done == MENTIONS as i64 && unsent == 0 {
            break;
        }
        if start.elapsed() > Duration::from_secs(180) {
            let tail = |p: &ChimeProcess| {
                p.log_text()
                    .lines()
                    .rev()
                    .take(30)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            panic!(
                "timed out: {done} tasks done, {unsent} unsent rows\nlog a:\n{}\nlog b:\n{}",
                tail(&a),
                tail(&b)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("replicas: {MENTIONS} tasks done in {:?}", start.elapsed());
    for p in [&a, &b] {
        for l in p
            .log_text()
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("panicked"))
            .take(10)
        {
            eprintln!("replica log: {l}");
        }
    }
    assert_eq!(count("SELECT COUNT(*) FROM tasks").await, MENTIONS as i64);
    let errors = |p: &ChimeProcess| {
        p.log_text()
            .lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("panicked"))
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM tasks WHERE attempts <> 1").await,
        0,
        "each task ran exactly once; warnings and errors:\n{}\n{}",
        errors(&a),
        errors(&b)
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM outbox WHERE state = 'failed'").await,
        0
    );

    let posts = slack.calls("chat.postMessage");
    assert_eq!(posts.len(), MENTIONS, "one status message per task");
    let mut finals: HashMap<String, usize> = HashMap::new();
    for u in slack.calls("chat.update") {
        if u["blocks"].to_string().contains("Dry run") {
            *finals
                .entry(format!("{}/{}", u["channel"], u["ts"]))
                .or_default() += 1;
        }
    }
    assert_eq!(finals.len(), MENTIONS, "every task got its final result");
    assert!(
        finals.values().all(|n| *n == 1),
        "exactly one final message each"
    );
    for p in [&a, &b] {
        assert!(
            p.log_text().contains("task finished"),
            "both replicas ran tasks"
        );
    }
}
dual_db!(replicas_test, two_replicas_run_each_task_once);
