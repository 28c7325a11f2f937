//! Suggestions on Slack, end to end: a signed `message.channels` event in, a suggestion with three
//! buttons on the fake Slack after the alert's grace window, and what each button does.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn config_with_suggestions(
    db: &TestDb,
    slack: &FakeSlack,
    policy: std::path::PathBuf,
) -> chime::config::Config {
    let mut config = test_config(db, slack);
    config.suggestions.enabled = true;
    config.suggestions.policy = Some(policy);
    config
}

/// A CI bot's post in a channel, as Slack sends it for `message.channels`.
fn ci_alert(event_id: &str, channel: &str, ts: &str, thread_ts: Option<&str>, text: &str) -> Value {
    let ev = json!({
        "type": "message", "subtype": "bot_message", "bot_id": "BGITHUB", "channel_type": "channel",
        "text": text, "ts": ts, "channel": channel, "event_ts": ts, "team": "T1"
    });
    envelope(event_id, ev, thread_ts)
}

const FAILED: &str =
    "Build #4821 failed on main: 3 tests failing in payments-service (GitHub Actions)";

async fn ci_failure_offer_and_do_it(db: TestDb) {
    let slack = FakeSlack::start().await;
    slack.set_user(
        "UGUEST",
        json!({ "id": "UGUEST", "team_id": "T1", "is_restricted": true }),
    );
    slack.set_user("UEXT", json!({ "id": "UEXT", "team_id": "T9" }));
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(config_with_suggestions(
        &db,
        &slack,
        test_policy(dir.path(), 0.02),
    ))
    .await;
    let root = "1764072000.000100";
    let r = app
        .post_event(&ci_alert("EvCi1", "C9", root, None, FAILED))
        .await;
    assert_eq!(r.status(), 200);
    // Nothing while the grace window (1.2 s) is open, then one suggestion with three buttons.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        suggestions_in(&slack, "C9", root).is_empty(),
        "offered inside the grace window"
    );
    let card = slack.card("C9", root, "chime_accept").await;
    let blocks = card["blocks"].to_string();
    for id in ["chime_accept", "chime_not_now", "chime_mute_here"] {
        assert!(blocks.contains(id), "{id} missing: {blocks}");
    }
    assert!(blocks.contains("Fix the failing CI run"), "{blocks}");
    let value = card["blocks"][2]["elements"][0]["value"]
        .as_str()
        .unwrap()
        .to_string();

    // A second failing build posted in the same thread makes no second suggestion.
    app.post_event(&ci_alert(
        "EvCi2",
        "C9",
        "1764072000.000200",
        Some(root),
        FAILED,
    ))
    .await;

    // The same button value pressed in another thread (a forged click) does nothing.
    app.click(&button(
        "chime_accept",
        &value,
        "U1",
        "C1",
        "1764072000.999999",
        "1764072001.000000",
    ))
    .await;

    // A guest pressing Do it is refused, and nothing starts.
    app.click(&button(
        "chime_accept",
        &value,
        "UGUEST",
        "C9",
        root,
        "1764072001.000001",
    ))
    .await;
    eventually(Duration::from_secs(20), "an ephemeral refusal", || async {
        slack
            .calls("chat.postEphemeral")
            .into_iter()
            .find(|c| c["user"] == "UGUEST" && c.to_string().contains("guests cannot"))
    })
    .await;
    assert!(
        !slack
            .thread("C9", root)
            .iter()
            .any(|m| m.to_string().contains("guests cannot")),
        "the refusal is not posted for everyone"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);

    // So is someone from another organisation in a shared (Slack Connect) channel.
    app.click(&button(
        "chime_accept",
        &value,
        "UEXT",
        "C9",
        root,
        "1764072001.000004",
    ))
    .await;
    eventually(Duration::from_secs(20), "an ephemeral refusal", || async {
        slack
            .calls("chat.postEphemeral")
            .into_iter()
            .find(|c| c["user"] == "UEXT" && c.to_string().contains("other organisations"))
    })
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);

    // A member's Do it starts a task in that thread, in the clicker's name.
    let r = app
        .click(&button(
            "chime_accept",
            &value,
            "U1",
            "C9",
            root,
            "1764072001.000002",
        ))
        .await;
    assert_eq!(r.status(), 200);
    let result = slack.card("C9", root, "Dry run").await;
    assert!(
        result["blocks"]
            .to_string()
            .contains("Fix the failing CI run"),
        "{result}"
    );
    assert_eq!(app.text("SELECT requester FROM tasks").await, "U1");
    let answered = slack.card("C9", root, "accepted").await;
    assert_eq!(
        answered["ts"], card["ts"],
        "the suggestion itself is edited"
    );
    assert!(!answered["blocks"].to_string().contains("chime_accept"));
    assert_eq!(
        suggestions_in(&slack, "C9", root).len(),
        1,
        "one suggestion per thread"
    );
    // A second press is told the suggestion was answered, and starts nothing more.
    app.click(&button(
        "chime_accept",
        &value,
        "U2",
        "C9",
        root,
        "1764072001.000003",
    ))
    .await;
    eventually(
        Duration::from_secs(20),
        "already answered, privately",
        || async {
            slack
                .calls("chat.postEphemeral")
                .into_iter()
                .find(|c| c["user"] == "U2" && c.to_string().contains("already answered"))
        },
    )
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
    app.stop().await;
}
dual_db!(offer_test, ci_failure_offer_and_do_it);

