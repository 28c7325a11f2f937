//! Spend and budgets, through signed mentions and a fake OpenAI-compatible server that reports
//! token usage: each turn's cost is recorded; at 80% of the workspace's monthly budget the admins
//! get one direct message; at 100% the next mention is refused with the budget's name and its
//! reset date; `chime usage` prints the month's spend.

mod common;

use chime::config::{BackendConfig, OpenaiApi, Price};
use common::*;
use serde_json::json;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(20);

/// One streamed Responses answer that used 10 input and 12 output tokens.
fn answer() -> ResponseTemplate {
    let frames = [
        json!({ "type": "response.created", "sequence_number": 0, "response": { "id": "resp_1", "status": "in_progress" } }),
        json!({ "type": "response.output_text.delta", "sequence_number": 1, "item_id": "m", "output_index": 0, "content_index": 0, "delta": "Answered." }),
        json!({ "type": "response.completed", "sequence_number": 2, "response": { "id": "resp_1", "status": "completed",
            "usage": { "input_tokens": 10, "output_tokens": 12, "total_tokens": 22 } } }),
    ];
    let body: String = frames
        .iter()
        .map(|f| format!("event: {}\ndata: {f}\n\n", f["type"].as_str().unwrap()))
        .collect();
    ResponseTemplate::new(200)
        .insert_header("content-type", "text/event-stream")
        .set_body_string(body)
}

async fn budget_notice_refusal_and_usage(db: TestDb) {
    let slack = FakeSlack::start().await;
    let model = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/responses"))
        .respond_with(answer())
        .mount(&model)
        .await;
    let mut config = test_config(&db, &slack);
    config.backends.insert(
        "gpt".into(),
        BackendConfig::Openai {
            model: "gpt-test".into(),
            api: OpenaiApi::Responses,
            timeout_secs: 30,
            instructions: None,
            max_output_tokens: None,
        },
    );
    config.agent.default_backend = "gpt".into();
    config.endpoints.openai = Some(format!("{}/v1", model.uri()));
    config.secrets.openai_api_key = Some("sk-test-budget".to_string().into());
    config.slack.admins = vec!["UADMIN".into()];
    // 10 × 0.02 + 12 × 0.01 = $0.32 a turn, against $0.80 a month.
    config.budgets.workspace_monthly_usd = 0.80;
    config.budgets.prices.insert(
        "gpt".into(),
        Price {
            usd_per_million_input_tokens: 20_000.0,
            usd_per_million_output_tokens: 10_000.0,
            usd_per_hour: 0.0,
        },
    );
    let app = TestApp::spawn(config).await;
    let notices = || {
        slack
            .calls("chat.postMessage")
            .into_iter()
            .filter(|p| p["channel"] == "DUADMIN")
            .collect::<Vec<_>>()
    };
    // Three turns: $0.32, $0.64 (80%: one notice), $0.96 (no second notice).
    for i in 1..=3 {
        let root = format!("1700000400.00000{i}");
        app.post_event(&mention(
            &format!("EvB{i}"),
            "CB",
            "U1",
            &root,
            None,
            "a question",
        ))
        .await;
        slack.card("CB", &root, "Answered.").await;
        eventually(WAIT, "the turn's cost recorded", || async {
            (app.count("SELECT COUNT(*) FROM task_usage").await == i).then_some(())
        })
        .await;
        if i == 2 {
            let n = eventually(WAIT, "the admins' notice", || async {
                let n = notices();
                (!n.is_empty()).then_some(n)
            })
            .await;
            let text = n[0]["blocks"].to_string();
            assert!(
                text.contains("80%") && text.contains("$0.64") && text.contains("$0.80"),
                "{text}"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(notices().len(), 1, "one notice per budget and month");
    // The budget is spent: the next mention is refused, naming the budget and its reset date.
    let month = chime::spend::month_of(chime::ids::now_ms());
    let root = "1700000400.000009";
    app.post_event(&mention("EvB9", "CB", "U2", root, None, "one more"))
        .await;
    let card = slack.card("CB", root, "Not started").await;
    let text = card["blocks"].to_string();
    assert!(
        text.contains("monthly budget")
            && text.contains(&chime::spend::reset_date(&month))
            && text.contains("$0.96"),
        "{text}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 3);
    app.stop().await;

    // `chime usage`: the month's spend, by person and by backend.
    let usage = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chime"))
            .arg("usage")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", db.url())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, by_person) = usage(&["--by", "person", "--month", &month]);
    assert!(ok, "{by_person}");
    let line = by_person
        .lines()
        .find(|l| l.starts_with("U1"))
        .unwrap_or_default();
    assert!(
        line.contains(" 3 ")
            && line.contains("30")
            && line.contains("36")
            && line.contains("$0.96"),
        "{by_person}"
    );
    let (ok, by_backend) = usage(&[]);
    assert!(
        ok && by_backend.contains("gpt") && by_backend.contains("$0.96"),
        "{by_backend}"
    );
    let (ok, other) = usage(&["--month", "2020-01"]);
    assert!(ok && other.contains("$0.00"), "{other}");
    // The weekly digest shows the same spend.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chime"))
        .args(["digest", "preview"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    let digest = String::from_utf8_lossy(&out.stdout);
    assert!(
        digest.contains("Spent $0.96 (the week before: $0.00); model tokens 66 (+66)"),
        "{digest}"
    );
    let (ok, bad) = usage(&["--month", "2026-13"]);
    assert!(!ok && bad.contains("not a month"), "{bad}");
    let (ok, bad) = usage(&["--by", "team"]);
    assert!(!ok && bad.contains("person, channel or backend"), "{bad}");
}
dual_db!(budget_test, budget_notice_refusal_and_usage);
