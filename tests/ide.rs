//! The IDE stream against a running server: tokens minted with the `chime` binary, refused
//! connections (bad token, a web page's Origin, a token in the URL), messages stored and
//! acknowledged, a resend after a reconnect stored once, hostile messages answered with a reason,
//! and a revoked token's open connection closed.

mod common;

use common::*;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::time::Duration;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ide_token(db: &TestDb, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_chime"))
        .arg("ide-token")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap()
}

/// Mints a token for Slack user `user` with the binary; returns (id, token).
fn mint(db: &TestDb, user: &str) -> (String, String) {
    let out = ide_token(db, &["create", "--slack-user", user]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let id = text.split_whitespace().nth(2).unwrap().to_string();
    let token = text.lines().nth(1).unwrap().trim().to_string();
    assert!(token.starts_with("chime_ide_"), "{text}");
    (id, token)
}

async fn connect(
    app: &TestApp,
    token: &str,
    extra: &[(&'static str, &str)],
) -> Result<Socket, u16> {
    let url = app.url("/ide/stream").replace("http://", "ws://");
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    for (k, v) in extra {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

async fn say(socket: &mut Socket, v: Value) -> Value {
    socket
        .send(Message::Text(v.to_string().into()))
        .await
        .unwrap();
    next(socket).await
}

async fn next(socket: &mut Socket) -> Value {
    next_within(socket, Duration::from_secs(10)).await
}

async fn next_within(socket: &mut Socket, wait: Duration) -> Value {
    loop {
        match tokio::time::timeout(wait, socket.next())
            .await
            .expect("no answer from Chime")
        {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Close(f))) => return json!({ "closed": f.map(|f| u16::from(f.code)) }),
            Some(Ok(_)) => continue,
            other => return json!({ "gone": format!("{other:?}") }),
        }
    }
}

fn test_run(id: &str, test: &str) -> Value {
    json!({ "v": 1, "id": id, "type": "test_run", "runner": "cargo", "passed": 4, "failed": 1,
        "failures": [{ "name": test, "output": "assertion failed: left == right" }] })
}

async fn stream(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let (id, token) = mint(&db, "U1");

    // Refused before any upgrade: no token, a wrong one, a web page, a token in the URL.
    assert_eq!(connect(&app, "", &[]).await.err(), Some(401));
    assert_eq!(
        connect(&app, &format!("chime_ide_{}", "x".repeat(40)), &[])
            .await
            .err(),
        Some(401)
    );
    assert_eq!(
        connect(&app, &token, &[("origin", "https://evil.example")])
            .await
            .err(),
        Some(403)
    );
    let url = app
        .url(&format!("/ide/stream?token={token}"))
        .replace("http://", "ws://");
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 400),
        other => panic!("a token in the URL was not refused: {other:?}"),
    }

    // hello and a failing test run: stored, then acknowledged.
    let mut ws = connect(&app, &token, &[]).await.unwrap();
    let hello = json!({ "v": 1, "id": "m1", "type": "hello", "client": "test 1.0",
        "workspace": { "remote": "git@github.com:acme/api.git", "branch": "main", "head": "0123456789abcdef" } });
    assert_eq!(
        say(&mut ws, hello).await,
        json!({ "v": 1, "type": "ack", "id": "m1" })
    );
    assert_eq!(
        say(&mut ws, test_run("m2", "api::retry")).await["type"],
        "ack"
    );
    eventually(Duration::from_secs(10), "the signals recorded", || async {
        (app.count("SELECT COUNT(*) FROM ide_signals WHERE kind = 'test_failed' AND subject = 'api::retry' AND user_id = 'U1'").await == 1
            && app.count("SELECT COUNT(*) FROM ide_workspaces WHERE branch = 'main'").await == 1)
            .then_some(())
    })
    .await;

    // Hostile or not-yet messages: an error naming the id, nothing stored.
    let before = app.count("SELECT COUNT(*) FROM inbox").await;
    let bad = say(
        &mut ws,
        json!({ "v": 1, "id": "m3", "type": "format_disk" }),
    )
    .await;
    assert_eq!(
        (bad["type"].as_str(), bad["id"].as_str()),
        (Some("error"), Some("m3"))
    );
    let no_id = say(&mut ws, json!({ "v": 1, "type": "hello" })).await;
    assert_eq!(no_id["type"], "error");
    assert!(no_id["reason"].as_str().unwrap().contains("id"), "{no_id}");
    let later = say(
        &mut ws,
        json!({ "v": 1, "id": "m4", "type": "accept", "suggestion": "s1" }),
    )
    .await;
    assert_eq!(later["type"], "error", "{later}");
    assert!(
        later["reason"]
            .as_str()
            .unwrap()
            .contains("not a suggestion id"),
        "{later}"
    );
    let garbage = say(&mut ws, Value::String("not json".into())).await;
    assert_eq!(garbage["type"], "error");
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, before);

    // A reconnect: the client resends m2 (it had not seen the ack) and sends m5. Chime
    // acknowledges both, and stores m2 once.
    drop(ws);
    let mut ws = connect(&app, &token, &[]).await.unwrap();
    assert_eq!(
        say(&mut ws, test_run("m2", "api::retry")).await["type"],
        "ack"
    );
    assert_eq!(
        say(&mut ws, test_run("m5", "api::retry")).await["type"],
        "ack"
    );
    eventually(Duration::from_secs(10), "m5 recorded", || async {
        (app.count("SELECT COUNT(*) FROM ide_signals WHERE subject = 'api::retry'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM ide_signals WHERE subject = 'api::retry'")
            .await,
        2,
        "the resent m2 was stored twice"
    );
    // Another person's token names another person, even with the same message ids.
    let (_, other) = mint(&db, "U2");
    let mut ws2 = connect(&app, &other, &[]).await.unwrap();
    assert_eq!(
        say(&mut ws2, test_run("m2", "web::login")).await["type"],
        "ack"
    );
    eventually(Duration::from_secs(10), "U2's signal", || async {
        (app.count(
            "SELECT COUNT(*) FROM ide_signals WHERE user_id = 'U2' AND subject = 'web::login'",
        )
        .await
            == 1)
            .then_some(())
    })
    .await;

    // The listing shows the tokens, never their secrets; revoking closes the open connection.
    let list = String::from_utf8(ide_token(&db, &["list"]).stdout).unwrap();
    assert!(
        list.contains("slack:U1") && list.contains("active"),
        "{list}"
    );
    assert!(!list.contains(&token), "{list}");
    let out = ide_token(&db, &["revoke", &id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(next(&mut ws).await, json!({ "closed": 4001 }));
    assert_eq!(connect(&app, &token, &[]).await.err(), Some(401));
    assert!(!ide_token(&db, &["revoke", &id]).status.success());
    // U2's token still works.
    assert_eq!(
        say(&mut ws2, test_run("m6", "web::login")).await["type"],
        "ack"
    );
    let bad = ide_token(&db, &["create", "--slack-user", "not a user"]);
    assert!(!bad.status.success());
    app.stop().await;
}
dual_db!(stream_test, stream);

/// Messages from Chime until a `result`, skipping acks; panics after 30 s.
async fn until_result(socket: &mut Socket) -> Vec<Value> {
    let mut got = vec![];
    loop {
        // A turn may wait on a busy machine (CI runs many tests at once): the whole 30 s.
        let m = next_within(socket, Duration::from_secs(30)).await;
        if m["type"] == "ack" {
            continue;
        }
        assert!(m.get("closed").is_none() && m.get("gone").is_none(), "{m}");
        let done = m["type"] == "result";
        got.push(m);
        if done {
            return got;
        }
    }
}

/// A hand-off from the editor: a session on the workspace's repository, its progress and result
/// back over the socket; after a reconnect the client gets what it missed, once.
async fn handoff(db: TestDb) {
    let slack = FakeSlack::start().await;
    let mut config = test_config(&db, &slack);
    config.repos.insert(
        "acme/api".into(),
        chime::config::RepoConfig {
            url: "https://github.com/acme/api.git".into(),
            default_branch: None,
            ..Default::default()
        },
    );
    let app = TestApp::spawn(config).await;
    let (_, token) = mint(&db, "U1");
    let mut ws = connect(&app, &token, &[]).await.unwrap();
    let hello = json!({ "v": 1, "id": "h1", "type": "hello", "client": "test 1.0",
        "workspace": { "remote": "git@github.com:acme/api.git", "branch": "main", "head": "0123456789abcdef" } });
    let ask = json!({ "v": 1, "id": "ho-1", "type": "handoff", "instruction": "make the retry test stable",
        "selection": { "file": "src/retry.rs", "start_line": 10, "end_line": 12, "text": "sleep(1)" } });
    // Back to back, as a client sends its queue: the hand-off still runs on the hello's workspace
    // (the two are handled in different inbox lanes; the stream records the workspace first).
    for m in [hello, ask] {
        ws.send(Message::Text(m.to_string().into())).await.unwrap();
    }
    for _ in 0..2 {
        assert_eq!(next(&mut ws).await["type"], "ack");
    }
    let got = until_result(&mut ws).await;
    let result = got.last().unwrap();
    assert_eq!(result["state"], "succeeded", "{got:?}");
    let text = result["text"].as_str().unwrap();
    assert!(
        text.contains("make the retry test stable") && text.contains("sleep(1)"),
        "{text}"
    );
    assert!(got.iter().any(|m| m["type"] == "session_update"), "{got:?}");
    let session = result["session"].as_str().unwrap().to_string();
    assert!(
        got.iter().all(|m| m["session"] == session.as_str()),
        "{got:?}"
    );
    assert_eq!(app.text("SELECT repo FROM tasks").await, "acme/api");
    // The session starts where the editor is (its hello's commit and branch).
    assert_eq!(
        app.text("SELECT base_commit || ' ' || base_branch FROM sessions")
            .await,
        "0123456789abcdef main"
    );
    let seen = result["seq"].as_i64().unwrap();
    // U1 is a Slack user: the result also reaches their DM with Chime, once.
    let dms = || {
        slack
            .calls("chat.postMessage")
            .into_iter()
            .filter(|p| p["channel"] == "DU1")
            .collect::<Vec<_>>()
    };
    eventually(Duration::from_secs(10), "the result in U1's DM", || async {
        (dms().len() == 1).then_some(())
    })
    .await;
    let dm = dms()[0].to_string();
    assert!(
        dm.contains("From the editor") && dm.contains("make the retry test stable"),
        "{dm}"
    );
    assert!(slack
        .calls("conversations.open")
        .iter()
        .all(|p| p["users"] == "U1"));

    // A second hand-off; the editor goes away before its answer, then comes back with the last
    // seq it saw: it gets this session's messages, once, and nothing it had already seen.
    let ask2 = json!({ "v": 1, "id": "ho-2", "type": "handoff", "instruction": "and the docs" });
    assert_eq!(say(&mut ws, ask2.clone()).await["type"], "ack");
    drop(ws);
    eventually(Duration::from_secs(30), "the second turn done", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    let mut ws = connect(&app, &token, &[]).await.unwrap();
    let hello = json!({ "v": 1, "id": "h2", "type": "hello", "client": "test 1.0", "last_seq": seen,
        "workspace": { "remote": "git@github.com:acme/api.git", "branch": "main", "head": "0123456789abcdef" } });
    ws.send(Message::Text(hello.to_string().into()))
        .await
        .unwrap();
    // The client also resends ho-2, which it never saw acknowledged: stored once.
    ws.send(Message::Text(ask2.to_string().into()))
        .await
        .unwrap();
    let got = until_result(&mut ws).await;
    assert!(
        got.iter().all(|m| m["seq"].as_i64().unwrap() > seen),
        "{got:?}"
    );
    let seqs: Vec<i64> = got.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(seqs, sorted, "a message came twice: {got:?}");
    assert!(got.last().unwrap()["text"]
        .as_str()
        .unwrap()
        .contains("and the docs"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks").await,
        2,
        "the resent hand-off ran twice"
    );
    eventually(
        Duration::from_secs(10),
        "the second result in U1's DM",
        || async { (dms().len() == 2).then_some(()) },
    )
    .await;

    // Another person's editor, asking for everything from the start, gets none of U1's messages.
    let (_, other) = mint(&db, "U2");
    let mut ws2 = connect(&app, &other, &[]).await.unwrap();
    let hello = json!({ "v": 1, "id": "h1", "type": "hello", "client": "test 1.0", "last_seq": 0,
        "workspace": { "remote": "git@github.com:acme/api.git", "branch": "main", "head": "0123456789abcdef" } });
    assert_eq!(say(&mut ws2, hello).await["type"], "ack");
    let more = tokio::time::timeout(Duration::from_secs(2), ws2.next()).await;
    assert!(more.is_err(), "U2's editor got a message: {more:?}");
    app.stop().await;
}
dual_db!(handoff_test, handoff);

/// The shipped policy without quiet hours (CI runs at any hour), with its hour-long cooldown.
fn ide_policy(dir: &std::path::Path) -> std::path::PathBuf {
    let policy = test_policy(dir, 0.0);
    let text = std::fs::read_to_string(&policy).unwrap().replacen(
        "channel_cooldown_minutes = 0",
        "channel_cooldown_minutes = 60",
        1,
    );
    std::fs::write(&policy, text).unwrap();
    policy
}

async fn hello(socket: &mut Socket, id: &str) {
    let hello = json!({ "v": 1, "id": id, "type": "hello", "client": "test 1.0",
        "workspace": { "remote": "git@github.com:acme/api.git", "branch": "fix/retry", "head": "0123456789abcdef" } });
    assert_eq!(say(socket, hello).await["type"], "ack");
}

/// The next message from Chime that is not an ack.
async fn next_said(socket: &mut Socket) -> Value {
    loop {
        let m = next(socket).await;
        if m["type"] != "ack" {
            return m;
        }
    }
}

/// The policy on editor signals: the same test failing in three runs → one suggestion; a
/// burst of fifty failing runs → still one; accept → a session whose updates and result come
/// back over the socket; dismiss → recorded and learnt from; another person's accept does
/// nothing.
async fn suggestions(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, &slack);
    config.suggestions.enabled = true;
    config.suggestions.policy = Some(ide_policy(dir.path()));
    config.repos.insert(
        "acme/api".into(),
        chime::config::RepoConfig {
            url: "https://github.com/acme/api.git".into(),
            default_branch: None,
            ..Default::default()
        },
    );
    let app = TestApp::spawn(config).await;
    let suggested = || async {
        app.count("SELECT COUNT(*) FROM suggestions WHERE state = 'offered'")
            .await
    };

    // Two failing runs of api::retry: nothing yet. The third: one suggestion.
    let (_, token) = mint(&db, "U1");
    let mut ws = connect(&app, &token, &[]).await.unwrap();
    hello(&mut ws, "h1").await;
    for id in ["r1", "r2"] {
        assert_eq!(
            say(&mut ws, test_run(id, "api::retry")).await["type"],
            "ack"
        );
    }
    all_handled(&app).await;
    assert_eq!(suggested().await, 0);
    assert_eq!(
        say(&mut ws, test_run("r3", "api::retry")).await["type"],
        "ack"
    );
    let offer = next_said(&mut ws).await;
    assert_eq!(offer["type"], "suggestion", "{offer}");
    assert_eq!(offer["text"], "Hand this flaky test to a cloud agent?");
    assert!(
        offer["why"].as_str().unwrap().contains("3 of 3 runs"),
        "{offer}"
    );
    assert_eq!(offer["actions"], json!(["accept", "dismiss"]));
    let sid = offer["id"].as_str().unwrap().to_string();
    let session = offer["session"].as_str().unwrap().to_string();

    // A burst of fifty failing runs (five tests, ten failures each): no other suggestion.
    for i in 0..50 {
        let run = test_run(&format!("b{i}"), &format!("api::t{}", i % 5));
        ws.send(Message::Text(run.to_string().into()))
            .await
            .unwrap();
    }
    for _ in 0..50 {
        let m = next(&mut ws).await;
        assert_eq!(m["type"], "ack", "{m}");
    }
    all_handled(&app).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM suggestions").await, 1);

    // Another person's editor cannot answer U1's suggestion.
    let (_, token2) = mint(&db, "U2");
    let mut ws2 = connect(&app, &token2, &[]).await.unwrap();
    hello(&mut ws2, "h1").await;
    let steal = json!({ "v": 1, "id": "a1", "type": "accept", "suggestion": sid });
    assert_eq!(say(&mut ws2, steal).await["type"], "ack");
    all_handled(&app).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 0);
    assert_eq!(suggested().await, 1);

    // Accept: a session on the workspace's repository, about the failing test.
    let accept = json!({ "v": 1, "id": "a1", "type": "accept", "suggestion": sid });
    assert_eq!(say(&mut ws, accept).await["type"], "ack");
    let got = until_result(&mut ws).await;
    let result = got.last().unwrap();
    assert_eq!(result["state"], "succeeded", "{got:?}");
    assert!(got.iter().any(|m| m["type"] == "session_update"), "{got:?}");
    assert!(
        got.iter().all(|m| m["session"] == session.as_str()),
        "{got:?}"
    );
    let text = result["text"].as_str().unwrap();
    assert!(
        text.contains("api::retry") && text.contains("fix/retry"),
        "{text}"
    );
    assert_eq!(app.text("SELECT repo FROM tasks").await, "acme/api");
    assert_eq!(app.text("SELECT state FROM suggestions").await, "accepted");
    assert_eq!(
        app.text("SELECT base_commit || ' ' || base_branch FROM sessions")
            .await,
        "0123456789abcdef fix/retry"
    );
    // Accepting again: told, not run again.
    let again = json!({ "v": 1, "id": "a2", "type": "accept", "suggestion": sid });
    assert_eq!(say(&mut ws, again).await["type"], "ack");
    let told = next_said(&mut ws).await;
    assert_eq!(told["type"], "error", "{told}");
    assert!(told["reason"]
        .as_str()
        .unwrap()
        .contains("already answered"));
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);

    // U2's own flaky test, dismissed: recorded, and U2's threshold rises by one run.
    for id in ["r1", "r2", "r3"] {
        assert_eq!(
            say(&mut ws2, test_run(id, "web::login")).await["type"],
            "ack"
        );
    }
    let offer = next_said(&mut ws2).await;
    assert_eq!(offer["type"], "suggestion", "{offer}");
    let dismiss = json!({ "v": 1, "id": "d1", "type": "dismiss", "suggestion": offer["id"] });
    assert_eq!(say(&mut ws2, dismiss).await["type"], "ack");
    all_handled(&app).await;
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM suggestions WHERE state = 'dismissed' AND answered_by = 'U2'"
        )
        .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT shift_milli FROM policy_thresholds WHERE place = 'slack.U2' AND action = 'hand_off_flaky_test'"
        )
        .await,
        1000
    );
    // What editors reported and were sent goes with the janitor's retention.
    assert!(app.count("SELECT COUNT(*) FROM ide_signals").await > 50);
    tokio::time::sleep(Duration::from_millis(5)).await;
    chime::janitor::sweep(&app.db, 0).await.unwrap();
    assert_eq!(app.count("SELECT COUNT(*) FROM ide_signals").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM ide_outbound").await, 0);
    app.stop().await;
}
dual_db!(suggestions_test, suggestions);

/// The policy's quiet hours hold for editors too: three failing runs in them offer nothing.
async fn quiet_hours(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = ide_policy(dir.path());
    // Quiet from an hour ago to an hour from now (UTC), whenever the test runs.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 60;
    let hhmm = |m: u64| format!("{:02}:{:02}", (m % 1440) / 60, m % 60);
    let quiet = format!(
        "[quiet_hours]\nstart = \"{}\"\nend = \"{}\"\n\n[budgets]",
        hhmm(now + 1440 - 60),
        hhmm(now + 60)
    );
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replacen("[budgets]", &quiet, 1);
    std::fs::write(&policy, text).unwrap();
    let mut config = test_config(&db, &slack);
    config.suggestions.enabled = true;
    config.suggestions.policy = Some(policy);
    let app = TestApp::spawn(config).await;
    let (_, token) = mint(&db, "U1");
    let mut ws = connect(&app, &token, &[]).await.unwrap();
    hello(&mut ws, "h1").await;
    for id in ["r1", "r2", "r3", "r4"] {
        assert_eq!(
            say(&mut ws, test_run(id, "api::retry")).await["type"],
            "ack"
        );
    }
    all_handled(&app).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM suggestions").await, 0);
    app.stop().await;
}
dual_db!(quiet_hours_test, quiet_hours);

/// `/chime ide-token` from `user` in `channel`; the ephemeral answer's text.
async fn ide_token_command(app: &TestApp, user: &str, channel: &str, trigger: &str) -> String {
    let r = slash_in(app, user, channel, trigger, "ide-token").await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["response_type"], "ephemeral", "{answer}");
    answer["text"].as_str().unwrap().to_string()
}

