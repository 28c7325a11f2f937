//! Socket Mode end to end: a fake Slack hands out a local WebSocket through apps.connections.open,
//! pushes envelopes over it, and checks Chime's acks and its Web API calls.

mod common;

use chime::config::Config;
use common::fake_slack::APP_TOKEN;
use common::fake_socket::{disconnect, events_api, interactive, Conn, FakeSocket};
use common::*;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const ACK: Duration = Duration::from_secs(5);

/// Chime on the fake Slack with Socket Mode on and, unless `adjust` says otherwise, no signing
/// secret (so no HTTP events).
async fn start(db: &TestDb, adjust: impl FnOnce(&mut Config)) -> (FakeSlack, FakeSocket, TestApp) {
    let slack = FakeSlack::start().await;
    let socket = FakeSocket::start().await;
    slack.set_socket_url(&socket.url);
    let mut config = test_config(db, &slack);
    config.secrets.slack_app_token = Some(SecretString::from(APP_TOKEN));
    config.secrets.slack_signing_secret = None;
    adjust(&mut config);
    let app = TestApp::spawn(config).await;
    (slack, socket, app)
}

/// Sends an envelope and waits for its ack.
async fn deliver(conn: &mut Conn, frame: Value) {
    let id = frame["envelope_id"].as_str().unwrap().to_string();
    conn.send(&frame).await;
    conn.expect_ack(&id, ACK).await;
}

async fn mention_over_socket(db: TestDb) {
    let (slack, mut socket, app) = start(&db, |_| {}).await;
    let mut conn = socket.next_connection(WAIT).await;
    assert!(!slack.calls("apps.connections.open").is_empty());

    // Without a signing secret the HTTP endpoint refuses; Socket Mode is the only way in.
    let root = "1700000000.000100";
    let ev = mention("EvS1", "C1", "U1", root, None, "the socket drops frames");
    assert_eq!(app.post_event(&ev).await.status(), 503);

    // The envelope, then Slack's redelivery of it: both acked, one task.
    deliver(&mut conn, events_api("env-1", &ev, 0)).await;
    deliver(&mut conn, events_api("env-1", &ev, 1)).await;

    let card = slack.card("C1", root, "Dry run").await;
    assert!(card["blocks"]
        .to_string()
        .contains("the socket drops frames"));
    let reactions = slack.calls("reactions.add");
    assert_eq!(reactions.len(), 1);
    assert_eq!(reactions[0]["timestamp"], root);
    let posts = slack.calls("chat.postMessage");
    assert_eq!(posts.len(), 1, "exactly one status message: {posts:?}");
    assert_eq!(posts[0]["thread_ts"], root);
    let updates = slack.calls("chat.update");
    assert!(updates.iter().all(|u| u["ts"] == card["ts"]));
    assert!(updates.last().unwrap()["blocks"]
        .to_string()
        .contains("Dry run"));
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 1);

    // Stop, pressed on the status message: an interactive envelope with a JSON payload.
    let task_id: String = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM tasks")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
            .get(0)
    };
    let click = button(
        "chime_stop",
        &task_id,
        "U1",
        "C1",
        root,
        "1700000005.000001",
    );
    deliver(&mut conn, interactive("env-2", &click)).await;
    eventually(WAIT, "the click is stored and handled", || async {
        (app.count("SELECT COUNT(*) FROM inbox WHERE state <> 'pending'")
            .await
            == 2)
            .then_some(())
    })
    .await;

    // A Slack Connect user: `user_team` survives the trip, so Chime refuses (users.info alone
    // would call this user a member of T1).
    let ext_root = "1700000000.000200";
    let mut ext = mention("EvS2", "C1", "UEXT", ext_root, None, "do it");
    ext["event"]["user_team"] = json!("T9");
    deliver(&mut conn, events_api("env-3", &ext, 0)).await;
    slack.card("C1", ext_root, "other organisations").await;

    // Slack asks for a reconnect: Chime closes that socket and opens another.
    conn.send(&disconnect("refresh_requested")).await;
    assert!(
        conn.closed_by_chime(WAIT).await,
        "Chime closes the old socket"
    );
    let mut conn = socket.next_connection(WAIT).await;

    // A bot's message is acked and makes nothing.
    let mut bot = mention("EvS3", "C1", "U2", "1700000000.000300", None, "from a bot");
    bot["event"]["bot_id"] = json!("B999");
    deliver(&mut conn, events_api("env-4", &bot, 0)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 3);
    assert_eq!(slack.calls("chat.postMessage").len(), 2);
    app.stop().await;
}
dual_db!(mention_over_socket_test, mention_over_socket);

/// The ack waits for the inbox commit: while the inbox cannot be written nothing is acked, and
/// Slack's redelivery goes through once it can.
async fn no_ack_before_commit(db: TestDb) {
    let (slack, mut socket, app) = start(&db, |_| {}).await;
    let mut conn = socket.next_connection(WAIT).await;
    let root = "1700000000.000400";
    let ev = mention("EvS4", "C2", "U1", root, None, "after the outage");

    sqlx::query("ALTER TABLE inbox RENAME TO inbox_away")
        .execute(&app.db.pool)
        .await
        .unwrap();
    conn.send(&events_api("env-5", &ev, 0)).await;
    assert_eq!(
        conn.next_frame(Duration::from_millis(1500)).await,
        None,
        "nothing is acked while the inbox cannot be written"
    );
    sqlx::query("ALTER TABLE inbox_away RENAME TO inbox")
        .execute(&app.db.pool)
        .await
        .unwrap();

    deliver(&mut conn, events_api("env-5", &ev, 1)).await;
    slack.card("C2", root, "Dry run").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
    app.stop().await;
}
dual_db!(no_ack_before_commit_test, no_ack_before_commit);

