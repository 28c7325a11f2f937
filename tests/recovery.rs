//! Stop, crash recovery and re-posting after a crash: the paths where work must end exactly once.

mod common;

use common::process::{free_port, ChimeProcess, FAST_CONFIG};
use common::*;
use serde_json::json;
use sqlx::Row;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);

fn alive(pid: &str) -> bool {
    std::process::Command::new("kill")
        .arg("-0")
        .arg(pid)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

async fn task_id(db: &chime::db::Db) -> String {
    sqlx::query("SELECT id FROM tasks ORDER BY created_at LIMIT 1")
        .fetch_one(&db.pool)
        .await
        .unwrap()
        .get(0)
}

async fn stop_kills_the_agent(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let agent = write_agent(
        dir.path(),
        &format!(
            "cat >/dev/null\nsleep 300 &\necho $! > {p}.child\necho $$ > {p}\necho '{{\"type\":\"progress\",\"text\":\"thinking hard\"}}'\nwait",
            p = pids.display()
        ),
    );
    let mut config = test_config(&db, &slack);
    config.agent.workdir = dir.path().join("work");
    command_backend(&mut config, "slow", vec![agent], 600);
    // U2 stops U1's task: only the requester or an admin may.
    config.slack.admins = vec!["U2".into()];
    let app = TestApp::spawn(config).await;
    let root = "1700000000.002000";
    app.post_event(&mention("EvStop", "C5", "U1", root, None, "take your time"))
        .await;
    let pid = eventually(WAIT, "the agent started", || async {
        std::fs::read_to_string(&pids)
            .ok()
            .filter(|s| !s.is_empty())
    })
    .await;
    let child = std::fs::read_to_string(pids.with_extension("child")).unwrap();
    let (pid, child) = (pid.trim().to_string(), child.trim().to_string());
    assert!(alive(&pid) && alive(&child));

    let id = task_id(&app.db).await;
    let pressed = Instant::now();
    let r = app
        .click(&button(
            "chime_stop",
            &id,
            "U2",
            "C5",
            root,
            "1700000005.000001",
        ))
        .await;
    assert_eq!(r.status(), 200);
    eventually(
        Duration::from_secs(5),
        "the agent and its child were killed",
        || async { (!alive(&pid) && !alive(&child)).then_some(()) },
    )
    .await;
    let card = eventually(WAIT, "a stopped card", || async {
        slack
            .thread("C5", root)
            .into_iter()
            .find(|m| m["blocks"].to_string().contains("Stopped"))
    })
    .await;
    eprintln!("stop took {:?}", pressed.elapsed());
    assert!(
        card["blocks"].to_string().contains("<@U2>"),
        "says who stopped it"
    );
    assert!(
        card["blocks"].to_string().contains("chime_retry"),
        "offers a retry"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE state = 'cancelled'")
            .await,
        1
    );
    app.stop().await;
}
dual_db!(stop_test, stop_kills_the_agent);

/// kill -9 while the agent works, then a restart: the turn runs again and ends with exactly one
/// final result, on the edited status card (`streams` false: Slack refuses streams) or on the
/// one stream both processes appended to.
async fn kill9_then_restart(db: TestDb, streams: bool) {
    let slack = FakeSlack::start().await;
    if streams {
        slack.enable_streams();
    }
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let agent = write_agent(
        dir.path(),
        &format!(
            "cat >/dev/null\necho start >> {s}\necho '{{\"type\":\"progress\",\"text\":\"working\"}}'\nsleep 4\necho '{{\"type\":\"result\",\"text\":\"finished after the crash\"}}'",
            s = starts.display()
        ),
    );
    let config = format!(
        "{FAST_CONFIG}\n[agent]\ndefault_backend = \"slow\"\nworkdir = \"{}\"\n\n[backends.slow]\nkind = \"command\"\ncommand = [\"{agent}\"]\ntimeout_secs = 60\n# The agent reports through a file in the test's directory, which the sandbox would hide.\nsandbox = \"none\"\n",
        dir.path().join("work").display()
    );
    let env = vec![
        ("DATABASE_URL", db.url().to_string()),
        ("SLACK_SIGNING_SECRET", SECRET.to_string()),
        ("SLACK_BOT_TOKEN", "xoxb-test-token".to_string()),
        ("SLACK_API_URL", slack.api_url()),
    ];
    let port = free_port();
    let mut first = ChimeProcess::start(dir.path(), "first", port, &env, &config).await;
    let root = "1700000000.003000";
    let ev = mention("EvCrash", "C6", "U1", root, None, "survive a crash");
    let url = format!("{}/slack/events", first.base);
    let http = reqwest::Client::new();
    assert_eq!(
        signed_post(
            &http,
            &url,
            ev.to_string().into_bytes(),
            "application/json",
            &[]
        )
        .await
        .status(),
        200
    );
    // Killed once the agent runs and its progress reached Slack.
    let progress = if streams {
        "chat.appendStream"
    } else {
        "chat.postMessage"
    };
    eventually(WAIT, "the agent started and its progress shown", || async {
        (std::fs::read_to_string(&starts).is_ok() && !slack.calls(progress).is_empty())
            .then_some(())
    })
    .await;
    first.kill9();

    let second = ChimeProcess::start(dir.path(), "second", port, &env, &config).await;
    // The final result: the stream's stop, or the status card's last edit.
    let last = if streams {
        "chat.stopStream"
    } else {
        "chat.update"
    };
    let done = eventually(
        Duration::from_secs(60),
        "the final result after restart",
        || async {
            slack
                .calls(last)
                .into_iter()
                .find(|p| p["blocks"].to_string().contains("finished after the crash"))
        },
    )
    .await;
    assert!(done["blocks"].to_string().contains("Done"));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let finals = slack
        .calls(last)
        .into_iter()
        .filter(|u| u["blocks"].to_string().contains("finished after the crash"))
        .count();
    assert_eq!(finals, 1, "exactly one final result");
    if streams {
        // One stream, appended to by both processes, stopped once; nothing posted beside it.
        assert_eq!(slack.calls("chat.startStream").len(), 1);
        assert_eq!(slack.calls("chat.stopStream").len(), 1);
        assert!(slack.calls("chat.postMessage").is_empty());
    } else {
        assert_eq!(
            slack.calls("chat.postMessage").len(),
            1,
            "the status message was not posted twice"
        );
    }
    // No call Slack refused (an append after the stop, a second stop, an edit of a stream); the
    // refused stream start of the card mode is Slack saying no, which is expected.
    let refused: Vec<_> = slack
        .errors()
        .into_iter()
        .filter(|(m, _)| m.starts_with("chat.") && m != "chat.startStream")
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(
        std::fs::read_to_string(&starts).unwrap().lines().count(),
        2,
        "the agent ran again after the crash"
    );
    drop(second);
}

async fn kill9_then_restart_finishes_once(db: TestDb) {
    kill9_then_restart(db, false).await
}
dual_db!(crash_test, kill9_then_restart_finishes_once);

async fn kill9_mid_stream_finishes_once(db: TestDb) {
    kill9_then_restart(db, true).await
}
dual_db!(crash_stream_test, kill9_mid_stream_finishes_once);

/// A post whose sender died after Slack took it but before the row was marked sent is found again
/// by its metadata, and not posted twice.
async fn repost_adopts_the_earlier_message(db: TestDb) {
    let slack = FakeSlack::start().await;
    let config = test_config(&db, &slack);
    {
        let pre = chime::db::Db::connect(&config.database).await.unwrap();
        pre.migrate().await.unwrap();
        let op = json!({ "op": "post", "channel": "C7", "thread_ts": "1700000000.004000", "text": "Working on it", "blocks": [] });
        sqlx::query(
            "INSERT INTO outbox (surface, target, kind, payload, idempotency_key, state, attempts, lease_until, created_at) \
             VALUES ('slack', 'slack:T1/C7/1700000000.004000', 'post', $1, 'task:x:status', 'sending', 1, 0, 0)",
        )
        .bind(op.to_string())
        .execute(&pre.pool)
        .await
        .unwrap();
    }
    // Slack already has the message from the first attempt.
    {
        let mut s = slack.state.lock().unwrap();
        s.messages.entry("C7".into()).or_default().push(json!({
            "type": "message", "user": "UBOT", "bot_id": "BCHIME", "ts": "1700000000.004001", "thread_ts": "1700000000.004000",
            "text": "Working on it", "metadata": { "event_type": "chime_message", "event_payload": { "chime_key": "task:x:status" } }
        }));
    }
    let app = TestApp::spawn(config).await;
    let state: String = eventually(WAIT, "the row settled", || async {
        let r = sqlx::query(
            "SELECT state, external_ref FROM outbox WHERE idempotency_key = 'task:x:status'",
        )
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
        let state: String = r.get(0);
        (state == "done").then(|| r.get::<Option<String>, _>(1).unwrap_or_default())
    })
    .await;
    assert_eq!(state, "1700000000.004001", "adopted the earlier post's ts");
    assert!(
        slack.calls("chat.postMessage").is_empty(),
        "nothing was posted again"
    );
    app.stop().await;
}
dual_db!(adopt_test, repost_adopts_the_earlier_message);

/// The password put into a Postgres URL for the secrets test (the test server trusts local
/// connections, so any password connects).
const DB_PASSWORD: &str = "db-password-hunter2";

/// Secrets never reach the logs, even at `RUST_LOG=trace` (everything `debug` logs and more, every
/// crate included): neither the bot token, the signing
/// secret, the app-level token, nor a database password, over a full round trip on the Events API
/// and on Socket Mode, refused requests and a shutdown included.
async fn secrets_stay_out_of_debug_logs(db: TestDb) {
    use common::fake_slack::APP_TOKEN;
    use common::fake_socket::{events_api, FakeSocket};

    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db_url = match db.url().split_once("postgres://") {
        Some(("", rest)) => match rest.split_once('@') {
            Some((user, host)) if !user.contains(':') => {
                format!("postgres://{user}:{DB_PASSWORD}@{host}")
            }
            _ => db.url().to_string(),
        },
        _ => db.url().to_string(),
    };
    let base_env = vec![
        ("DATABASE_URL", db_url),
        ("SLACK_BOT_TOKEN", "xoxb-test-token".to_string()),
        ("SLACK_API_URL", slack.api_url()),
        ("RUST_LOG", "trace".to_string()),
    ];

    // The Events API.
    let mut env = base_env.clone();
    env.push(("SLACK_SIGNING_SECRET", SECRET.to_string()));
    let mut http_chime =
        ChimeProcess::start(dir.path(), "http", free_port(), &env, FAST_CONFIG).await;
    let url = format!("{}/slack/events", http_chime.base);
    let http = reqwest::Client::new();
    let root = "1700000000.005000";
    let ev = mention("EvSecret", "C7", "U1", root, None, "keep my secrets");
    let body = ev.to_string().into_bytes();
    let r = signed_post(&http, &url, body.clone(), "application/json", &[]).await;
    assert_eq!(r.status(), 200);
    eventually(WAIT, "the final card", || async {
        slack
            .thread("C7", root)
            .into_iter()
            .find(|m| m["blocks"].to_string().contains("keep my secrets"))
    })
    .await;
    // Refused requests are logged too: a forged signature, a malformed body, a stray click.
    let forged = http
        .post(&url)
        .header("x-slack-request-timestamp", chrono_now().to_string())
        .header("x-slack-signature", format!("v0={}", "0".repeat(64)))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let bad = signed_post(&http, &url, b"{".to_vec(), "application/json", &[]).await;
    assert_eq!(bad.status(), 400);
    let click = button(
        "chime_stop",
        "nosuchtask",
        "U1",
        "C7",
        root,
        "1700000001.000001",
    );
    let form = serde_urlencoded::to_string([("payload", click.to_string())]).unwrap();
    let r = signed_post(
        &http,
        &format!("{}/slack/interactions", http_chime.base),
        form.into_bytes(),
        "application/x-www-form-urlencoded",
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(http_chime.terminate().success());

    // Socket Mode.
    let mut socket = FakeSocket::start().await;
    slack.set_socket_url(&socket.url);
    let mut env = base_env.clone();
    env.push(("SLACK_APP_TOKEN", APP_TOKEN.to_string()));
    let mut socket_chime =
        ChimeProcess::start(dir.path(), "socket", free_port(), &env, FAST_CONFIG).await;
    let mut conn = socket.next_connection(WAIT).await;
    let root = "1700000000.005100";
    let ev = mention("EvSecret2", "C7", "U1", root, None, "over the socket");
    conn.send(&events_api("env-secret", &ev, 0)).await;
    conn.expect_ack("env-secret", WAIT).await;
    eventually(WAIT, "the final card over Socket Mode", || async {
        slack
            .thread("C7", root)
            .into_iter()
            .find(|m| m["blocks"].to_string().contains("over the socket"))
    })
    .await;
    assert!(socket_chime.terminate().success());

    for p in [&http_chime, &socket_chime] {
        let log = p.log_text();
        assert!(
            log.contains("DEBUG") && log.contains("TRACE"),
            "trace logging was on: {}",
            p.log.display()
        );
        for secret in ["xoxb-test-token", SECRET, APP_TOKEN, DB_PASSWORD] {
            let hits: Vec<&str> = log.lines().filter(|l| l.contains(secret)).collect();
            assert!(
                hits.is_empty(),
                "{secret:?} is in {}:\n{}",
                p.log.display(),
                hits.join("\n")
            );
        }
    }
}
dual_db!(secrets_test, secrets_stay_out_of_debug_logs);