/// `/chime ide-token` in a DM mints a working token for that person, shown only to them and
/// stored nowhere as such; in a channel, or for a guest, it mints nothing.
async fn token_from_slack(db: TestDb) {
    let slack = FakeSlack::start().await;
    slack.set_user(
        "UGUEST",
        json!({ "id": "UGUEST", "team_id": "T1", "is_restricted": true }),
    );
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let tokens = || app.count("SELECT COUNT(*) FROM ide_tokens");

    let in_channel = ide_token_command(&app, "U1", "C3", "300.1").await;
    assert!(in_channel.contains("direct messages"), "{in_channel}");
    let guest = ide_token_command(&app, "UGUEST", "DGUEST", "300.2").await;
    assert!(guest.contains("guests cannot"), "{guest}");
    assert_eq!(tokens().await, 0);

    let answer = ide_token_command(&app, "U1", "DU1", "300.3").await;
    let token = answer
        .split('`')
        .find(|w| w.starts_with("chime_ide_"))
        .unwrap_or_else(|| panic!("no token in {answer}"))
        .to_string();
    assert_eq!(tokens().await, 1);
    assert_eq!(
        app.text("SELECT surface || '.' || user_id FROM ide_tokens")
            .await,
        "slack.U1"
    );
    // Stored only as its hash: not in any table Chime writes requests or messages to.
    for table in ["inbox", "outbox"] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE payload LIKE '%chime_ide_%'");
        assert_eq!(app.count(&sql).await, 0, "{table}");
    }
    // The same command again (a replay within Slack's window): no token shown, none minted.
    let replay = ide_token_command(&app, "U1", "DU1", "300.3").await;
    assert!(
        replay.contains("already answered") && !replay.contains("chime_ide_"),
        "{replay}"
    );
    assert_eq!(tokens().await, 1);
    // It works, as U1: a hand-off from it is U1's.
    let mut ws = connect(&app, &token, &[]).await.unwrap();
    hello(&mut ws, "h1").await;
    // A second one is a new token; the first stays valid until revoked.
    let again = ide_token_command(&app, "U1", "DU1", "300.4").await;
    assert!(!again.contains(&token), "{again}");
    assert_eq!(tokens().await, 2);
    app.stop().await;
}
dual_db!(token_from_slack_test, token_from_slack);
