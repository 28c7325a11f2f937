//! Test harness: a fresh database per test (SQLite, and Postgres when `CHIME_TEST_POSTGRES_URL` is
//! set), a stateful fake of the Slack Web API behind wiremock, and Chime started on port 0.
#![allow(dead_code)]

pub mod fake_linear;
pub mod fake_slack;
pub mod fake_socket;
pub mod process;

use chime::config::{BackendConfig, Config};
use chime::db::Db;
use chime::slack::verify::sign;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use fake_slack::FakeSlack;

pub const SECRET: &str = "test-signing-secret";
pub const PG_ENV: &str = "CHIME_TEST_POSTGRES_URL";

pub enum TestDb {
    Sqlite {
        url: String,
        _dir: tempfile::TempDir,
    },
    Postgres {
        url: String,
    },
}

impl Drop for TestDb {
    /// A test's Postgres database goes when the test does, so repeated runs leave nothing behind.
    fn drop(&mut self) {
        let TestDb::Postgres { url } = self else {
            return;
        };
        let (Ok(admin), Some((_, name))) = (std::env::var(PG_ENV), url.rsplit_once('/')) else {
            return;
        };
        let name = name.to_string();
        // Drop may run inside a runtime; a thread of its own can block.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(mut conn) =
                    <sqlx::AnyConnection as sqlx::Connection>::connect(&admin).await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("chime.db").display());
        TestDb::Sqlite { url, _dir: dir }
    }

    /// A fresh Postgres database, or None when no server is configured.
    pub async fn postgres() -> Option<Self> {
        let admin = std::env::var(PG_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())?;
        sqlx::any::install_default_drivers();
        let name = format!("chime_t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("{PG_ENV} is set but Postgres is unreachable: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .unwrap_or(admin.clone());
        Some(TestDb::Postgres {
            url: format!("{base}/{name}"),
        })
    }

    pub fn url(&self) -> &str {
        match self {
            TestDb::Sqlite { url, .. } | TestDb::Postgres { url } => url,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, TestDb::Postgres { .. })
    }
}

/// Runs a scenario on SQLite and on Postgres: `dual_db!(name, scenario_fn)`.
#[macro_export]
macro_rules! dual_db {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::common::TestDb::sqlite().await).await
            }
            // Without a Postgres URL (read when the tests are built, see build.rs) the run lists
            // this variant as ignored, with the reason, rather than as a test that passed.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                chime_no_postgres,
                ignore = "Postgres suite skipped: set CHIME_TEST_POSTGRES_URL to run it"
            )]
            async fn postgres() {
                let db = $crate::common::TestDb::postgres().await.expect(
                    "CHIME_TEST_POSTGRES_URL was set when the tests were built but is not set now",
                );
                super::$body(db).await
            }
        }
    };
}

/// A config for tests: fast polling, generous proactive limits, the fake Slack.
pub fn test_config(db: &TestDb, slack: &FakeSlack) -> Config {
    let mut c = Config::default();
    c.database.url = db.url().to_string();
    c.server.listen = "127.0.0.1:0".into();
    c.server.shutdown_grace_secs = 2;
    c.slack.api_url = slack.api_url();
    c.slack.rate_limits.post_message_per_channel_per_sec = 100;
    c.slack.rate_limits.tier2_per_min = 10_000;
    c.slack.rate_limits.tier3_per_min = 10_000;
    c.slack.rate_limits.tier4_per_min = 10_000;
    c.worker.poll_ms = 50;
    c.worker.lease_secs = 3;
    // No caps on load: tests/limits.rs sets its own.
    c.limits = chime::config::LimitsConfig {
        concurrent_per_person: 0,
        concurrent_per_channel: 0,
        concurrent_per_workspace: 0,
        daily_per_person: 0,
        daily_per_channel: 0,
        daily_per_workspace: 0,
        turns_per_session: 0,
    };
    c.secrets.slack_signing_secret = Some(SecretString::from(SECRET));
    c.secrets.slack_bot_token = Some(SecretString::from("xoxb-test-token"));
    c
}

/// A `command` backend without the sandbox: these agents report to the test through files in
/// its temporary directory, which the sandbox would hide. The sandbox itself is tested in
/// `tests/sandbox.rs`, `tests/command_backend.rs` and `tests/command_e2e.rs`, which set it.
pub fn command_backend(c: &mut Config, name: &str, command: Vec<String>, timeout_secs: u64) {
    c.backends.insert(
        name.into(),
        BackendConfig::Command {
            command,
            timeout_secs,
            env: Default::default(),
            sandbox: chime::config::SandboxMode::None,
            sandbox_read_only: vec![],
        },
    );
    c.agent.default_backend = name.into();
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub db: Db,
    pub http: reqwest::Client,
    app: Option<chime::app::RunningApp>,
}

