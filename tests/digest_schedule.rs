//! The digest on its schedule: three `chime serve` processes on one database post each due
//! digest exactly once; a due time missed while every replica was down is posted once, late,
//! saying so.

mod common;

use common::process::{free_port, ChimeProcess, FAST_CONFIG};
use common::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;

fn digests(slack: &FakeSlack) -> Vec<Value> {
    slack
        .calls("chat.postMessage")
        .into_iter()
        .filter(|p| p["channel"] == "CDIGEST")
        .collect()
}

fn config(schedule: &str) -> String {
    format!(
        "{FAST_CONFIG}\n[digest]\ntick_secs = 1\nlate_after_secs = 2\n\n[[digest.targets]]\nplace = \"slack:T1/CDIGEST\"\nschedule = \"{schedule}\"\n"
    )
}

async fn three_replicas_post_each_digest_once(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("DATABASE_URL", db.url().to_string()),
        ("SLACK_SIGNING_SECRET", SECRET.to_string()),
        ("SLACK_BOT_TOKEN", "xoxb-test-token".to_string()),
        ("SLACK_API_URL", slack.api_url()),
    ];
    // Due every three seconds: several periods in one short test.
    let config = config("*/3 * * * * *");
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        replicas.push(ChimeProcess::start(dir.path(), name, free_port(), &env, &config).await);
    }
    // Generous: on a loaded machine three processes take a while to start and tick (a failure
    // here costs time, never a wrong pass).
    let posted = eventually(Duration::from_secs(90), "three digests", || async {
        let d = digests(&slack);
        (d.len() >= 3).then_some(d)
    })
    .await;
    for mut r in replicas {
        r.terminate_within(Duration::from_secs(10)).await;
    }
    let posted = digests(&slack).len().max(posted.len());
    // Exactly once: as many posts as claimed periods, each period's key seen once.
    let conn_db = chime::db::Db::connect(&chime::config::DatabaseConfig {
        url: db.url().to_string(),
        ..Default::default()
    })
    .await
    .unwrap();
    let claimed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM job_runs WHERE job = 'digest:slack:T1/CDIGEST' AND result LIKE 'posted%'",
    )
    .fetch_one(&conn_db.pool)
    .await
    .unwrap();
    let sent: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM outbox WHERE idempotency_key LIKE 'digest:%' AND state = 'done'",
    )
    .fetch_one(&conn_db.pool)
    .await
    .unwrap();
    let queued: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE idempotency_key LIKE 'digest:%'")
            .fetch_one(&conn_db.pool)
            .await
            .unwrap();
    assert_eq!(posted as i64, sent, "a digest posted twice, or one lost");
    // Each claimed due time queued one digest; rows still queued when the replicas stopped (one
    // per replica at most, on a slow machine) are sent by the next one to start.
    assert!(
        claimed <= queued && queued <= claimed + 3 && sent <= queued,
        "claimed {claimed}, queued {queued}, sent {sent}"
    );
    let keys: HashSet<String> = digests(&slack)
        .iter()
        .map(|p| p["metadata"]["event_payload"]["chime_key"].to_string())
        .collect();
    assert_eq!(keys.len(), posted, "{:?}", digests(&slack));
    assert!(digests(&slack)[0]["blocks"]
        .to_string()
        .contains("Chime's week"));
}
dual_db!(three_replicas, three_replicas_post_each_digest_once);

async fn a_missed_digest_is_posted_once_late(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("DATABASE_URL", db.url().to_string()),
        ("SLACK_SIGNING_SECRET", SECRET.to_string()),
        ("SLACK_BOT_TOKEN", "xoxb-test-token".to_string()),
        ("SLACK_API_URL", slack.api_url()),
    ];
    let config = config("*/5 * * * * *");
    let mut a = ChimeProcess::start(dir.path(), "a", free_port(), &env, &config).await;
    eventually(Duration::from_secs(20), "a first digest", || async {
        (!digests(&slack).is_empty()).then_some(())
    })
    .await;
    a.kill9();
    let before = digests(&slack).len();
    // Down across at least one due time (every five seconds), and long enough to be late.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let restarted = chrono::Utc::now();
    let _a = ChimeProcess::start(dir.path(), "a2", free_port(), &env, &config).await;
    let late = eventually(Duration::from_secs(20), "the late digest", || async {
        digests(&slack).into_iter().skip(before).find(|p| {
            p["blocks"]
                .to_string()
                .contains("Late: this digest was due")
        })
    })
    .await;
    assert!(late["blocks"].to_string().contains("while Chime was down"));
    // One late digest after the restart, however many due times the downtime spanned. (A due
    // time that a slow tick on a loaded machine reaches late, before the kill or after the
    // restart, is not one the downtime missed.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    let missed_in_downtime: Vec<String> = digests(&slack)
        .iter()
        .skip(before)
        .filter_map(|p| {
            let text = p["blocks"].to_string();
            let at = text.split("due at ").nth(1)?.get(..23)?.to_string();
            let due = chrono::NaiveDateTime::parse_from_str(&at, "%Y-%m-%d %H:%M:%S UTC").ok()?;
            (due.and_utc() < restarted).then_some(at)
        })
        .collect();
    assert_eq!(missed_in_downtime.len(), 1, "{missed_in_downtime:?}");
}
dual_db!(missed_digest, a_missed_digest_is_posted_once_late);
