//! The `chime` binary's command line, run as an operator would: `--version`, `check-config`,
//! `migrate`, and `serve` until SIGTERM.

mod common;

use common::process::{free_port, ChimeProcess};
use common::SECRET;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BOT_TOKEN: &str = "xoxb-test-token";
const APP_TOKEN: &str = "xapp-1-test-token";

/// Runs `chime <args>` in `dir` with a clean environment plus `env`.
fn chime(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chime"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run chime")
}

/// stdout and stderr together, for checks that do not care which one a line went to.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn assert_no_secrets(out: &Output) {
    let all = text(out);
    for secret in [BOT_TOKEN, SECRET, APP_TOKEN, "db-password-hunter2"] {
        assert!(!all.contains(secret), "{secret:?} was printed:\n{all}");
    }
}

#[test]
fn version_prints_the_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = chime(dir.path(), &["--version"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("chime {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn check_config_names_an_unknown_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chime.toml");
    for (toml, key) in [
        (
            "[slack]\nallowed_workspace = [\"T1\"]\n",
            "allowed_workspace",
        ),
        ("[sever]\nlisten = \"127.0.0.1:1\"\n", "sever"),
        ("[worker]\npoll_msec = 50\n", "poll_msec"),
    ] {
        std::fs::write(&config, toml).unwrap();
        let path = config.display().to_string();
        for args in [
            vec!["check-config", "--config", path.as_str()],
            vec!["--config", path.as_str(), "check-config"],
        ] {
            let out = chime(dir.path(), &args, &[]);
            assert!(!out.status.success(), "{key}: {}", text(&out));
            assert!(text(&out).contains(key), "{key} not named: {}", text(&out));
        }
        // CHIME_CONFIG names the file as well as --config does.
        let out = chime(dir.path(), &["check-config"], &[("CHIME_CONFIG", &path)]);
        assert!(!out.status.success());
        assert!(text(&out).contains(key), "{}", text(&out));
        // And `serve` refuses to start on it.
        let out = chime(
            dir.path(),
            &["serve"],
            &[("CHIME_CONFIG", &path), ("CHIME_LISTEN", "127.0.0.1:0")],
        );
        assert!(!out.status.success());
        assert!(text(&out).contains(key), "{}", text(&out));
    }
}

#[test]
fn check_config_names_a_bad_database_url() {
    let dir = tempfile::tempdir().unwrap();
    let out = chime(
        dir.path(),
        &["check-config"],
        &[("DATABASE_URL", "mysql://chime:db-password-hunter2@db/chime")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("DATABASE_URL"), "{all}");
    assert!(all.contains("mysql://chime:***@db/chime"), "{all}");
    assert_no_secrets(&out);
}

#[test]
fn check_config_says_which_slack_secret_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    // A bot token alone: the way in (signing secret or app token) is missing.
    let out = chime(
        dir.path(),
        &["check-config"],
        &[("SLACK_BOT_TOKEN", BOT_TOKEN), ("RUST_LOG", "trace")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("SLACK_SIGNING_SECRET") && all.contains("SLACK_APP_TOKEN"),
        "{all}"
    );
    assert!(
        !all.contains("SLACK_BOT_TOKEN is not set"),
        "the bot token is there: {all}"
    );
    assert_no_secrets(&out);

    // A signing secret or an app token alone: the bot token is missing.
    for (k, v) in [
        ("SLACK_SIGNING_SECRET", SECRET),
        ("SLACK_APP_TOKEN", APP_TOKEN),
    ] {
        let out = chime(
            dir.path(),
            &["check-config"],
            &[(k, v), ("RUST_LOG", "trace")],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("SLACK_BOT_TOKEN"), "{}", text(&out));
        assert_no_secrets(&out);
    }

    // Nothing at all: Slack is off, which is only a warning.
    let out = chime(dir.path(), &["check-config"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("no Slack credentials"),
        "{}",
        text(&out)
    );
}

#[test]
fn check_config_accepts_a_valid_config_without_printing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chime.toml");
    std::fs::write(
        &config,
        r#"
[server]
listen = "127.0.0.1:9999"

[agent]
default_backend = "codex"

[backends.codex]
kind = "command"
command = ["codex", "exec", "--json", "-"]
timeout_secs = 600

[repos."acme/api"]
url = "https://github.com/acme/api.git"
default_branch = "main"

[routing]
default_repo = "acme/api"
"#,
    )
    .unwrap();
    let path = config.display().to_string();
    for way_in in [
        ("SLACK_SIGNING_SECRET", SECRET),
        ("SLACK_APP_TOKEN", APP_TOKEN),
    ] {
        let out = chime(
            dir.path(),
            &["check-config"],
            &[
                ("CHIME_CONFIG", &path),
                ("SLACK_BOT_TOKEN", BOT_TOKEN),
                way_in,
                (
                    "DATABASE_URL",
                    "postgres://chime:db-password-hunter2@127.0.0.1:1/chime",
                ),
                ("RUST_LOG", "trace"),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("ok:"), "{stdout}");
        assert!(stdout.contains("Slack on"), "{stdout}");
        assert!(stdout.contains("127.0.0.1:9999"), "{stdout}");
        assert!(stdout.contains("codex"), "{stdout}");
        assert!(
            stdout.contains("postgres://chime:***@127.0.0.1:1/chime"),
            "{stdout}"
        );
        assert!(!stdout.contains("error"), "{stdout}");
        assert_no_secrets(&out);
    }
}

#[tokio::test]
async fn migrate_creates_the_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("x.db");
    let url = format!("sqlite://{}", db.display());
    assert!(!db.exists());
    let out = chime(dir.path(), &["migrate"], &[("DATABASE_URL", &url)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(db.exists(), "{} was not created", db.display());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("migrations applied"),
        "{}",
        text(&out)
    );
    // Applying them again is a no-op.
    let out = chime(dir.path(), &["migrate"], &[("DATABASE_URL", &url)]);
    assert!(out.status.success(), "{}", text(&out));
    // The schema is there.
    let store = chime::db::Db::connect(&chime::config::DatabaseConfig {
        url,
        ..Default::default()
    })
    .await
    .unwrap();
    let n: i64 = sqlx::Row::get(
        &sqlx::query("SELECT COUNT(*) FROM tasks")
            .fetch_one(&store.pool)
            .await
            .unwrap(),
        0,
    );
    assert_eq!(n, 0);
}

#[test]
fn migrate_refuses_a_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let out = chime(
        dir.path(),
        &["migrate"],
        &[("DATABASE_URL", "mysql://chime:db-password-hunter2@db/chime")],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("DATABASE_URL"), "{}", text(&out));
    assert_no_secrets(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![(
        "DATABASE_URL",
        format!("sqlite://{}", dir.path().join("serve.db").display()),
    )];
    let mut p = ChimeProcess::start(dir.path(), "serve", free_port(), &env, "").await;
    let sent = Instant::now();
    let status = p.terminate_within(Duration::from_secs(5)).await;
    let Some(status) = status else {
        panic!(
            "chime serve was still running 5 s after SIGTERM; log:\n{}",
            p.log_text()
        );
    };
    eprintln!("serve stopped {:?} after SIGTERM", sent.elapsed());
    assert!(status.success(), "{status}; log:\n{}", p.log_text());
    let log = p.log_text();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("stopped"), "{log}");
}

/// `chime inspect failed` lists what was parked and why, newest first, in plain text: the person's
/// text cut short, and no secret even when a stored reason holds one.
async fn inspect_failed_lists_parked_rows(db: common::TestDb) {
    use wiremock::matchers::{body_string_contains, path};
    use wiremock::{Mock, ResponseTemplate};
    let dir = tempfile::tempdir().unwrap();
    let env = [("DATABASE_URL", db.url())];
    let out = chime(dir.path(), &["migrate"], &env);
    assert!(out.status.success(), "{}", text(&out));
    let out = chime(dir.path(), &["inspect", "failed"], &env);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Outbox rows parked as failed: none"),
        "{}",
        text(&out)
    );

    // Slack refuses every post to CGONE for good.
    let slack = common::FakeSlack::start().await;
    Mock::given(path("/api/chat.postMessage"))
        .and(body_string_contains("CGONE"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({ "ok": false, "error": "channel_not_found" })),
        )
        .with_priority(1)
        .mount(&slack.server)
        .await;
    let app = common::TestApp::spawn(common::test_config(&db, &slack)).await;
    let long = format!("please look at this {}", "very ".repeat(100));
    app.post_event(&common::mention(
        "EvGone",
        "CGONE",
        "U1",
        "1700000000.800000",
        None,
        &long,
    ))
    .await;
    common::eventually(
        Duration::from_secs(30),
        "every outbox row settled",
        || async {
            let open = app
                .count("SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')")
                .await;
            let failed = app
                .count("SELECT COUNT(*) FROM outbox WHERE state = 'failed'")
                .await;
            (open == 0 && failed > 0).then_some(())
        },
    )
    .await;
    // A reason that quotes a token (as a careless error message might) is masked.
    // (A copy of the mention's own row, so it holds the person's long text.)
    sqlx::query(
        "INSERT INTO inbox (source, delivery_id, payload, received_at, state, attempts, last_error) \
         SELECT source, 'EvOld', payload, 1700000000000, 'failed', 1, $1 FROM inbox WHERE payload LIKE '%please look%'",
    )
    .bind(format!("refused with token {BOT_TOKEN}"))
    .execute(&app.db.pool)
    .await
    .unwrap();
    app.stop().await;

    let out = chime(
        dir.path(),
        &["inspect", "failed"],
        &[
            ("DATABASE_URL", db.url()),
            ("SLACK_BOT_TOKEN", BOT_TOKEN),
            ("SLACK_SIGNING_SECRET", SECRET),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Inbox events parked as failed: 1"),
        "{stdout}"
    );
    assert!(stdout.contains("slack:EvOld"), "{stdout}");
    assert!(stdout.contains("refused with token ***"), "{stdout}");
    assert!(stdout.contains("reason: channel_not_found"), "{stdout}");
    assert!(stdout.contains("CGONE"), "{stdout}");
    assert!(stdout.contains("please look at this"), "{stdout}");
    assert!(!stdout.contains(&long), "the text is cut short: {stdout}");
    // Newest first: the status post (the first row queued) comes after the rows queued later.
    let ids: Vec<i64> = stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("outbox #"))
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        !ids.is_empty() && ids.windows(2).all(|w| w[0] > w[1]),
        "{ids:?}\n{stdout}"
    );
    assert_no_secrets(&out);
}
dual_db!(inspect_failed_test, inspect_failed_lists_parked_rows);