/// With a signing secret as well, HTTP keeps working, an event that comes both ways is one task,
/// and the workspace allowlist holds on both.
async fn both_paths(db: TestDb) {
    let (slack, mut socket, app) = start(&db, |c| {
        c.secrets.slack_signing_secret = Some(SecretString::from(SECRET));
        c.slack.allowed_workspaces = vec!["T1".into()];
    })
    .await;
    let mut conn = socket.next_connection(WAIT).await;
    let root = "1700000000.000500";
    let ev = mention("EvS5", "C3", "U1", root, None, "twice over");
    assert_eq!(app.post_event(&ev).await.status(), 200);
    deliver(&mut conn, events_api("env-6", &ev, 0)).await;
    slack.card("C3", root, "Dry run").await;

    // Another workspace: acked over Socket Mode (as HTTP's 403 stops retries), stored nowhere.
    let mut other = mention("EvS6", "C3", "U1", "1700000000.000600", None, "let me in");
    other["team_id"] = json!("T2");
    deliver(&mut conn, events_api("env-7", &other, 0)).await;
    assert_eq!(app.post_event(&other).await.status(), 403);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 1);
    assert_eq!(slack.calls("chat.postMessage").len(), 1);
    app.stop().await;
}
dual_db!(both_paths_test, both_paths);

/// Without an allowlist, Socket Mode serves only the workspace auth.test names: an envelope from
/// another team is acked (so Slack stops redelivering it) and stored nowhere.
async fn foreign_workspace_over_socket(db: TestDb) {
    let (slack, mut socket, app) = start(&db, |_| {}).await;
    let mut conn = socket.next_connection(WAIT).await;
    let mut other = mention("EvS7", "C5", "U1", "1700000000.000700", None, "let me in");
    other["team_id"] = json!("T2");
    deliver(&mut conn, events_api("env-8", &other, 0)).await;
    let root = "1700000000.000800";
    let ours = mention("EvS8", "C5", "U1", root, None, "ours");
    deliver(&mut conn, events_api("env-9", &ours, 0)).await;
    slack.card("C5", root, "Dry run").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
    app.stop().await;
}
dual_db!(foreign_workspace_test, foreign_workspace_over_socket);

/// `/chime` over Socket Mode: the answer rides on the ack, and a request opens its thread as it
/// does over HTTP. A malformed command is acked (it will not parse better) and stores nothing.
async fn slash_commands_over_socket(db: TestDb) {
    let (slack, mut socket, app) = start(&db, |_| {}).await;
    let mut conn = socket.next_connection(WAIT).await;
    let command = |id: &str, trigger: &str, text: &str| {
        json!({
            "envelope_id": id, "type": "slash_commands", "accepts_response_payload": true,
            "payload": {
                "token": "ignored", "team_id": "T1", "user_id": "U1", "channel_id": "C6",
                "command": "/chime", "text": text, "trigger_id": trigger,
                "response_url": "https://hooks.slack.com/commands/T1/1/x"
            }
        })
    };
    let answer = |frame: Option<Value>, id: &str| {
        let frame = frame.unwrap_or_else(|| panic!("no ack for {id}"));
        assert_eq!(frame["envelope_id"], id);
        assert_eq!(frame["payload"]["response_type"], "ephemeral", "{frame}");
        frame["payload"]["text"].as_str().unwrap().to_string()
    };
    conn.send(&command("sc-1", "1.1", "help")).await;
    assert!(answer(conn.next_frame(ACK).await, "sc-1").contains("/chime mute"));

    conn.send(&command("sc-2", "1.2", "mute 1w")).await;
    assert!(answer(conn.next_frame(ACK).await, "sc-2").contains("a week"));
    eventually(WAIT, "the mute recorded", || async {
        (app.count("SELECT COUNT(*) FROM policy_person_mutes WHERE person = 'U1'")
            .await
            == 1)
            .then_some(())
    })
    .await;

    conn.send(&command(
        "sc-3",
        "1.3",
        "write a script that lists stale branches",
    ))
    .await;
    assert!(answer(conn.next_frame(ACK).await, "sc-3").contains("starting a thread"));
    let root = eventually(WAIT, "the request's thread", || async {
        slack
            .calls("chat.postMessage")
            .into_iter()
            .find(|p| p["channel"] == "C6" && p["blocks"].to_string().contains("asked Chime"))
    })
    .await;
    assert!(root["blocks"].to_string().contains("stale branches"));

    let mut bad = command("sc-4", "1.4", "help");
    bad["payload"]["user_id"] = json!("not an id!");
    deliver(&mut conn, bad).await;
    app.stop().await;
}
dual_db!(slash_over_socket_test, slash_commands_over_socket);
