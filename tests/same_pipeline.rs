//! The local playground is a connector like Slack: the same conversation through either makes the
//! same session and task records, because both feed the same inbox → router → task → backend path.

mod common;

use common::*;
use serde_json::{json, Value};
use sqlx::Row;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const TURNS: [&str; 2] = ["add a health check", "also expose it on /readyz"];

/// The records a conversation leaves, without what is naturally per-surface (ids, thread keys,
/// timestamps) and without the quoted thread, whose wording differs by platform (`<@UBOT>` vs `@chime`).
async fn records(db: &chime::db::Db) -> Value {
    let sessions = sqlx::query("SELECT id, requester, repo, backend FROM sessions")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1, "one session for the conversation");
    let session_id: String = sessions[0].get("id");
    let tasks = sqlx::query(
        "SELECT turn_no, prompt, requester, repo, backend, state, attempts, cancel_requested, result, error \
         FROM tasks ORDER BY turn_no",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let tasks: Vec<Value> = tasks
        .iter()
        .map(|t| {
            let result: Value = serde_json::from_str(&t.get::<String, _>("result")).unwrap();
            let summary = result["summary"]
                .as_str()
                .unwrap()
                .replace(&session_id, "<session>");
            let without_thread = match (
                summary.find("## The thread this request came from"),
                summary.find("## This turn's request"),
            ) {
                (Some(a), Some(b)) => format!("{}{}", &summary[..a], &summary[b..]),
                _ => summary,
            };
            json!({
                "turn": t.get::<i64, _>("turn_no"),
                "prompt": t.get::<String, _>("prompt"),
                "requester": t.get::<String, _>("requester"),
                "repo": t.get::<Option<String>, _>("repo"),
                "backend": t.get::<String, _>("backend"),
                "state": t.get::<String, _>("state"),
                "attempts": t.get::<i64, _>("attempts"),
                "cancel_requested": t.get::<i64, _>("cancel_requested"),
                "error": t.get::<Option<String>, _>("error"),
                "dry_run": result["dry_run"],
                "agent_input": without_thread,
            })
        })
        .collect();
    json!({
        "session": {
            "requester": sessions[0].get::<String, _>("requester"),
            "repo": sessions[0].get::<Option<String>, _>("repo"),
            "backend": sessions[0].get::<String, _>("backend"),
        },
        "tasks": tasks,
    })
}

async fn via_slack(db: TestDb) -> Value {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let root = "1700000000.100000";
    for (i, text) in TURNS.iter().enumerate() {
        let ts = format!("1700000000.10000{i}");
        let thread = (i > 0).then_some(root);
        let msg_ts = if i == 0 { root.to_string() } else { ts };
        app.post_event(&mention(
            &format!("EvSame{i}"),
            "CGENERAL",
            "U0ANA",
            &msg_ts,
            thread,
            text,
        ))
        .await;
        eventually(WAIT, "the turn's dry-run result", || async {
            slack
                .thread("CGENERAL", root)
                .iter()
                .find(|m| {
                    m["blocks"]
                        .to_string()
                        .contains(&format!("turn {}:", i + 1))
                })
                .cloned()
        })
        .await;
    }
    let r = records(&app.db).await;
    app.stop().await;
    r
}

async fn via_playground(db: TestDb) -> Value {
    let slack = FakeSlack::start().await;
    let mut config = test_config(&db, &slack);
    config.secrets = Default::default(); // No Slack: local mode.
    let app = TestApp::spawn(config).await;
    let mut root: Option<String> = None;
    for (i, text) in TURNS.iter().enumerate() {
        let body = json!({ "channel": "CGENERAL", "user": "U0ANA", "text": format!("@chime {text}"), "thread_ts": root });
        let r = app
            .playground(reqwest::Method::POST, "/api/local/messages")
            .await
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let posted: Value = r.json().await.unwrap();
        let root_ts = root
            .clone()
            .unwrap_or_else(|| posted["ts"].as_str().unwrap().to_string());
        root = Some(root_ts.clone());
        let url = app.url(&format!("/api/local/channels/CGENERAL/threads/{root_ts}"));
        let http = app.http.clone();
        let token = app.page_token().await;
        eventually(WAIT, "the turn's dry-run result in the playground", || {
            let (http, url) = (http.clone(), url.clone());
            let token = token.clone();
            async move {
                let thread: Vec<Value> = http
                    .get(&url)
                    .header("x-chime-token", token)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                thread.into_iter().find(|m| {
                    m["blocks"]
                        .to_string()
                        .contains(&format!("turn {}:", i + 1))
                })
            }
        })
        .await;
    }
    let r = records(&app.db).await;
    app.stop().await;
    r
}

async fn same_records(_db: TestDb) {
    // Each connector gets a database of its own kind as `_db`.
    let (slack_db, local_db) = match &_db {
        TestDb::Postgres { .. } => (
            TestDb::postgres().await.unwrap(),
            TestDb::postgres().await.unwrap(),
        ),
        TestDb::Sqlite { .. } => (TestDb::sqlite().await, TestDb::sqlite().await),
    };
    let from_slack = via_slack(slack_db).await;
    let from_local = via_playground(local_db).await;
    assert_eq!(from_slack, from_local);
    assert_eq!(from_slack["tasks"].as_array().unwrap().len(), 2);
    assert!(
        from_slack["tasks"][1]["agent_input"]
            .as_str()
            .unwrap()
            .contains("add a health check"),
        "turn 2 carries turn 1"
    );
}
dual_db!(same_pipeline_test, same_records);