/// An `openai` backend with neither OPENAI_API_KEY nor OPENAI_BASE_URL would call OpenAI without
/// a key: check-config says so. A local model server needs only OPENAI_BASE_URL.
#[test]
fn check_config_says_what_an_openai_backend_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chime.toml");
    std::fs::write(
        &path,
        "[agent]\ndefault_backend = \"gpt\"\n\n[backends.gpt]\nkind = \"openai\"\nmodel = \"llama3\"\napi = \"chat\"\n",
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let out = chime(dir.path(), &["check-config", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("OPENAI_API_KEY is not set") && all.contains("OPENAI_BASE_URL"),
        "{all}"
    );

    let local = [("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")];
    let out = chime(dir.path(), &["check-config", "--config", path], &local);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("go without a key"), "{}", text(&out));

    let key = "sk-live-do-not-print-0123456789";
    let out = chime(
        dir.path(),
        &["check-config", "--config", path],
        &[("OPENAI_API_KEY", key)],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(key), "{}", text(&out));
}

#[test]
fn check_config_says_what_linear_lacks_and_lists_its_api() {
    let dir = tempfile::tempdir().unwrap();
    // A webhook secret alone: Chime could hear Linear but never answer.
    let out = chime(
        dir.path(),
        &["check-config"],
        &[("LINEAR_WEBHOOK_SECRET", "lin_wh_secret_value")],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("LINEAR_ACCESS_TOKEN"), "{all}");
    assert!(!all.contains("lin_wh_secret_value"), "{all}");
    // With a token it passes, and the Linear API is among the endpoints Chime reaches.
    let out = chime(
        dir.path(),
        &["check-config"],
        &[
            ("LINEAR_WEBHOOK_SECRET", "lin_wh_secret_value"),
            ("LINEAR_ACCESS_TOKEN", "lin_api_token_value"),
            ("LINEAR_API_URL", "http://127.0.0.1:9/graphql"),
        ],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("Linear API") && all.contains("127.0.0.1:9/graphql"),
        "{all}"
    );
    assert!(!all.contains("lin_api_token_value"), "{all}");
}

