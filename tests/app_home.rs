//! The App Home tab, end to end: a signed `app_home_opened` in, a `views.publish` with that
//! person's sessions, settings, linked accounts and week on the fake Slack; settings changed
//! there (signed `block_actions` from the view) take effect at once, and `/chime` sees them.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const TRACE: &str = "seeing this:\nTraceback (most recent call last):\nKeyError: 'user_id'";

fn home_opened(event_id: &str, user: &str) -> Value {
    let ev = json!({ "type": "app_home_opened", "user": user, "channel": format!("D{user}"),
        "tab": "home", "event_ts": "1764072000.000001" });
    envelope(event_id, ev, None)
}

/// A press on the Home tab: no channel, the view as container.
fn home_action(action_id: &str, value: &str, user: &str, action_ts: &str) -> Value {
    let action = if action_id == "chime_home_quiet" || action_id == "chime_home_verbosity" {
        json!({ "action_id": action_id, "type": "static_select", "action_ts": action_ts,
            "selected_option": { "text": { "type": "plain_text", "text": value }, "value": value } })
    } else {
        json!({ "action_id": action_id, "value": value, "type": "button", "action_ts": action_ts })
    };
    json!({
        "type": "block_actions", "team": { "id": "T1" }, "user": { "id": user, "team_id": "T1" },
        "container": { "type": "view", "view_id": "VHOME" },
        "view": { "id": "VHOME", "type": "home" }, "actions": [action], "trigger_id": "1.2.3"
    })
}

/// The suggestion policy opted in, with room in its budgets for every message of a test.
fn policy(dir: &std::path::Path) -> std::path::PathBuf {
    let policy = test_policy(dir, 0.0);
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replacen("opted_in = false", "opted_in = true", 1)
        .replacen("per_person_per_day = 2", "per_person_per_day = 20", 1)
        .replacen("per_channel_per_day = 3", "per_channel_per_day = 20", 1);
    std::fs::write(&policy, text).unwrap();
    policy
}

async fn start(db: &TestDb, slack: &FakeSlack, dir: &std::path::Path) -> TestApp {
    let mut config = test_config(db, slack);
    config.suggestions.enabled = true;
    config.suggestions.policy = Some(policy(dir));
    TestApp::spawn(config).await
}

/// Waits for `user`'s Home tab to be published with `marker` in it.
async fn home_with(slack: &FakeSlack, user: &str, marker: &str) -> String {
    eventually(Duration::from_secs(10), marker, || async {
        let home = slack.state.lock().unwrap().homes.get(user).cloned()?;
        let text = home.to_string();
        text.contains(marker).then_some(text)
    })
    .await
}

async fn succeeded(app: &TestApp, n: i64) {
    eventually(Duration::from_secs(20), "the turns done", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'")
            .await
            == n)
            .then_some(())
    })
    .await;
}

/// Whether a channel message from `user` gets a suggestion now.
async fn offered(app: &TestApp, slack: &FakeSlack, event: &str, user: &str, ts: &str) -> bool {
    app.post_event(&human(event, "C3", user, ts, None, TRACE))
        .await;
    all_handled(app).await;
    // A suggestion is offered in the handler's transaction; give the outbox a moment to send it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    !suggestions_in(slack, "C3", ts).is_empty()
}