async fn a_claimed_alert_gets_nothing(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(config_with_suggestions(
        &db,
        &slack,
        test_policy(dir.path(), 0.05),
    ))
    .await;
    let root = "1764072100.000100";
    app.post_event(&ci_alert("EvCl1", "C8", root, None, FAILED))
        .await;
    app.post_event(&human(
        "EvCl2",
        "C8",
        "U1",
        "1764072100.000200",
        Some(root),
        "on it, my change broke it",
    ))
    .await;
    // Past the window (3 s), and a control alert elsewhere proves the loop has decided.
    app.post_event(&ci_alert("EvCl3", "C7", "1764072100.000300", None, FAILED))
        .await;
    slack.card("C7", "1764072100.000300", "chime_accept").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        suggestions_in(&slack, "C8", root).is_empty(),
        "offered on a claimed alert"
    );
    assert_eq!(
        app.text("SELECT state FROM suggestions WHERE place = 'C8'")
            .await,
        "quiet"
    );
    app.stop().await;
}
dual_db!(claimed_test, a_claimed_alert_gets_nothing);

/// The grace window survives a restart: the pending decision is a row, decided once after it.
async fn grace_survives_a_restart(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = test_policy(dir.path(), 0.05);
    let app = TestApp::spawn(config_with_suggestions(&db, &slack, policy.clone())).await;
    let root = "1764072200.000100";
    app.post_event(&ci_alert("EvR1", "C6", root, None, FAILED))
        .await;
    eventually(Duration::from_secs(10), "the pending row", || async {
        (app.count("SELECT COUNT(*) FROM suggestions WHERE state = 'pending'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    app.stop().await;
    // Two replicas on one database after the restart: one suggestion.
    let a = TestApp::spawn(config_with_suggestions(&db, &slack, policy.clone())).await;
    let b = TestApp::spawn(config_with_suggestions(&db, &slack, policy)).await;
    slack.card("C6", root, "chime_accept").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(suggestions_in(&slack, "C6", root).len(), 1);
    assert_eq!(slack.calls("chat.postMessage").len(), 1);
    a.stop().await;
    b.stop().await;
}
dual_db!(restart_test, grace_survives_a_restart);

async fn dont_suggest_this_here_mutes_the_kind(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(config_with_suggestions(
        &db,
        &slack,
        test_policy(dir.path(), 0.0),
    ))
    .await;
    let root = "1764072300.000100";
    app.post_event(&ci_alert("EvM1", "C5", root, None, FAILED))
        .await;
    let card = slack.card("C5", root, "chime_accept").await;
    let value = card["blocks"][2]["elements"][2]["value"]
        .as_str()
        .unwrap()
        .to_string();
    app.click(&button(
        "chime_mute_here",
        &value,
        "U1",
        "C5",
        root,
        "1764072301.000001",
    ))
    .await;
    slack.card("C5", root, "muted").await;
    // The same kind in the same channel: nothing. In another channel: offered.
    app.post_event(&ci_alert("EvM2", "C5", "1764072300.000200", None, FAILED))
        .await;
    app.post_event(&ci_alert("EvM3", "C4", "1764072300.000300", None, FAILED))
        .await;
    slack.card("C4", "1764072300.000300", "chime_accept").await;
    // The muted alert has been decided.
    all_handled(&app).await;
    assert!(suggestions_in(&slack, "C5", "1764072300.000200").is_empty());
    assert_eq!(
        app.count("SELECT COUNT(*) FROM policy_mutes WHERE place = 'C5' AND action = 'fix_ci'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks").await,
        0,
        "a suggestion never runs anything by itself"
    );
    app.stop().await;
}
dual_db!(mute_test, dont_suggest_this_here_mutes_the_kind);

async fn backend_thread(app: &TestApp, root: &str) -> Vec<Value> {
    let url = format!("/api/local/channels/CBACKEND/threads/{root}");
    app.playground(reqwest::Method::GET, &url)
        .await
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The playground runs the same policy: a stack trace pasted in #backend gets a suggestion in its
/// thread, and Do it there starts a task whose result comes back in the same thread.
async fn playground_offer_and_do_it(db: TestDb) {
    use reqwest::Method;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = test_policy(dir.path(), 15.0);
    let text = std::fs::read_to_string(&policy).unwrap().replacen(
        "opted_in = false",
        "opted_in = true",
        1,
    );
    std::fs::write(&policy, text).unwrap();
    let mut config = config_with_suggestions(&db, &slack, policy);
    config.secrets = Default::default();
    let app = TestApp::spawn(config).await;
    let posted: Value = app
        .playground(Method::POST, "/api/local/messages")
        .await
        .json(&json!({ "channel": "CBACKEND", "user": "U0ANA",
            "text": "seeing this on staging:\nTraceback (most recent call last):\nKeyError: 'user_id'" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let root = posted["ts"].as_str().unwrap().to_string();
    let offer = eventually(
        Duration::from_secs(20),
        "the playground suggestion",
        || async {
            backend_thread(&app, &root)
                .await
                .into_iter()
                .find(|m| m["blocks"].to_string().contains("chime_accept"))
        },
    )
    .await;
    assert!(
        offer["blocks"]
            .to_string()
            .contains("Investigate this error"),
        "{offer}"
    );
    let value = offer["blocks"][2]["elements"][0]["value"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app
        .playground(Method::POST, "/api/local/actions")
        .await
        .json(
            &json!({ "user": "U0BEN", "channel": "CBACKEND", "thread_ts": root,
            "action_id": "chime_accept", "value": value }),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    eventually(
        Duration::from_secs(20),
        "the result in the playground thread",
        || async {
            backend_thread(&app, &root)
                .await
                .into_iter()
                .find(|m| m["blocks"].to_string().contains("Dry run"))
        },
    )
    .await;
    assert_eq!(app.text("SELECT requester FROM tasks").await, "U0BEN");
    // #general is a place the shipped policy never speaks in.
    app.playground(Method::POST, "/api/local/messages")
        .await
        .json(&json!({ "channel": "CGENERAL", "user": "U0ANA",
            "text": "Traceback (most recent call last):\nKeyError: 'user_id'" }))
        .send()
        .await
        .unwrap();
    all_handled(&app).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM suggestions").await, 1);
    app.stop().await;
}
dual_db!(playground_test, playground_offer_and_do_it);

/// `/chime mute 1d` stops suggestions on that person's messages (and only theirs); `/chime
/// unmute` brings them back; help and bad input get an answer only the person sees.
async fn slash_mute_and_unmute(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = test_policy(dir.path(), 0.0);
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replacen("opted_in = false", "opted_in = true", 1)
        .replacen("per_person_per_day = 2", "per_person_per_day = 10", 1)
        .replacen("per_channel_per_day = 3", "per_channel_per_day = 10", 1);
    std::fs::write(&policy, text).unwrap();
    let app = TestApp::spawn(config_with_suggestions(&db, &slack, policy)).await;
    let trace = "seeing this:\nTraceback (most recent call last):\nKeyError: 'user_id'";

    let help: Value = slash(&app, "U1", "1.1", "help").await.json().await.unwrap();
    assert_eq!(help["response_type"], "ephemeral");
    assert!(
        help["text"].as_str().unwrap().contains("/chime mute"),
        "{help}"
    );
    let bad: Value = slash(&app, "U1", "1.2", "mute 1y")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        bad["text"].as_str().unwrap().contains("1d, 1w or forever"),
        "{bad}"
    );
    let r = signed_post(
        &app.http,
        &app.url("/slack/commands"),
        b"team_id=T1".to_vec(),
        "application/x-www-form-urlencoded",
        &[],
    )
    .await;
    assert_eq!(r.status(), 400);
    let forged = app
        .http
        .post(app.url("/slack/commands"))
        .body("team_id=T1&user_id=U1&channel_id=C3&trigger_id=9&text=unmute")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let muted: Value = slash(&app, "U1", "1.3", "mute 1d")
        .await
        .json()
        .await
        .unwrap();
    assert!(muted["text"].as_str().unwrap().contains("Muted"), "{muted}");
    eventually(Duration::from_secs(10), "the mute recorded", || async {
        (app.count("SELECT COUNT(*) FROM policy_person_mutes WHERE person = 'U1'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    app.post_event(&human("EvS1", "C3", "U1", "1764072400.000100", None, trace))
        .await;
    app.post_event(&human("EvS2", "C3", "U2", "1764072400.000200", None, trace))
        .await;
    slack.card("C3", "1764072400.000200", "chime_accept").await;
    all_handled(&app).await;
    assert!(
        suggestions_in(&slack, "C3", "1764072400.000100").is_empty(),
        "suggested to a muted person"
    );

    slash(&app, "U1", "1.4", "unmute").await;
    eventually(Duration::from_secs(10), "the unmute recorded", || async {
        (app.count("SELECT COUNT(*) FROM policy_person_mutes").await == 0).then_some(())
    })
    .await;
    app.post_event(&human("EvS3", "C3", "U1", "1764072400.000300", None, trace))
        .await;
    slack.card("C3", "1764072400.000300", "chime_accept").await;
    app.stop().await;
}
dual_db!(slash_test, slash_mute_and_unmute);

/// Not now is recorded and moves the kind's threshold up in that channel (within its bounds);
/// `chime policy stats` shows offered, accepted, dismissed and muted per kind and channel.
async fn not_now_is_learned_and_counted(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(config_with_suggestions(
        &db,
        &slack,
        test_policy(dir.path(), 0.0),
    ))
    .await;
    let root = "1764072500.000100";
    app.post_event(&ci_alert("EvN1", "C2", root, None, FAILED))
        .await;
    let card = slack.card("C2", root, "chime_accept").await;
    let value = card["blocks"][2]["elements"][1]["value"]
        .as_str()
        .unwrap()
        .to_string();
    // Another member may put it off; the press is recorded once however often it comes.
    for n in 1..=2 {
        app.click(&button(
            "chime_not_now",
            &value,
            "U2",
            "C2",
            root,
            &format!("1764072501.00000{n}"),
        ))
        .await;
    }
    slack.card("C2", root, "not now").await;
    eventually(Duration::from_secs(10), "the threshold moved", || async {
        (app.count("SELECT COUNT(*) FROM policy_thresholds WHERE place = 'C2' AND action = 'fix_ci' AND shift_milli = 50").await == 1)
            .then_some(())
    })
    .await;
    assert_eq!(app.text("SELECT state FROM suggestions").await, "dismissed");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chime"))
        .args(["policy", "stats"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find(|l| l.starts_with("fix_ci"))
        .unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols,
        ["fix_ci", "C2", "1", "0", "1", "0", "+0.05"],
        "{text}"
    );
    app.stop().await;
}
dual_db!(learning_test, not_now_is_learned_and_counted);

/// Slack events carry channel ids only; the policy's `never = ["#random"]` still holds, by the
/// name `conversations.info` gives.
async fn never_holds_by_channel_name(db: TestDb) {
    let slack = FakeSlack::start().await;
    slack
        .state
        .lock()
        .unwrap()
        .channel_names
        .insert("C1R".into(), "random".into());
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn(config_with_suggestions(
        &db,
        &slack,
        test_policy(dir.path(), 0.0),
    ))
    .await;
    app.post_event(&ci_alert("EvNv1", "C1R", "1764072600.000100", None, FAILED))
        .await;
    app.post_event(&ci_alert("EvNv2", "C1B", "1764072600.000200", None, FAILED))
        .await;
    slack.card("C1B", "1764072600.000200", "chime_accept").await;
    all_handled(&app).await;
    assert!(
        slack.thread("C1R", "1764072600.000100").is_empty(),
        "spoke in #random"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM suggestions").await, 1);
    assert!(slack
        .calls("conversations.info")
        .iter()
        .any(|c| c["channel"] == "C1R"));
    app.stop().await;
}
dual_db!(never_test, never_holds_by_channel_name);

/// kill -9 inside a grace window, then a restart: exactly one suggestion when the window ends. The
/// real binary is killed, so nothing gets a chance to flush or hand over.
async fn grace_survives_kill9(db: TestDb) {
    use common::process::{free_port, ChimeProcess, FAST_CONFIG};
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Six seconds: long enough to kill the process well inside the window.
    let policy = test_policy(dir.path(), 0.1);
    let config = format!(
        "{FAST_CONFIG}\n[suggestions]\nenabled = true\npolicy = \"{}\"\n",
        policy.display()
    );
    let env = vec![
        ("DATABASE_URL", db.url().to_string()),
        ("SLACK_SIGNING_SECRET", SECRET.to_string()),
        ("SLACK_BOT_TOKEN", "xoxb-test-token".to_string()),
        ("SLACK_API_URL", slack.api_url()),
    ];
    let port = free_port();
    let mut first = ChimeProcess::start(dir.path(), "first", port, &env, &config).await;
    let root = "1764072300.000100";
    let http = reqwest::Client::new();
    let url = format!("{}/slack/events", first.base);
    let body = ci_alert("EvK1", "C7", root, None, FAILED).to_string();
    let sent = std::time::Instant::now();
    let r = signed_post(&http, &url, body.into_bytes(), "application/json", &[]).await;
    assert_eq!(r.status(), 200);
    // The pending decision is a row before the kill.
    sqlx::any::install_default_drivers();
    eventually(Duration::from_secs(5), "the pending row", || async {
        use sqlx::Connection;
        let mut c = sqlx::AnyConnection::connect(db.url()).await.ok()?;
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM suggestions WHERE state = 'pending'")
            .fetch_one(&mut c)
            .await
            .ok()?;
        (n == 1).then_some(())
    })
    .await;
    first.kill9();
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "killed after the window ended; the test proves nothing"
    );
    assert!(suggestions_in(&slack, "C7", root).is_empty());

    let second = ChimeProcess::start(dir.path(), "second", port, &env, &config).await;
    slack.card("C7", root, "chime_accept").await;
    assert!(
        sent.elapsed() >= Duration::from_secs(6),
        "offered before the grace window ended"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        suggestions_in(&slack, "C7", root).len(),
        1,
        "exactly one suggestion"
    );
    assert_eq!(slack.calls("chat.postMessage").len(), 1);
    drop(second);
}
dual_db!(kill9_test, grace_survives_kill9);

/// A scope with `delivery = "ephemeral"`: the offer is shown only to the message's author, in
/// the channel, and its Do it starts the task in the message's thread. Nobody else can press it.
async fn ephemeral_delivery(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = test_policy(dir.path(), 0.0);
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replacen("opted_in = false", "opted_in = true", 1)
        .replacen("delivery = \"thread\"", "delivery = \"ephemeral\"", 1);
    std::fs::write(&policy, text).unwrap();
    let app = TestApp::spawn(config_with_suggestions(&db, &slack, policy)).await;
    let root = "1764072500.000100";
    let trace = "seeing this:\nTraceback (most recent call last):\nKeyError: 'user_id'";
    app.post_event(&human("EvE1", "C8", "U1", root, None, trace))
        .await;
    let offer = eventually(Duration::from_secs(10), "the private offer", || async {
        slack.calls("chat.postEphemeral").into_iter().next()
    })
    .await;
    assert_eq!(offer["user"], "U1");
    assert_eq!(offer["channel"], "C8");
    assert!(offer.get("thread_ts").is_none_or(Value::is_null), "{offer}");
    let blocks = offer["blocks"].to_string();
    assert!(blocks.contains("chime_accept"), "{blocks}");
    assert!(
        slack.calls("chat.postMessage").is_empty(),
        "the offer was public"
    );
    let value = offer["blocks"][2]["elements"][0]["value"]
        .as_str()
        .unwrap()
        .to_string();
    // Slack names an ephemeral message by its own ts, with no thread.
    let press = |user: &str, action_ts: &str| {
        json!({
            "type": "block_actions", "team": { "id": "T1" }, "user": { "id": user, "team_id": "T1" },
            "channel": { "id": "C8" },
            "container": { "type": "message", "channel_id": "C8", "message_ts": "1800000000.999999", "is_ephemeral": true },
            "actions": [{ "action_id": "chime_accept", "value": value, "action_ts": action_ts, "type": "button" }],
            "trigger_id": "1.2.3"
        })
    };
    // Someone else replaying the value (they never saw it) starts nothing.
    assert_eq!(app.click(&press("U2", "1764072501.1")).await.status(), 200);
    all_handled(&app).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);

    assert_eq!(app.click(&press("U1", "1764072501.2")).await.status(), 200);
    slack.card("C8", root, "Dry run").await;
    assert_eq!(
        app.text("SELECT binding FROM tasks").await,
        format!("slack:T1/C8/{root}")
    );
    assert_eq!(app.text("SELECT requester FROM tasks").await, "U1");
    // The answer is told privately too: an ephemeral message cannot be edited.
    eventually(Duration::from_secs(10), "the private answer", || async {
        slack
            .calls("chat.postEphemeral")
            .into_iter()
            .find(|p| p["blocks"].to_string().contains("accepted"))
    })
    .await;
    assert!(slack
        .calls("chat.update")
        .iter()
        .all(|u| !u["blocks"].to_string().contains("accepted")));
    app.stop().await;
}
dual_db!(ephemeral_test, ephemeral_delivery);
