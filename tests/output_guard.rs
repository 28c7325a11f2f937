//! The output guard end to end, with the corpus of `tests/data/secrets/`: an agent's result and a
//! dry run's echo of a thread holding every kind of secret are posted redacted, near misses are
//! posted as they are, and Chime's own tokens never leave by value.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);

fn corpus(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/secrets/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Everything Chime sent to Slack, as one string.
fn everything_sent(slack: &FakeSlack) -> String {
    slack
        .all_calls()
        .iter()
        .map(|c| c.params.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_no_secret(sent: &str) {
    for p in corpus("positives.jsonl") {
        let secret = p["secret"].as_str().unwrap();
        assert!(!sent.contains(secret), "{} leaked: {secret}", p["kind"]);
    }
}

async fn an_agent_result_is_posted_redacted(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = corpus("positives.jsonl")
        .iter()
        .map(|p| p["text"].as_str().unwrap().to_string())
        .collect();
    let result = serde_json::json!({ "type": "result", "text": texts.join("\n") });
    let result_file = dir.path().join("result.jsonl");
    std::fs::write(&result_file, format!("{result}\n")).unwrap();
    // The agent also prints one of Chime's own secrets, as a leaked environment would.
    let own = "plain words 4 the github hook";
    let agent = write_agent(
        dir.path(),
        &format!(
            "cat >/dev/null\necho 'progress with {own}'\ncat {}",
            result_file.display()
        ),
    );
    let mut config = test_config(&db, &slack);
    config.secrets.github_webhook_secret = Some(own.to_string().into());
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = dir.path().join("work");
    let app = TestApp::spawn(config).await;
    let root = "1700002000.000100";
    app.post_event(&mention(
        "EvOg1",
        "C7",
        "U1",
        root,
        None,
        "show me the config",
    ))
    .await;
    let card = slack.card("C7", root, "Done").await.to_string();
    let sent = everything_sent(&slack);
    assert_no_secret(&sent);
    assert!(!sent.contains(own), "Chime's own secret leaked");
    for kind in [
        "github_token",
        "aws_secret_key",
        "private_key",
        "slack_token",
        "jwt",
    ] {
        assert!(
            card.contains(&format!("[redacted: {kind}]")),
            "{kind}: {card}"
        );
    }
    eventually(WAIT, "the redactions counted", || async {
        let counts = chime::guard::counts();
        (counts.get("github_token").copied().unwrap_or(0) >= 7).then_some(())
    })
    .await;
    app.stop().await;
}
dual_db!(agent_result_test, an_agent_result_is_posted_redacted);

/// A dry run echoes what the agent would get: a thread full of secrets and near misses comes back
/// with every secret redacted (the agent input is guarded) and every near miss intact.
async fn a_dry_run_echo_is_redacted(db: TestDb) {
    let slack = FakeSlack::start().await;
    let root = "1700002100.000100";
    let positives = corpus("positives.jsonl");
    for (i, p) in positives.iter().enumerate() {
        let ts = format!("1700002100.{:06}", 200 + i);
        slack.add_user_message("C7", root, &ts, "U2", p["text"].as_str().unwrap());
    }
    // Near misses Slack shows as they are (no `<`, `>` or `&`, which it escapes).
    let near: Vec<String> = corpus("negatives.jsonl")
        .iter()
        .map(|n| n["text"].as_str().unwrap().to_string())
        .filter(|t| !t.contains(['<', '>', '&', '\n']))
        .collect();
    for (i, t) in near.iter().enumerate() {
        let ts = format!("1700002100.{:06}", 500 + i);
        slack.add_user_message("C7", root, &ts, "U3", t);
    }
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    app.post_event(&mention(
        "EvOg2",
        "C7",
        "U1",
        "1700002100.000900",
        Some(root),
        "what would you do here?",
    ))
    .await;
    slack.card("C7", root, "Dry run").await;
    let sent = everything_sent(&slack);
    assert_no_secret(&sent);
    // The echo is long, so Slack shows its head and tail; every near miss that is shown is intact.
    let shown: String = slack
        .thread("C7", root)
        .iter()
        .flat_map(|m| m["blocks"].as_array().cloned().unwrap_or_default())
        .filter_map(|b| b["text"]["text"].as_str().map(str::to_string))
        .collect::<Vec<_>>()
        .join("\n");
    let intact = near.iter().filter(|t| shown.contains(t.as_str())).count();
    assert!(
        intact >= near.len() / 2,
        "{intact} of {} near misses shown intact:\n{shown}",
        near.len()
    );
    app.stop().await;
}
dual_db!(dry_run_echo_test, a_dry_run_echo_is_redacted);
