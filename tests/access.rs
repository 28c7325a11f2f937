//! Who may do what: workspaces outside the one Chime serves, failed membership lookups, buttons
//! pressed by someone other than the requester, and `backend=` chosen inline.

mod common;

use chime::config::BackendConfig;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// Waits for a message of Chime's in the thread whose text or blocks contain `marker`.
async fn notice(slack: &FakeSlack, channel: &str, root: &str, marker: &str) -> Value {
    eventually(
        WAIT,
        &format!("a message containing {marker:?}"),
        || async {
            slack
                .thread(channel, root)
                .into_iter()
                .find(|m| m.to_string().contains(marker))
        },
    )
    .await
}

/// Waits until every stored event and click has been handled.
async fn all_handled(app: &TestApp, what: &str) {
    eventually(WAIT, what, || async {
        (app.count("SELECT COUNT(*) FROM inbox WHERE state <> 'done'")
            .await
            == 0)
            .then_some(())
    })
    .await;
}

/// With no `slack.allowed_workspaces`, only the workspace `auth.test` names is served: an event
/// from another team is refused at the edge, and a failed `users.info` refuses by default.
async fn foreign_workspace_and_failed_lookup(db: TestDb) {
    let slack = FakeSlack::start().await;
    slack.set_user_error("UFOREIGN", "user_not_found");
    let app = TestApp::spawn(test_config(&db, &slack)).await;

    let mut other = mention(
        "EvForeign",
        "C9",
        "UFOREIGN",
        "1700000000.000100",
        None,
        "run this",
    );
    other["team_id"] = json!("T2");
    other["authorizations"][0]["team_id"] = json!("T2");
    let r = app.post_event(&other).await;
    assert_eq!(
        r.status(),
        403,
        "an event from another workspace is refused"
    );
    assert_eq!(r.headers()["x-slack-no-retry"], "1");
    assert!(r.text().await.unwrap().contains("workspace"));
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 0);

    // Our workspace, but users.info cannot say who this is: refused (on_lookup_error = deny).
    let root = "1700000000.000200";
    let ev = mention("EvLookup", "C9", "UFOREIGN", root, None, "run this");
    assert_eq!(app.post_event(&ev).await.status(), 200);
    notice(&slack, "C9", root, "could not check your membership").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);
    app.stop().await;
}
dual_db!(foreign_workspace_test, foreign_workspace_and_failed_lookup);

