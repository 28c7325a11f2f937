//! The Slack path end to end: signed requests in, recorded Slack Web API calls out.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

async fn mention_round_trip(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let r = app
        .post_event(&mention(
            "Ev100",
            "C1",
            "U1",
            "1700000000.000100",
            None,
            "the retry client drops the last chunk",
        ))
        .await;
    assert_eq!(r.status(), 200);

    let card = slack.card("C1", "1700000000.000100", "Dry run").await;
    let text = card["blocks"].to_string();
    assert!(
        text.contains("the retry client drops the last chunk"),
        "{text}"
    );

    let reactions = slack.calls("reactions.add");
    assert_eq!(reactions.len(), 1);
    assert_eq!(reactions[0]["name"], "eyes");
    assert_eq!(reactions[0]["timestamp"], "1700000000.000100");
    let posts = slack.calls("chat.postMessage");
    assert_eq!(posts.len(), 1, "exactly one status message: {posts:?}");
    assert_eq!(posts[0]["thread_ts"], "1700000000.000100");
    assert!(posts[0]["text"]
        .as_str()
        .unwrap()
        .starts_with("Working on it"));
    assert!(posts[0]["blocks"].to_string().contains("chime_stop"));
    let updates = slack.calls("chat.update");
    assert!(!updates.is_empty(), "the status message is edited in place");
    assert!(
        updates.iter().all(|u| u["ts"] == card["ts"]),
        "every edit targets the one status message"
    );
    assert!(updates.last().unwrap()["blocks"]
        .to_string()
        .contains("Dry run"));
    app.stop().await;
}
dual_db!(mention_round_trip_test, mention_round_trip);

async fn five_turns(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let root = "1700000000.000200";
    for turn in 1..=5 {
        let ts = format!("1700000000.00030{turn}");
        let thread = if turn == 1 { None } else { Some(root) };
        let msg_ts = if turn == 1 { root.to_string() } else { ts };
        let r = app
            .post_event(&mention(
                &format!("EvT{turn}"),
                "C2",
                "U1",
                &msg_ts,
                thread,
                &format!("request number {turn}"),
            ))
            .await;
        assert_eq!(r.status(), 200);
        slack.card("C2", root, &format!("turn {turn}:")).await;
    }
    let cards = slack.thread("C2", root);
    let last = cards
        .iter()
        .find(|m| m["blocks"].to_string().contains("turn 5:"))
        .unwrap();
    let text = last["blocks"].to_string();
    for earlier in 1..=4 {
        assert!(
            text.contains(&format!("Turn {earlier}, requested by")),
            "turn 5 input lacks turn {earlier}: {text}"
        );
        assert!(text.contains(&format!("request number {earlier}")));
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 5);
    app.stop().await;
}
dual_db!(five_turns_test, five_turns);

async fn bad_requests_store_nothing(db: TestDb) {
    let slack = FakeSlack::start().await;
    let mut config = test_config(&db, &slack);
    config.server.max_body_bytes = 4096;
    let app = TestApp::spawn(config).await;
    let body = mention("EvBad", "C1", "U1", "1700000000.000400", None, "hello").to_string();
    let url = app.url("/slack/events");

    // Forged signature.
    let r = app
        .http
        .post(&url)
        .header("x-slack-request-timestamp", chrono_now().to_string())
        .header("x-slack-signature", "v0=deadbeef")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // No signature at all.
    let r = app.http.post(&url).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // Correctly signed, but ten minutes old.
    let old = (chrono_now() - 600).to_string();
    let sig = chime::slack::verify::sign(&SECRET.to_string().into(), &old, body.as_bytes());
    let r = app
        .http
        .post(&url)
        .header("x-slack-request-timestamp", old)
        .header("x-slack-signature", sig)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Signed, but not JSON.
    let r = signed_post(
        &app.http,
        &url,
        b"{\"type\": \"event_callback\", ".to_vec(),
        "application/json",
        &[],
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("JSON"));
    // Too large.
    let big = json!({ "type": "event_callback", "pad": "x".repeat(10_000) });
    let r = app.post_event(&big).await;
    assert_eq!(r.status(), 413);
    // Unknown event type: accepted and ignored.
    let r = app
        .post_event(&json!({
            "type": "event_callback", "team_id": "T1", "event_id": "EvUnknown",
            "event": { "type": "pin_added", "user": "U1" }
        }))
        .await;
    assert_eq!(r.status(), 200);
    // URL verification answers the challenge.
    let r = app
        .post_event(&json!({ "type": "url_verification", "challenge": "abc123", "token": "x" }))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "abc123");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);
    assert!(
        slack.all_calls().iter().all(|c| c.method == "auth.test"),
        "nothing was posted"
    );
    app.stop().await;
}
dual_db!(bad_requests_test, bad_requests_store_nothing);