/// A digest time zone Chime does not know, or a target with both a zone and an offset, is named
/// by `check-config` and `serve` refuses it.
#[test]
fn check_config_names_a_bad_digest_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chime.toml");
    for (toml, says) in [
        ("[digest]\ntime_zone = \"Mars/Olympus\"\n", "Mars/Olympus"),
        (
            "[[digest.targets]]\nplace = \"local:CGENERAL\"\ntime_zone = \"Europe/Berlin\"\nutc_offset = \"+01:00\"\n",
            "not both",
        ),
        (
            "[[digest.targets]]\nplace = \"local:CGENERAL\"\ntime_zone = \"Europe/Nowhere\"\n",
            "Europe/Nowhere",
        ),
    ] {
        std::fs::write(&config, toml).unwrap();
        let path = config.display().to_string();
        let out = chime(dir.path(), &["check-config"], &[("CHIME_CONFIG", &path)]);
        assert!(!out.status.success(), "{toml}");
        assert!(text(&out).contains(says), "{says}: {}", text(&out));
    }
    std::fs::write(
        &config,
        "[digest]\ntime_zone = \"America/New_York\"\n[[digest.targets]]\nplace = \"local:CGENERAL\"\n",
    )
    .unwrap();
    let path = config.display().to_string();
    let out = chime(dir.path(), &["check-config"], &[("CHIME_CONFIG", &path)]);
    assert!(out.status.success(), "{}", text(&out));
}