/// Stop and the repo picker belong to the requester (and admins); Retry makes one new turn per
/// ended turn, attributed to whoever pressed it; anyone else gets a notice and changes nothing.
async fn buttons_belong_to_the_requester(db: TestDb) {
    let slack = FakeSlack::start().await;
    let mut config = test_config(&db, &slack);
    config.repos.insert(
        "acme/api".into(),
        chime::config::RepoConfig {
            url: "/nonexistent".into(),
            default_branch: None,
            ..Default::default()
        },
    );
    config.slack.admins = vec!["UADMIN".into()];
    let app = TestApp::spawn(config).await;
    let (ch, root) = ("CBTN", "1700000000.000300");
    app.post_event(&mention("EvBtn", ch, "U1", root, None, "which repo"))
        .await;
    slack.card(ch, root, "chime_pick_repo").await;
    let first = app.text("SELECT id FROM tasks").await;
    let mut n = 0;
    let mut press = |action: &str, value: &str, user: &str| {
        n += 1;
        let mut click = button(action, value, user, ch, root, &format!("1700000001.{n:06}"));
        if action == "chime_pick_repo" {
            click["actions"][0] = json!({ "action_id": action, "type": "static_select",
                "selected_option": { "value": value }, "action_ts": format!("1700000001.{n:06}") });
        }
        click
    };

    // Someone else presses Stop, then picks a repository: told so, nothing changes.
    let c = press("chime_stop", &first, "U2");
    assert_eq!(app.click(&c).await.status(), 200);
    notice(&slack, ch, root, "Only the person who asked").await;
    let c = press("chime_pick_repo", &format!("{first} acme/api"), "U2");
    assert_eq!(app.click(&c).await.status(), 200);
    eventually(WAIT, "the second press handled", || async {
        (app.count("SELECT COUNT(*) FROM inbox WHERE state = 'done'")
            .await
            == 3)
            .then_some(())
    })
    .await;
    assert_eq!(app.text("SELECT state FROM tasks").await, "awaiting_repo");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE cancel_requested = 1")
            .await,
        0
    );

    // The requester stops it.
    let c = press("chime_stop", &first, "U1");
    app.click(&c).await;
    eventually(WAIT, "the stop", || async {
        (app.text("SELECT state FROM tasks").await == "cancelled").then_some(())
    })
    .await;

    // Someone else presses Retry: a notice, no new turn.
    let c = press("chime_retry", &first, "U2");
    app.click(&c).await;
    all_handled(&app, "the refused retry handled").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);

    // An admin retries: one new turn, in the admin's name. Four more presses make nothing.
    let c = press("chime_retry", &first, "UADMIN");
    assert_eq!(app.click(&c).await.status(), 200);
    eventually(WAIT, "the retried turn", || async {
        (app.count("SELECT COUNT(*) FROM tasks").await == 2).then_some(())
    })
    .await;
    for _ in 0..4 {
        let c = press("chime_retry", &first, "U1");
        assert_eq!(app.click(&c).await.status(), 200);
    }
    notice(&slack, ch, root, "already retried").await;
    all_handled(&app, "every press handled").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 2);
    assert_eq!(
        app.text("SELECT requester FROM tasks WHERE turn_no = 2")
            .await,
        "UADMIN"
    );
    // The retried turn has no repository yet, so it asks again; the admin may answer.
    let second = app.text("SELECT id FROM tasks WHERE turn_no = 2").await;
    assert_eq!(
        app.text("SELECT state FROM tasks WHERE turn_no = 2").await,
        "awaiting_repo"
    );
    let c = press("chime_pick_repo", &format!("{second} acme/api"), "UADMIN");
    app.click(&c).await;
    slack.card(ch, root, "Dry run").await;
    app.stop().await;
}
dual_db!(buttons_test, buttons_belong_to_the_requester);