impl TestApp {
    pub async fn spawn(config: Config) -> Self {
        // `CHIME_TEST_LOG=chime=debug` shows the app's logs with a failing test's output.
        if let Ok(filter) = std::env::var("CHIME_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
        let db = Db::connect(&config.database).await.expect("connect");
        db.migrate().await.expect("migrate");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = chime::app::start(config, db.clone(), listener)
            .await
            .expect("start");
        TestApp {
            addr: app.addr,
            db,
            http: reqwest::Client::new(),
            app: Some(app),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }

    /// Sends a body to /slack/events signed now with the test secret.
    pub async fn post_event(&self, body: &Value) -> reqwest::Response {
        signed_post(
            &self.http,
            &self.url("/slack/events"),
            body.to_string().into_bytes(),
            "application/json",
            &[],
        )
        .await
    }

    pub async fn post_event_with(
        &self,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        signed_post(
            &self.http,
            &self.url("/slack/events"),
            body.to_string().into_bytes(),
            "application/json",
            headers,
        )
        .await
    }

    /// Presses a button, as Slack's interactivity request does.
    pub async fn click(&self, payload: &Value) -> reqwest::Response {
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        signed_post(
            &self.http,
            &self.url("/slack/interactions"),
            body.into_bytes(),
            "application/x-www-form-urlencoded",
            &[],
        )
        .await
    }

    /// The playground's per-process token, read from the page as a browser gets it on load.
    pub async fn page_token(&self) -> String {
        let page = self.http.get(self.url("/")).send().await.unwrap();
        assert_eq!(page.status(), 200, "the playground page loads");
        let html = page.text().await.unwrap();
        let marker = r#"<meta name="chime-token" content=""#;
        let start = html.find(marker).expect("the page carries its token") + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_string()
    }

    /// A request to the playground's API as its page makes it (with the page token).
    pub async fn playground(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let token = self.page_token().await;
        self.http
            .request(method, self.url(path))
            .header("x-chime-token", token)
    }

    /// A thread of the playground's #general, as its page reads it.
    pub async fn local_thread(&self, root: &str) -> Vec<Value> {
        let url = format!("/api/local/channels/CGENERAL/threads/{root}");
        self.playground(reqwest::Method::GET, &url)
            .await
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The first column of the first row of `sql`, an integer.
    pub async fn count(&self, sql: &str) -> i64 {
        self.scalar(sql).await
    }

    /// The first column of the first row of `sql`, a string.
    pub async fn text(&self, sql: &str) -> String {
        self.scalar(sql).await
    }

    async fn scalar<T>(&self, sql: &str) -> T
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        use sqlx::Row;
        sqlx::query(sql)
            .fetch_one(&self.db.pool)
            .await
            .unwrap()
            .get::<T, _>(0)
    }
}

pub async fn signed_post(
    http: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    content_type: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let ts = (chrono_now()).to_string();
    let sig = sign(&SecretString::from(SECRET), &ts, &body);
    let mut req = http
        .post(url)
        .header("content-type", content_type)
        .header("x-slack-request-timestamp", ts)
        .header("x-slack-signature", sig)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

pub fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An `app_mention` envelope as Slack sends it.
pub fn mention(
    event_id: &str,
    channel: &str,
    user: &str,
    ts: &str,
    thread_ts: Option<&str>,
    text: &str,
) -> Value {
    let ev = json!({
        "type": "app_mention", "user": user, "text": format!("<@UBOT> {text}"), "ts": ts,
        "channel": channel, "event_ts": ts, "team": "T1"
    });
    envelope(event_id, ev, thread_ts)
}

/// Wraps an inner event (in thread `thread_ts`, if any) in the `event_callback` envelope Slack sends.
pub fn envelope(event_id: &str, mut ev: Value, thread_ts: Option<&str>) -> Value {
    if let Some(t) = thread_ts {
        ev["thread_ts"] = json!(t);
    }
    json!({
        "token": "legacy", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
        "event_id": event_id, "event_time": chrono_now(), "event": ev,
        "authorizations": [{ "enterprise_id": null, "team_id": "T1", "user_id": "UBOT", "is_bot": true }]
    })
}

/// A `block_actions` payload for one of Chime's buttons on a message in a thread.
pub fn button(
    action_id: &str,
    value: &str,
    user: &str,
    channel: &str,
    thread_ts: &str,
    action_ts: &str,
) -> Value {
    json!({
        "type": "block_actions", "team": { "id": "T1" }, "user": { "id": user, "team_id": "T1" },
        "channel": { "id": channel }, "container": { "type": "message", "channel_id": channel, "thread_ts": thread_ts },
        "message": { "ts": "1800000000.000001", "thread_ts": thread_ts },
        "actions": [{ "action_id": action_id, "value": value, "action_ts": action_ts, "type": "button" }],
        "trigger_id": "1.2.3"
    })
}

/// Polls `check` until it returns Some, or panics with `what` after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs git in `dir`, failing the test with git's stderr when it fails; returns trimmed stdout.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Writes `text` to `path` as an executable script.
pub fn write_script(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Writes `body` as the bash agent `dir/agent.sh` and returns its path, for [`command_backend`].
pub fn write_agent(dir: &std::path::Path, body: &str) -> String {
    let path = dir.join("agent.sh");
    write_script(&path, &format!("#!/usr/bin/env bash\n{body}\n"));
    path.display().to_string()
}

/// Makes `dir` a git repository on `main` with one commit holding `file` = `contents`.
pub fn init_repo(dir: &std::path::Path, file: &str, contents: &str) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(dir.join(file), contents).unwrap();
    git(dir, &["add", "-A"]);
    git(
        dir,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@t",
            "commit",
            "--quiet",
            "-m",
            "initial",
        ],
    );
}

/// The shipped policy with a grace window short enough for a test, no quiet hours (CI runs at any
/// hour) and no cooldown between alerts in one channel.
pub fn test_policy(dir: &std::path::Path, grace_minutes: f64) -> std::path::PathBuf {
    let text = include_str!("../../policies/default.toml");
    let start = text.find("[quiet_hours]").unwrap();
    let end = text[start..].find("\n\n").unwrap() + start;
    let text = format!("{}{}", &text[..start], &text[end..])
        .replacen(
            "grace_minutes = 15",
            &format!("grace_minutes = {grace_minutes}"),
            1,
        )
        .replacen(
            "channel_cooldown_minutes = 60",
            "channel_cooldown_minutes = 0",
            1,
        );
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until every accepted event has been handled.
pub async fn all_handled(app: &TestApp) {
    eventually(Duration::from_secs(10), "every event handled", || async {
        (app.count("SELECT COUNT(*) FROM inbox WHERE state <> 'done'")
            .await
            == 0)
            .then_some(())
    })
    .await;
}

/// A person's message in a channel, as Slack sends it for `message.channels`.
pub fn human(
    event_id: &str,
    channel: &str,
    user: &str,
    ts: &str,
    thread_ts: Option<&str>,
    text: &str,
) -> Value {
    let ev = json!({
        "type": "message", "channel_type": "channel", "user": user, "text": text, "ts": ts,
        "channel": channel, "event_ts": ts, "team": "T1"
    });
    envelope(event_id, ev, thread_ts)
}

/// Chime's suggestions (open or answered) in a thread.
pub fn suggestions_in(slack: &FakeSlack, channel: &str, root: &str) -> Vec<Value> {
    slack
        .thread(channel, root)
        .into_iter()
        .filter(|m| {
            m["blocks"].to_string().contains("chime_accept")
                || m["blocks"].to_string().contains("accepted by")
        })
        .collect()
}

/// `/chime <text>` from `user` in C3, signed.
pub async fn slash(app: &TestApp, user: &str, trigger: &str, text: &str) -> reqwest::Response {
    slash_in(app, user, "C3", trigger, text).await
}

/// A signed `/chime` command from `user` in `channel`.
pub async fn slash_in(
    app: &TestApp,
    user: &str,
    channel: &str,
    trigger: &str,
    text: &str,
) -> reqwest::Response {
    let body = serde_urlencoded::to_string([
        ("team_id", "T1"),
        ("user_id", user),
        ("channel_id", channel),
        ("trigger_id", trigger),
        ("command", "/chime"),
        ("text", text),
        ("response_url", "https://hooks.slack.com/commands/T1/1/x"),
    ])
    .unwrap();
    signed_post(
        &app.http,
        &app.url("/slack/commands"),
        body.into_bytes(),
        "application/x-www-form-urlencoded",
        &[],
    )
    .await
}