async fn duplicates_and_bots(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let ev = mention(
        "EvDup",
        "C1",
        "U1",
        "1700000000.000500",
        None,
        "once please",
    );
    assert_eq!(app.post_event(&ev).await.status(), 200);
    for n in ["1", "2"] {
        let r = app
            .post_event_with(
                &ev,
                &[
                    ("x-slack-retry-num", n),
                    ("x-slack-retry-reason", "http_timeout"),
                ],
            )
            .await;
        assert_eq!(r.status(), 200);
    }
    // A bot's message, Chime's own message, and a message subtype.
    let mut bot = mention("EvBot", "C1", "U2", "1700000000.000600", None, "from a bot");
    bot["event"]["bot_id"] = json!("B999");
    let own = mention(
        "EvOwn",
        "C1",
        "UBOT",
        "1700000000.000700",
        None,
        "from myself",
    );
    let mut edited = mention("EvEdit", "C1", "U1", "1700000000.000800", None, "edited");
    edited["event"]["subtype"] = json!("message_changed");
    for e in [bot, own, edited] {
        assert_eq!(app.post_event(&e).await.status(), 200);
    }
    slack.card("C1", "1700000000.000500", "Dry run").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 1);
    assert_eq!(slack.calls("chat.postMessage").len(), 1);
    app.stop().await;
}
dual_db!(duplicates_and_bots_test, duplicates_and_bots);

async fn rate_limited_post_arrives_once(db: TestDb) {
    let slack = FakeSlack::start().await;
    slack.rate_limit_next_posts(1);
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    app.post_event(&mention(
        "EvRate",
        "C3",
        "U1",
        "1700000000.000900",
        None,
        "limited",
    ))
    .await;
    slack.card("C3", "1700000000.000900", "Dry run").await;
    let posts = slack.calls("chat.postMessage");
    assert_eq!(posts.len(), 2, "one 429, then one accepted post");
    assert_eq!(
        slack.thread("C3", "1700000000.000900").len(),
        1,
        "the message arrived once"
    );
    app.stop().await;
}
dual_db!(rate_limit_test, rate_limited_post_arrives_once);

async fn guests_and_external_users_are_refused(db: TestDb) {
    let slack = FakeSlack::start().await;
    slack.set_user(
        "UGUEST",
        json!({ "id": "UGUEST", "team_id": "T1", "is_restricted": true }),
    );
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    app.post_event(&mention(
        "EvGuest",
        "C4",
        "UGUEST",
        "1700000000.001000",
        None,
        "do it",
    ))
    .await;
    let mut ext = mention("EvExt", "C4", "UEXT", "1700000000.001100", None, "do it");
    ext["event"]["user_team"] = json!("T9");
    app.post_event(&ext).await;
    slack.card("C4", "1700000000.001000", "guests cannot").await;
    slack
        .card("C4", "1700000000.001100", "other organisations")
        .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);
    app.stop().await;
}
dual_db!(trust_test, guests_and_external_users_are_refused);