/// `backend=` may name only the default backend, dry-run, and backends allowed in the channel.
async fn inline_backend_is_restricted(db: TestDb) {
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, &slack);
    config.agent.workdir = tmp.path().join("work");
    for name in ["privileged", "codex"] {
        config.backends.insert(
            name.into(),
            BackendConfig::Command {
                command: vec!["/bin/true".into()],
                timeout_secs: 60,
                env: [("DEPLOY_KEY".to_string(), "k".to_string())].into(),
                sandbox: Default::default(),
                sandbox_read_only: vec![],
            },
        );
    }
    config
        .routing
        .backends
        .insert("CCODE".into(), vec!["codex".into()]);
    let app = TestApp::spawn(config).await;

    let root = "1700000000.000400";
    let ev = mention(
        "EvPriv",
        "CPLAIN",
        "U1",
        root,
        None,
        "deploy backend=privileged",
    );
    assert_eq!(app.post_event(&ev).await.status(), 200);
    let told = notice(&slack, "CPLAIN", root, "can't be chosen").await;
    assert!(told.to_string().contains("dry-run"), "{told}");
    assert!(!told.to_string().contains("codex"), "{told}");
    // `codex` is allowed in CCODE only.
    let root2 = "1700000000.000500";
    let ev = mention("EvCodex1", "CPLAIN", "U1", root2, None, "x backend=codex");
    app.post_event(&ev).await;
    notice(&slack, "CPLAIN", root2, "can't be chosen").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);

    let root3 = "1700000000.000600";
    let ev = mention("EvCodex2", "CCODE", "U1", root3, None, "x backend=codex");
    app.post_event(&ev).await;
    eventually(WAIT, "the codex session", || async {
        (app.count("SELECT COUNT(*) FROM sessions WHERE backend = 'codex'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    let root4 = "1700000000.000700";
    let ev = mention("EvDry", "CPLAIN", "U1", root4, None, "x backend=dry-run");
    app.post_event(&ev).await;
    slack.card("CPLAIN", root4, "Dry run").await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM sessions WHERE backend = 'privileged'")
            .await,
        0
    );
    app.stop().await;
}
dual_db!(inline_backend_test, inline_backend_is_restricted);

/// Slack's own stop button on Chime's agent session (`agent_session_stopped`) is the thread's
/// Stop: another member's is refused and changes nothing; the requester's stops the turn.
async fn native_stop_belongs_to_the_requester(db: TestDb) {
    let slack = FakeSlack::start().await;
    let mut config = test_config(&db, &slack);
    config.repos.insert(
        "acme/api".into(),
        chime::config::RepoConfig {
            url: "/nonexistent".into(),
            default_branch: None,
            ..Default::default()
        },
    );
    let app = TestApp::spawn(config).await;
    let (ch, root) = ("CNAT", "1700000000.000500");
    app.post_event(&mention("EvNat", ch, "U1", root, None, "which repo"))
        .await;
    slack.card(ch, root, "chime_pick_repo").await;
    let stopped = |id: &str, user: &str| {
        envelope(
            id,
            json!({ "type": "agent_session_stopped", "user": user, "channel": ch,
                "thread_ts": root, "streaming_message_ts": [], "event_ts": "1700000002.000001" }),
            None,
        )
    };
    assert_eq!(
        app.post_event(&stopped("EvStop1", "U2")).await.status(),
        200
    );
    notice(&slack, ch, root, "Only the person who asked").await;
    all_handled(&app, "the refused stop handled").await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE cancel_requested = 1")
            .await,
        0
    );
    assert_eq!(app.text("SELECT state FROM tasks").await, "awaiting_repo");
    // Waiting for a person to pick a repository is not processing.
    assert!(slack.agent_statuses(root).is_empty());
    assert_eq!(
        app.post_event(&stopped("EvStop2", "U1")).await.status(),
        200
    );
    eventually(WAIT, "the stop", || async {
        (app.text("SELECT state FROM tasks").await == "cancelled").then_some(())
    })
    .await;
    // A turn that runs: processing, then active once it answered (Slack does not move it).
    let other = "1700000000.000501";
    app.post_event(&mention(
        "EvRun",
        ch,
        "U1",
        other,
        None,
        "hello repo=acme/api",
    ))
    .await;
    slack.card(ch, other, "Dry run").await;
    eventually(WAIT, "the session active again", || async {
        (slack.agent_statuses(other) == ["processing", "active"]).then_some(())
    })
    .await;
    app.stop().await;
}
dual_db!(native_stop_test, native_stop_belongs_to_the_requester);

/// An app Slack does not treat as an agent: the first refused status is the last one asked for,
/// and the turns answer as before.
async fn no_agent_sessions(db: TestDb) {
    let slack = FakeSlack::start().await;
    slack.not_an_agent();
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    for (i, root) in ["1700000000.000601", "1700000000.000602"]
        .iter()
        .enumerate()
    {
        app.post_event(&mention(
            &format!("EvNa{i}"),
            "CNA",
            "U1",
            root,
            None,
            "hello",
        ))
        .await;
        slack.card("CNA", root, "Dry run").await;
    }
    all_handled(&app, "both turns handled").await;
    // The card shows before the turn's last rows are sent: wait for the outbox to settle.
    eventually(WAIT, "every outbox row sent", || async {
        (app.count("SELECT COUNT(*) FROM outbox WHERE state NOT IN ('done', 'superseded')")
            .await
            == 0)
            .then_some(())
    })
    .await;
    assert_eq!(slack.calls("agents.sessions.setStatus").len(), 1);
    app.stop().await;
}
dual_db!(no_agent_sessions_test, no_agent_sessions);
