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
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
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
        json!({ "v": 1, "id": "m4", "type": "handoff", "instruction": "fix" }),
    )
    .await;
    assert!(
        later["reason"].as_str().unwrap().contains("not handled"),
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