async fn repo_picker_then_pick(db: TestDb) {
    let slack = FakeSlack::start().await;
    let mut config = test_config(&db, &slack);
    config
        .routing
        .channels
        .insert("CMAPPED".into(), "acme/web".into());
    config.repos.insert(
        "acme/api".into(),
        chime::config::RepoConfig {
            url: "/nonexistent".into(),
            default_branch: None,
            ..Default::default()
        },
    );
    let app = TestApp::spawn(config).await;
    // A mapped channel resolves on its own; an inline repo wins over it.
    app.post_event(&mention(
        "EvMap",
        "CMAPPED",
        "U1",
        "1700000000.001200",
        None,
        "mapped",
    ))
    .await;
    slack
        .card("CMAPPED", "1700000000.001200", "repo `acme/web`")
        .await;
    app.post_event(&mention(
        "EvInline",
        "CMAPPED",
        "U1",
        "1700000000.001250",
        None,
        "inline repo=acme/api",
    ))
    .await;
    slack
        .card("CMAPPED", "1700000000.001250", "repo `acme/api`")
        .await;
    // An unmapped channel gets a picker.
    app.post_event(&mention(
        "EvPick",
        "COTHER",
        "U1",
        "1700000000.001300",
        None,
        "which one",
    ))
    .await;
    let picker = slack
        .card("COTHER", "1700000000.001300", "chime_pick_repo")
        .await;
    let task_id: String = {
        use sqlx::Row;
        sqlx::query("SELECT id FROM tasks WHERE state = 'awaiting_repo'")
            .fetch_one(&app.db.pool)
            .await
            .unwrap()
            .get(0)
    };
    assert!(picker["blocks"].to_string().contains(&task_id));
    let mut click = button(
        "chime_pick_repo",
        "",
        "U1",
        "COTHER",
        "1700000000.001300",
        "1700000001.000001",
    );
    click["actions"][0] = json!({ "action_id": "chime_pick_repo", "type": "static_select",
        "selected_option": { "value": format!("{task_id} acme/api") }, "action_ts": "1700000001.000001" });
    assert_eq!(app.click(&click).await.status(), 200);
    slack.card("COTHER", "1700000000.001300", "Dry run").await;
    app.stop().await;
}
dual_db!(repo_routing_test, repo_picker_then_pick);

async fn health_endpoints(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
}
dual_db!(health_test, health_endpoints);

async fn retention_sweep_removes_only_handled_rows(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    app.post_event(&mention(
        "EvSweep",
        "C9",
        "U1",
        "1700000000.009000",
        None,
        "sweep me",
    ))
    .await;
    slack.card("C9", "1700000000.009000", "Dry run").await;
    eventually(WAIT, "outbox drained", || async {
        (app.count("SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')")
            .await
            == 0)
            .then_some(())
    })
    .await;
    // Nothing is old enough under the default retention.
    assert_eq!(chime::janitor::sweep(&app.db, 7).await.unwrap(), (0, 0));
    tokio::time::sleep(Duration::from_millis(5)).await;
    let (inbox, outbox) = chime::janitor::sweep(&app.db, 0).await.unwrap();
    assert_eq!(inbox, 1);
    assert!(outbox >= 3, "reaction, status post and its edits");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks").await,
        1,
        "tasks and sessions are history, never swept"
    );
    app.stop().await;
}
dual_db!(retention_test, retention_sweep_removes_only_handled_rows);

/// A `message` event as Slack sends it: a DM (`channel_type: "im"`) or a channel message.
fn message(
    event_id: &str,
    channel: &str,
    channel_type: &str,
    ts: &str,
    thread_ts: Option<&str>,
    text: &str,
) -> Value {
    let ev = json!({
        "type": "message", "channel_type": channel_type, "user": "U1", "text": text, "ts": ts,
        "channel": channel, "event_ts": ts, "team": "T1"
    });
    envelope(event_id, ev, thread_ts)
}

