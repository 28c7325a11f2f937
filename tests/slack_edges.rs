//! Edges of the Slack connector: requests that carry a file or are broadcast from a thread, and
//! threads longer than one page of conversations.replies.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

/// A `message` event with a subtype, as Slack sends one for a shared file or a broadcast reply.
fn message_with(
    event_id: &str,
    channel: &str,
    channel_type: &str,
    subtype: &str,
    ts: &str,
    text: &str,
) -> Value {
    let ev = json!({
        "type": "message", "subtype": subtype, "channel_type": channel_type, "user": "U1",
        "text": text, "ts": ts, "channel": channel, "event_ts": ts, "team": "T1",
        "files": [{ "id": "F1", "name": "build.log", "mimetype": "text/plain" }]
    });
    envelope(event_id, ev, None)
}

/// Issue 6 item 12: every event with a subtype was dropped silently, so a mention that shared a
/// file, or a thread reply also sent to the channel, got no answer.
async fn file_share_and_broadcast_mentions_are_handled(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let ok = |r: reqwest::Response| assert_eq!(r.status(), 200);

    // A thread reply "also sent to the channel" that mentions Chime.
    let (broadcast_root, broadcast_ts) = ("1700000000.800000", "1700000000.800100");
    let mut broadcast = mention(
        "EvBroadcast",
        "C1",
        "U1",
        broadcast_ts,
        Some(broadcast_root),
        "summarise this thread",
    );
    broadcast["event"]["subtype"] = json!("thread_broadcast");
    ok(app.post_event(&broadcast).await);

    // A file shared in a channel with a mention, as a `message` event, then its app_mention.
    let file_ts = "1700000000.810000";
    ok(app
        .post_event(&message_with(
            "EvFileMsg",
            "C2",
            "channel",
            "file_share",
            file_ts,
            "<@UBOT> what is in this log",
        ))
        .await);
    let mut file_mention = mention(
        "EvFileMention",
        "C2",
        "U1",
        file_ts,
        None,
        "what is in this log",
    );
    file_mention["event"]["subtype"] = json!("file_share");
    ok(app.post_event(&file_mention).await);

    // A file sent to Chime in a DM needs no mention.
    let dm_ts = "1700000000.820000";
    ok(app
        .post_event(&message_with(
            "EvFileDm",
            "D1",
            "im",
            "file_share",
            dm_ts,
            "see attached",
        ))
        .await);

    // Still ignored: edits, a file shared in a channel without a mention, other subtypes.
    let mut edited = mention("EvEdited", "C3", "U1", "1700000000.830000", None, "edited");
    edited["event"]["subtype"] = json!("message_changed");
    ok(app.post_event(&edited).await);
    ok(app
        .post_event(&message_with(
            "EvNoMention",
            "C3",
            "channel",
            "file_share",
            "1700000000.840000",
            "just a file",
        ))
        .await);
    let mut joined = mention("EvJoin", "C3", "U1", "1700000000.850000", None, "joined");
    joined["event"]["subtype"] = json!("channel_join");
    ok(app.post_event(&joined).await);

    let broadcast_card = slack.card("C1", broadcast_root, "Dry run").await;
    assert!(broadcast_card["blocks"]
        .to_string()
        .contains("summarise this thread"));
    let file_card = slack.card("C2", file_ts, "Dry run").await;
    assert!(file_card["blocks"]
        .to_string()
        .contains("what is in this log"));
    slack.card("D1", dm_ts, "Dry run").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks").await,
        3,
        "one task per request, none for the ignored events"
    );
    assert_eq!(
        slack.thread("C2", file_ts).len(),
        1,
        "the file's message and app_mention made one status message"
    );
    assert!(slack.thread("C3", "1700000000.830000").is_empty());
    app.stop().await;
}
dual_db!(subtypes_test, file_share_and_broadcast_mentions_are_handled);

/// Issue 6 item 12: conversations.replies was read once (the oldest 200 replies), so in a long
/// thread the agent saw the start of the discussion instead of its end.
async fn long_threads_give_the_newest_context(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.md");
    let agent = write_agent(
        dir.path(),
        &format!(
            "cat > {}\necho '{{\"type\":\"result\",\"text\":\"read the thread\"}}'",
            input.display()
        ),
    );
    let mut config = test_config(&db, &slack);
    config.agent.workdir = dir.path().join("work");
    command_backend(&mut config, "agent", vec![agent], 60);
    let app = TestApp::spawn(config).await;
    let root = "1700000000.900000";
    slack.add_user_message("C1", root, root, "U2", "the thread starts here");
    for i in 0..450 {
        let ts = format!("1700000001.{i:06}");
        slack.add_user_message("C1", root, &ts, "U2", &format!("reply #{i}."));
    }
    app.post_event(&mention(
        "EvLong",
        "C1",
        "U1",
        "1700000002.000000",
        Some(root),
        "what did we decide at the end",
    ))
    .await;
    slack.card("C1", root, "read the thread").await;
    let given = std::fs::read_to_string(&input).unwrap();
    assert!(given.contains("reply #449."), "the newest reply is missing");
    assert!(given.contains("reply #400."));
    assert!(
        !given.contains("reply #399."),
        "more than the newest 50 were kept"
    );
    let pages = slack.calls("conversations.replies");
    assert!(pages.len() >= 3, "read every page: {pages:?}");
    app.stop().await;
}
dual_db!(long_thread_test, long_threads_give_the_newest_context);
