//! Streamed progress: a turn's plan is one streamed reply (chat.startStream → appendStream →
//! stopStream with the result), checked by a fake Slack that refuses unknown chunks and calls out
//! of order; a workspace that refuses streams gets the edited status message, remembered.

#[path = "support/block_kit.rs"]
mod block_kit;
mod common;

use chime::slack::blocks::Rendered;
use common::*;
use serde_json::Value;

/// The task updates among a stream call's chunks.
fn task_updates(params: &Value) -> Vec<Value> {
    params["chunks"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter(|c| c["type"] == "task_update")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

async fn streams_a_plan(db: TestDb) {
    let slack = FakeSlack::start().await;
    slack.enable_streams();
    let dir = tempfile::tempdir().unwrap();
    // Milestones more than the coalescing interval (2 s) apart, so each is its own append.
    let agent = write_agent(
        dir.path(),
        r#"cat >/dev/null
echo '{"type":"item.completed","item":{"id":"i0","type":"agent_message","text":"Reading the code <!channel>"}}'
sleep 2.3
echo '{"type":"item.completed","item":{"id":"i1","type":"command_execution","command":"cargo test","aggregated_output":"running 2 tests\ntest tests::adds ... FAILED\ntest tests::subs ... ok","exit_code":101,"status":"failed"}}'
sleep 2.3
echo '{"type":"item.completed","item":{"id":"i3","type":"agent_message","text":"Fixed it."}}'"#,
    );
    let mut config = test_config(&db, &slack);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = dir.path().join("work");
    let app = TestApp::spawn(config).await;
    let (ch, root) = ("CST", "1700000000.000800");
    app.post_event(&mention("EvSt", ch, "U1", root, None, "fix the tests"))
        .await;
    let calls = eventually(
        std::time::Duration::from_secs(30),
        "the stream stopped",
        || async {
            let calls = slack.stream_calls(ch, root);
            calls
                .iter()
                .any(|(m, _)| m == "chat.stopStream")
                .then_some(calls)
        },
    )
    .await;
    let methods: Vec<&str> = calls.iter().map(|(m, _)| m.as_str()).collect();
    assert_eq!(methods.first(), Some(&"chat.startStream"), "{methods:?}");
    assert_eq!(methods.last(), Some(&"chat.stopStream"), "{methods:?}");
    let appends: Vec<&Value> = calls
        .iter()
        .filter(|(m, p)| m == "chat.appendStream" && !task_updates(p).is_empty())
        .map(|(_, p)| p)
        .collect();
    assert!(appends.len() >= 2, "at least two task updates: {methods:?}");
    let start = &calls[0].1;
    assert_eq!(start["recipient_user_id"], "U1");
    assert_eq!(start["recipient_team_id"], "T1");
    assert_eq!(start["task_display_mode"], "plan");
    // The command's step carries its exit status and output; the agent's text is escaped.
    let ran = appends
        .iter()
        .flat_map(|p| task_updates(p))
        .find(|t| {
            t["title"]
                .as_str()
                .unwrap_or_default()
                .contains("cargo test")
        })
        .expect("a task update for the command");
    assert_eq!(ran["status"], "error", "{ran}");
    assert!(ran["title"].as_str().unwrap().contains("exit 101"), "{ran}");
    assert!(
        ran["output"]
            .as_str()
            .unwrap()
            .contains("tests::adds ... FAILED"),
        "{ran}"
    );
    let all = serde_json::to_string(&calls.iter().map(|c| &c.1).collect::<Vec<_>>()).unwrap();
    assert!(
        !all.contains("<!channel>"),
        "a mention reached Slack: {all}"
    );
    // The stop ends every step and carries the result with its Checks.
    let stop = &calls.last().unwrap().1;
    let steps = task_updates(stop);
    assert!(!steps.is_empty());
    assert!(
        steps
            .iter()
            .all(|t| t["status"] == "complete" || t["status"] == "error"),
        "{steps:?}"
    );
    let blocks = stop["blocks"].to_string();
    assert!(
        blocks.contains("`cargo test`: exit 101, failing: tests::adds"),
        "{blocks}"
    );
    assert!(blocks.contains("Fixed it."), "{blocks}");
    // The stop's card passes Block Kit's limits like any posted card.
    let card = Rendered {
        text: stop["text"].as_str().unwrap_or_default().to_string(),
        blocks: stop["blocks"].clone(),
    };
    if let Err(e) = block_kit::check_card(&card, &["U1"]) {
        panic!("{e}\n{stop:#}");
    }
    // No status card besides the stream, and no call Slack refused.
    assert!(slack.calls("chat.postMessage").is_empty());
    assert!(slack.calls("chat.update").is_empty());
    let refused: Vec<_> = slack
        .errors()
        .into_iter()
        .filter(|(m, _)| m.starts_with("chat."))
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    app.stop().await;
}
dual_db!(stream_test, streams_a_plan);

async fn refused_streams_fall_back_and_are_remembered(db: TestDb) {
    let slack = FakeSlack::start().await; // Streams not enabled: Slack refuses them.
    let mut config = test_config(&db, &slack);
    config.agent.default_backend = "dry-run".into();
    let app = TestApp::spawn(config).await;
    for (i, root) in ["1700000000.000901", "1700000000.000902"]
        .iter()
        .enumerate()
    {
        app.post_event(&mention(
            &format!("EvFb{i}"),
            "CFB",
            "U1",
            root,
            None,
            "hello",
        ))
        .await;
        slack.card("CFB", root, "Dry run").await;
    }
    // The first turn asked once and fell back to the posted card, edited with the result; the
    // second did not ask again.
    assert_eq!(slack.calls("chat.startStream").len(), 1);
    assert_eq!(slack.calls("chat.postMessage").len(), 2);
    assert!(slack.calls("chat.update").len() >= 2);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM slack_stream_fallbacks WHERE team = 'T1'")
            .await,
        1
    );
    app.stop().await;
}
dual_db!(fallback_test, refused_streams_fall_back_and_are_remembered);
