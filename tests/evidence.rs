//! Evidence, not claims: an agent whose Codex transcript runs `cargo test` (exit 101, one failing
//! test) shows that command, its exit status and the failing test in a milestone (the status
//! message's edit) and in the result's **Checks** list, on SQLite and Postgres.

mod common;

use common::*;
use std::time::Duration;

async fn checks_from_the_transcript(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = write_agent(
        dir.path(),
        r#"cat >/dev/null
echo '{"type":"item.completed","item":{"id":"i1","type":"command_execution","command":"cargo test","aggregated_output":"running 2 tests\ntest tests::adds ... FAILED\ntest tests::subs ... ok\n<!channel> ```","exit_code":101,"status":"failed"}}'
sleep 0.5
echo '{"type":"item.completed","item":{"id":"i2","type":"command_execution","command":"ls","aggregated_output":"a.rs","exit_code":0,"status":"completed"}}'
echo '{"type":"item.completed","item":{"id":"i3","type":"agent_message","text":"All tests pass now."}}'"#,
    );
    let mut config = test_config(&db, &slack);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = dir.path().join("work");
    let app = TestApp::spawn(config).await;
    let (ch, root) = ("CEV", "1700000000.000700");
    app.post_event(&mention("EvEv", ch, "U1", root, None, "fix the tests"))
        .await;
    let card = slack.card(ch, root, "*Checks*").await.to_string();
    assert!(
        card.contains("`cargo test`: exit 101, failing: tests::adds"),
        "{card}"
    );
    // Only checks are listed, and the agent's claim stays its claim.
    assert!(!card.contains("`ls`"), "{card}");
    assert!(card.contains("All tests pass now."), "{card}");
    // The milestone for the command, with its output's tail: the status message's edit as
    // queued (a later edit may replace it before Slack sees it; that is the outbox's job).
    let updates: Vec<String> = sqlx::query_scalar::<_, String>(
        "SELECT payload FROM outbox WHERE kind IN ('update', 'stream_append') ORDER BY id",
    )
    .fetch_all(&app.db.pool)
    .await
    .unwrap();
    let milestone = updates
        .iter()
        .find(|u| u.contains("Ran `cargo test`: exit 101, failing: tests::adds"))
        .unwrap_or_else(|| panic!("no milestone for the command in {updates:?}"));
    assert!(milestone.contains("test tests::subs ... ok"), "{milestone}");
    assert!(
        !milestone.contains("<!channel>") && !card.contains("<!channel>"),
        "{milestone}"
    );
    let stored = app.text("SELECT result FROM tasks").await;
    assert!(stored.contains("\"exit_code\":101"), "{stored}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    app.stop().await;
}
dual_db!(checks_test, checks_from_the_transcript);
