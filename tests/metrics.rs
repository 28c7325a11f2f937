//! `GET /metrics` parses as Prometheus text, and its numbers move when events arrive: events
//! received and refused (signature, stale, duplicate), tasks by state, backend turn latency,
//! Slack API calls, the outbox and secrets redacted.

mod common;

use common::{mention, test_config, FakeSlack, TestApp, TestDb};
use std::collections::HashMap;
use std::time::Duration;

/// Every sample, by name and sorted labels (`name{a="1",b="2"}`).
async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let mut labels: Vec<String> = s
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect();
            labels.sort();
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                prometheus_parse::Value::Histogram(h) => {
                    h.iter().map(|b| b.count).fold(0.0, f64::max)
                }
                prometheus_parse::Value::Summary(_) => f64::NAN,
            };
            (format!("{}{{{}}}", s.metric, labels.join(",")), value)
        })
        .collect()
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

async fn counters_move(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let before = scrape(&app).await;
    for state in ["queued", "running", "succeeded"] {
        assert!(
            before.contains_key(&format!("chime_tasks{{state=\"{state}\"}}")),
            "{before:?}"
        );
    }

    let leaked = format!("ghp_{}", "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2");
    let ev = mention(
        "EvM1",
        "C1",
        "U1",
        "1700000000.000100",
        None,
        &format!("look at {leaked}"),
    );
    assert_eq!(app.post_event(&ev).await.status(), 200);
    assert_eq!(app.post_event(&ev).await.status(), 200); // Slack's retry: a duplicate.
    let forged = app
        .http
        .post(app.url("/slack/events"))
        .header(
            "x-slack-request-timestamp",
            common::chrono_now().to_string(),
        )
        .header("x-slack-signature", "v0=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    slack.card("C1", "1700000000.000100", "Dry run").await;

    let after = common::eventually(Duration::from_secs(10), "the turn counted", || async {
        let m = scrape(&app).await;
        (get(&m, "chime_tasks{state=\"succeeded\"}") >= 1.0).then_some(m)
    })
    .await;
    let moved = |key: &str| get(&after, key) - get(&before, key);
    assert_eq!(moved("chime_events_received_total{source=\"slack\"}"), 1.0);
    assert_eq!(
        moved("chime_events_rejected_total{reason=\"duplicate\",source=\"slack\"}"),
        1.0
    );
    assert_eq!(
        moved("chime_events_rejected_total{reason=\"signature\",source=\"slack\"}"),
        1.0
    );
    assert!(
        moved("chime_api_calls_total{result=\"ok\",surface=\"slack\"}") >= 2.0,
        "{after:?}"
    );
    assert!(
        moved("chime_backend_turn_seconds_count{backend=\"dry-run\",outcome=\"succeeded\"}") >= 1.0,
        "{after:?}"
    );
    assert!(
        moved("chime_secrets_redacted_total{kind=\"github_token\"}") >= 1.0,
        "{after:?}"
    );
    assert!(after
        .keys()
        .any(|k| k.starts_with("chime_outbox_depth") || k.starts_with("chime_suggestions")));
    app.stop().await;
}

/// One test, SQLite then Postgres: the counters are the process's, so the two must not overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_counters_move() {
    counters_move(TestDb::sqlite().await).await;
    match TestDb::postgres().await {
        Some(db) => counters_move(db).await,
        None => eprintln!("Postgres part skipped: set CHIME_TEST_POSTGRES_URL to run it"),
    }
}

/// With `CHIME_METRICS_TOKEN` set (in the config's secrets, as the env var sets it), `/metrics`
/// answers only a scraper that sends it; without, or with a wrong one, 401 and no numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_is_required_when_set() {
    let db = TestDb::sqlite().await;
    let slack = FakeSlack::start().await;
    let mut config = test_config(&db, &slack);
    config.secrets.metrics_token = Some("scrape-me-7Q2x9Lm4".to_string().into());
    let app = TestApp::spawn(config).await;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("scrape-me-7Q2x9Lm4"),
        Some("Bearer scrape-me-7Q2x9Lm"),
    ] {
        let mut req = app.http.get(app.url("/metrics"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(!r.text().await.unwrap().contains("chime_tasks"));
    }
    let r = app
        .http
        .get(app.url("/metrics"))
        .header("authorization", "Bearer scrape-me-7Q2x9Lm4")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("chime_tasks"));
    app.stop().await;
}