async fn sessions_settings_and_mute(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = start(&db, &slack, dir.path()).await;
    app.post_event(&mention(
        "EvM1",
        "C1",
        "U1",
        "1764072000.000100",
        None,
        "fix the login redirect",
    ))
    .await;
    app.post_event(&mention(
        "EvM2",
        "C2",
        "U2",
        "1764072000.000200",
        None,
        "bump the parser",
    ))
    .await;
    succeeded(&app, 2).await;

    // U1 opens Chime's Home: their session, with its state and a link to its thread; not U2's.
    let r = app.post_event(&home_opened("EvH1", "U1")).await;
    assert_eq!(r.status(), 200);
    let home = home_with(&slack, "U1", "fix the login redirect").await;
    assert!(!home.contains("bump the parser"), "{home}");
    assert!(home.contains("succeeded"), "{home}");
    assert!(home.contains("channel=C1"), "{home}");
    assert!(home.contains("*Asked*\\n1"), "{home}");
    assert!(home.contains("chime_home_mute_forever") && home.contains("chime_home_quiet"));
    let published = slack.calls("views.publish");
    assert_eq!(published.len(), 1);
    assert_eq!(published[0]["user_id"], "U1");
    // The Messages tab opens nothing.
    let mut messages_tab = home_opened("EvH2", "U1");
    messages_tab["event"]["tab"] = json!("messages");
    app.post_event(&messages_tab).await;
    all_handled(&app).await;
    assert_eq!(slack.calls("views.publish").len(), 1);

    // Before muting, U1 gets suggestions.
    assert!(offered(&app, &slack, "EvS0", "U1", "1764072300.000100").await);

    // Mute from the Home tab: the page shows it at once, `/chime settings` sees it, and U1's
    // messages get no suggestions while U2's still do.
    let r = app
        .click(&home_action(
            "chime_home_mute_forever",
            "forever",
            "U1",
            "1764072400.000001",
        ))
        .await;
    assert_eq!(r.status(), 200);
    let home = home_with(&slack, "U1", "muted until you unmute them").await;
    assert!(home.contains("chime_home_unmute"), "{home}");
    let settings: Value = slash(&app, "U1", "2.1", "settings")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(settings["response_type"], "ephemeral");
    assert!(
        settings["text"]
            .as_str()
            .unwrap()
            .contains("muted until you unmute them"),
        "{settings}"
    );
    assert!(!offered(&app, &slack, "EvS1", "U1", "1764072400.000100").await);
    assert!(offered(&app, &slack, "EvS2", "U2", "1764072400.000200").await);
    // U2's own settings are untouched by U1's press, and U2 cannot press for U1: a press
    // changes only the presser's settings.
    let other: Value = slash(&app, "U2", "2.2", "settings")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        other["text"].as_str().unwrap().contains("suggestions: on"),
        "{other}"
    );

    // Unmute there: suggestions again.
    app.click(&home_action(
        "chime_home_unmute",
        "unmute",
        "U1",
        "1764072500.000001",
    ))
    .await;
    home_with(&slack, "U1", "chime_home_mute_forever").await;
    assert!(offered(&app, &slack, "EvS3", "U1", "1764072500.000100").await);

    // A linked Linear account is listed with Unlink; pressing it unlinks it.
    let mut conn = app.db.pool.acquire().await.unwrap();
    chime::identity::link(&mut conn, ("slack", "U1"), ("linear", "lin-ada"), "code")
        .await
        .unwrap();
    drop(conn);
    app.post_event(&home_opened("EvH3", "U1")).await;
    let home = home_with(&slack, "U1", "lin-ada").await;
    assert!(home.contains("chime_home_unlink"), "{home}");
    app.click(&home_action(
        "chime_home_unlink",
        "linear",
        "U1",
        "1764072600.000001",
    ))
    .await;
    eventually(Duration::from_secs(10), "the account unlinked", || async {
        (app.count("SELECT COUNT(*) FROM identities WHERE surface = 'linear'")
            .await
            == 0)
            .then_some(())
    })
    .await;
    eventually(Duration::from_secs(10), "the page without it", || async {
        let home = slack.state.lock().unwrap().homes.get("U1").cloned()?;
        (!home.to_string().contains("lin-ada")).then_some(())
    })
    .await;

    // Hostile presses: values the Home never offers are ignored, and nothing is stored; an
    // unsigned (forged) press is refused; the same press delivered again changes nothing more.
    let before = app.count("SELECT COUNT(*) FROM inbox").await;
    let forged = serde_urlencoded::to_string([(
        "payload",
        home_action(
            "chime_home_mute_forever",
            "forever",
            "U2",
            "1764072700.000009",
        )
        .to_string(),
    )])
    .unwrap();
    let r = app
        .http
        .post(app.url("/slack/interactions"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let replayed = home_action("chime_home_unmute", "unmute", "U1", "1764072500.000001");
    assert_eq!(app.click(&replayed).await.status(), 200);
    for (action, value) in [
        ("chime_home_quiet", "25-3"),
        ("chime_home_quiet", "18-18"),
        ("chime_home_verbosity", "loud"),
        ("chime_home_unlink", "slack"),
        ("chime_home_link", "../../etc"),
    ] {
        let r = app
            .click(&home_action(action, value, "U1", "1764072700.000001"))
            .await;
        assert_eq!(r.status(), 200, "{action} {value}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, before);
    app.stop().await;
}
dual_db!(home_test, sessions_settings_and_mute);

/// Minutes east of UTC at which it is 20:00 now (quiet hours 18–9 are in force there).
fn offset_where_it_is_evening() -> i64 {
    let secs_of_day = chrono_now().rem_euclid(86_400);
    let mut offset = (20 * 3600 - secs_of_day).rem_euclid(86_400);
    if offset > 43_200 {
        offset -= 86_400;
    }
    offset
}

async fn quiet_hours_and_progress(db: TestDb) {
    let slack = FakeSlack::start().await;
    let offset = offset_where_it_is_evening();
    slack.set_user(
        "U1",
        json!({ "id": "U1", "team_id": "T1", "tz_offset": offset }),
    );
    let dir = tempfile::tempdir().unwrap();
    let app = start(&db, &slack, dir.path()).await;

    // Quiet hours from the Home tab, kept in U1's own time zone (from users.info).
    app.click(&home_action(
        "chime_home_quiet",
        "18-9",
        "U1",
        "1764072400.000001",
    ))
    .await;
    let home = home_with(&slack, "U1", "18:00–09:00 (UTC").await;
    assert!(home.contains("\"value\":\"18-9\""), "{home}");
    assert_eq!(
        app.count("SELECT utc_offset_min FROM person_settings WHERE user_id = 'U1'")
            .await,
        offset / 60
    );
    assert!(!offered(&app, &slack, "EvQ1", "U1", "1764072400.000100").await);
    assert!(offered(&app, &slack, "EvQ2", "U2", "1764072400.000200").await);
    // `/chime quiet off` undoes it; the next page shows no quiet hours.
    let r: Value = slash(&app, "U1", "3.1", "quiet off")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        r["text"].as_str().unwrap().contains("No quiet hours"),
        "{r}"
    );
    eventually(Duration::from_secs(10), "quiet hours off", || async {
        (app.count("SELECT COUNT(*) FROM person_settings WHERE quiet_start_min IS NULL")
            .await
            == 1)
            .then_some(())
    })
    .await;
    assert!(offered(&app, &slack, "EvQ3", "U1", "1764072500.000100").await);
    let bad: Value = slash(&app, "U1", "3.2", "quiet 18-30")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        bad["text"].as_str().unwrap().contains("whole hours"),
        "{bad}"
    );

    // "Final result only": U1's status message shows no milestone; U2's (by default) does.
    app.click(&home_action(
        "chime_home_verbosity",
        "final",
        "U1",
        "1764072600.000001",
    ))
    .await;
    home_with(&slack, "U1", "the final result only").await;
    app.post_event(&mention(
        "EvM1",
        "C5",
        "U1",
        "1764072600.000100",
        None,
        "tidy the readme",
    ))
    .await;
    app.post_event(&mention(
        "EvM2",
        "C6",
        "U2",
        "1764072600.000200",
        None,
        "tidy the docs",
    ))
    .await;
    succeeded(&app, 2).await;
    all_handled(&app).await;
    let milestones = |channel: &'static str| {
        let app = &app;
        async move {
            app.count(&format!(
                "SELECT COUNT(*) FROM outbox WHERE kind IN ('update', 'stream_append') AND target LIKE '%/{channel}/%' \
                 AND payload LIKE '%Prepared the agent input%'"
            ))
            .await
        }
    };
    assert_eq!(milestones("C5").await, 0);
    assert!(milestones("C6").await >= 1);
    let s: Value = slash(&app, "U1", "3.3", "settings")
        .await
        .json()
        .await
        .unwrap();
    assert!(
        s["text"]
            .as_str()
            .unwrap()
            .contains("the final result only"),
        "{s}"
    );
    // And back with `/chime progress milestones`.
    slash(&app, "U1", "3.4", "progress milestones").await;
    eventually(Duration::from_secs(10), "milestones again", || async {
        (app.count("SELECT COUNT(*) FROM person_settings WHERE verbosity = 'milestones'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    app.stop().await;
}
dual_db!(quiet_test, quiet_hours_and_progress);
