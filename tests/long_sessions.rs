//! Long sessions: every earlier turn reaches the agent, even when their results are too long to
//! keep whole.

mod common;

use common::*;
use std::time::Duration;

async fn twelve_turns_keep_every_request(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    std::fs::create_dir_all(&inputs).unwrap();
    let agent = dir.path().join("agent.sh");
    // Each turn answers with ~12,000 characters, so twelve turns cannot all fit whole.
    std::fs::write(
        &agent,
        format!(
            "#!/usr/bin/env bash\ncat > {}/turn$CHIME_TURN.txt\nprintf '{{\"type\":\"result\",\"text\":\"answer %s %s\"}}\\n' \"$CHIME_TURN\" \"$(head -c 12000 /dev/zero | tr '\\0' 'x')\"\n",
            inputs.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&agent)
        .status()
        .unwrap();
    let mut config = test_config(&db, &slack);
    config.agent.workdir = dir.path().join("work");
    command_backend(&mut config, "long", vec![agent.display().to_string()], 60);
    let app = TestApp::spawn(config).await;
    let root = "1700000000.200000";
    for turn in 1..=12 {
        let ts = format!("1700000000.2{turn:05}");
        let (thread, msg_ts) = if turn == 1 {
            (None, root.to_string())
        } else {
            (Some(root), ts)
        };
        app.post_event(&mention(
            &format!("EvLong{turn}"),
            "C8",
            "U1",
            &msg_ts,
            thread,
            &format!("request number {turn} please"),
        ))
        .await;
        eventually(
            Duration::from_secs(30),
            &format!("turn {turn} finished"),
            || async {
                inputs
                    .join(format!("turn{turn}.txt"))
                    .exists()
                    .then_some(())
            },
        )
        .await;
        eventually(Duration::from_secs(30), "the turn's result", || async {
            (app.count(&format!(
                "SELECT COUNT(*) FROM tasks WHERE turn_no = {turn} AND state = 'succeeded'"
            ))
            .await
                == 1)
                .then_some(())
        })
        .await;
    }
    let last = std::fs::read_to_string(inputs.join("turn12.txt")).unwrap();
    for earlier in 1..=11 {
        assert!(
            last.contains(&format!("request number {earlier} please")),
            "turn 12 lost the request of turn {earlier}"
        );
        assert!(last.contains(&format!("Turn {earlier}, requested by")));
    }
    assert!(last.contains("answer 11 "), "the latest results are kept");
    assert!(
        last.chars().count() <= 60_000,
        "within the input budget: {}",
        last.chars().count()
    );
    app.stop().await;
}
dual_db!(long_session_test, twelve_turns_keep_every_request);