/// A direct message is a request on its own (no mention needed), with the same round trip as a
/// mention; a reply in its thread continues the session. A plain channel message is not a request:
/// one that mentions Chime also arrives as `app_mention`, which is what starts the work.
async fn dm_works_like_a_mention(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let root = "1700000000.005000";
    let r = app
        .post_event(&message(
            "EvDm1",
            "D1",
            "im",
            root,
            None,
            "why does the nightly build time out",
        ))
        .await;
    assert_eq!(r.status(), 200);

    let card = slack.card("D1", root, "Dry run").await;
    assert!(
        card["blocks"]
            .to_string()
            .contains("why does the nightly build time out"),
        "{card}"
    );
    let reactions = slack.calls("reactions.add");
    assert_eq!(reactions.len(), 1, "{reactions:?}");
    assert_eq!(reactions[0]["name"], "eyes");
    assert_eq!(reactions[0]["channel"], "D1");
    assert_eq!(reactions[0]["timestamp"], root);
    let posts = slack.calls("chat.postMessage");
    assert_eq!(posts.len(), 1, "exactly one status message: {posts:?}");
    assert_eq!(posts[0]["channel"], "D1");
    assert_eq!(posts[0]["thread_ts"], root);
    assert!(slack
        .calls("chat.update")
        .iter()
        .all(|u| u["ts"] == card["ts"] && u["channel"] == "D1"));

    // A follow-up in the DM's thread continues the session.
    let r = app
        .post_event(&message(
            "EvDm2",
            "D1",
            "im",
            "1700000000.005100",
            Some(root),
            "and the weekly one too",
        ))
        .await;
    assert_eq!(r.status(), 200);
    let second = slack.card("D1", root, "and the weekly one too").await;
    let text = second["blocks"].to_string();
    assert!(text.contains("Dry run"), "{text}");
    assert!(
        text.contains("why does the nightly build time out"),
        "turn 2's input carries turn 1: {text}"
    );
    assert_ne!(second["ts"], card["ts"], "each turn has its own message");
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 2);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE turn_no = 2")
            .await,
        1
    );
    let reactions = slack.calls("reactions.add");
    assert_eq!(reactions.len(), 2);
    assert_eq!(reactions[1]["timestamp"], "1700000000.005100");

    // A message in a public channel starts nothing, mention text or not.
    for (id, text) in [
        ("EvChan1", "<@UBOT> please look at this"),
        ("EvChan2", "just chatting"),
    ] {
        let r = app
            .post_event(&message(
                id,
                "C1",
                "channel",
                "1700000000.005200",
                None,
                text,
            ))
            .await;
        assert_eq!(r.status(), 200);
    }
    // Proof that the worker has caught up: a mention sent after them is answered.
    app.post_event(&mention(
        "EvAfter",
        "C2",
        "U1",
        "1700000000.005300",
        None,
        "a real mention",
    ))
    .await;
    slack.card("C2", "1700000000.005300", "Dry run").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 3);
    assert!(
        slack.thread("C1", "1700000000.005200").is_empty(),
        "nothing was posted for the channel message"
    );
    assert!(
        slack
            .calls("reactions.add")
            .iter()
            .all(|r| r["channel"] != "C1"),
        "no reaction on the channel message"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 3);
    app.stop().await;
}
dual_db!(dm_test, dm_works_like_a_mention);

/// Slack text is arbitrary Unicode, U+0000 included. A request carrying it is answered like any
/// other (Postgres refuses NUL in TEXT columns, so it must not reach one unchanged).
async fn nul_in_a_request_is_answered(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let root = "1700000000.006000";
    let r = app
        .post_event(&mention(
            "EvNul",
            "C1",
            "U1",
            root,
            None,
            "the parser chokes on \u{0} bytes",
        ))
        .await;
    assert_eq!(r.status(), 200);
    let card = slack.card("C1", root, "Dry run").await;
    let text = card["blocks"].to_string();
    assert!(text.contains("the parser chokes on"), "{text}");
    assert!(text.contains("bytes"), "{text}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inbox WHERE state = 'done'")
            .await,
        1
    );
    app.stop().await;
}
dual_db!(nul_test, nul_in_a_request_is_answered);
