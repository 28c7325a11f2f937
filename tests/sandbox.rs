//! The agent's sandbox end to end: the real `chime` binary with its secrets in its environment, a
//! hostile shell-script agent driven by signed Slack mentions, and what it found coming back in
//! the final card that the fake Slack records.

mod common;

use chime::backend::command::find_bwrap;
use chime::config::{BackendConfig, RepoConfig, SandboxMode};
use common::process::{free_port, ChimeProcess, FAST_CONFIG};
use common::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const BOT_TOKEN: &str = "xoxb-test-token";
const DB_PASSWORD: &str = "sandbox-db-password-7c1d";
/// A comment in the config file: if it shows up, the agent read the file.
const CONFIG_MARKER: &str = "config-marker-5e1f0b";
/// What the first session leaves in its worktree and home for the second one to look for.
const OTHER_SESSION_SECRET: &str = "other-session-secret-94a2";

/// Whether bubblewrap is here; without it these tests fail under CI=true and skip otherwise.
fn have_bwrap() -> bool {
    if find_bwrap().is_some() {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "bubblewrap (bwrap) is not installed, and CI=true: install it (apt install bubblewrap)"
    );
    eprintln!("note: bubblewrap (bwrap) is not installed: sandbox test skipped");
    false
}

/// The card that ends a thread's first turn (done or failed), as the fake Slack recorded it.
async fn final_card(slack: &FakeSlack, channel: &str, root: &str) -> String {
    eventually(WAIT, "the final card", || async {
        slack
            .thread(channel, root)
            .into_iter()
            .map(|m| m["blocks"].to_string())
            .find(|b| b.contains("*Done*") || b.contains("*Failed*"))
    })
    .await
}

/// The output of one probe in the agent's findings.
fn section<'a>(findings: &'a str, probe: &str) -> &'a str {
    let start = findings
        .find(&format!("== {probe}\n"))
        .map(|i| i + probe.len() + 4)
        .unwrap_or_else(|| panic!("no probe {probe} in:\n{findings}"));
    let rest = &findings[start..];
    &rest[..rest.find("\n== ").unwrap_or(rest.len())]
}

/// The acceptance test of issue 6, item 1: an agent that goes looking for Chime's secrets, its
/// database and config, and another session's worktree finds nothing, and its output carries no
/// secret.
async fn agent_finds_nothing_of_chime(db: TestDb) {
    if !have_bwrap() {
        return;
    }
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let root_dir = dir.path();
    let workdir = root_dir.join("work");
    let upstream = root_dir.join("upstream");
    init_repo(&upstream, "README.md", "# api\n");
    // Chime's database next to its config in its working directory, as an operator runs it; on
    // Postgres, a URL with a password.
    let (db_url, db_file) = match db.url().split_once("postgres://") {
        Some(("", rest)) => match rest.split_once('@') {
            Some((user, host)) if !user.contains(':') => {
                (format!("postgres://{user}:{DB_PASSWORD}@{host}"), None)
            }
            _ => (db.url().to_string(), None),
        },
        _ => {
            let file = root_dir.join("chime.db");
            (format!("sqlite://{}", file.display()), Some(file))
        }
    };
    let db_file = db_file.unwrap_or_else(|| root_dir.join("chime.db"));
    let config_file = root_dir.join("sandbox.toml");
    let agent = root_dir.join("agent.sh");
    write_script(
        &agent,
        &format!(
            r#"#!/bin/bash
prompt=$(cat)
case "$prompt" in
  *plant-a-secret*)
    echo "{OTHER_SESSION_SECRET}" > other-session.txt
    echo "{OTHER_SESSION_SECRET}" > "$HOME/other-home.txt"
    echo '{{"type":"result","text":"planted"}}'
    exit 0 ;;
esac
probe() {{ echo "== $1"; shift; "$@" 2>&1 | head -c 300; echo; }}
{{
probe ppid-environ sh -c 'tr "\0" "\n" < /proc/$PPID/environ'
probe all-environ sh -c 'for f in /proc/[0-9]*/environ; do tr "\0" "\n" < "$f"; done | sort -u | grep -v "^CHIME_\|^PATH=\|^HOME=\|^LANG=\|^TERM=\|^PWD=\|^SHLVL=\|^_="'
probe processes sh -c 'ls /proc | grep "^[0-9]" | tr "\n" " "'
probe up3 ls -a ../../..
probe up5 ls -a ../../../../..
probe database head -c 100 "{db_file}"
probe config cat "{config_file}"
probe chime-dir ls -a "{root_dir}"
probe other-worktrees sh -c 'cat {workdir}/worktrees/*/*/*/other-session.txt'
probe other-homes sh -c 'cat {workdir}/homes/*/other-home.txt'
probe shadow head -c 100 /etc/shadow
probe capabilities grep CapEff /proc/self/status
}} > "$HOME/findings.txt"
cat "$HOME/findings.txt"
echo "probes done"
"#,
            db_file = db_file.display(),
            config_file = config_file.display(),
            root_dir = root_dir.display(),
            workdir = workdir.display(),
        ),
    );
    let config = format!(
        "# {CONFIG_MARKER}\n{FAST_CONFIG}\n[agent]\ndefault_backend = \"agent\"\nworkdir = \"{workdir}\"\n\n\
         [routing]\ndefault_repo = \"acme/api\"\n\n[repos.\"acme/api\"]\nurl = \"{upstream}\"\ndefault_branch = \"main\"\n\n\
         [backends.agent]\nkind = \"command\"\ncommand = [\"{agent}\"]\ntimeout_secs = 60\n",
        workdir = workdir.display(),
        upstream = upstream.display(),
        agent = agent.display(),
    );
    let env = vec![
        ("DATABASE_URL", db_url),
        ("SLACK_SIGNING_SECRET", SECRET.to_string()),
        ("SLACK_BOT_TOKEN", BOT_TOKEN.to_string()),
        ("SLACK_API_URL", slack.api_url()),
    ];
    let chime = ChimeProcess::start(root_dir, "sandbox", free_port(), &env, &config).await;
    let http = reqwest::Client::new();
    let url = format!("{}/slack/events", chime.base);
    let post = |ev: serde_json::Value| {
        let (http, url) = (&http, &url);
        async move {
            signed_post(
                http,
                url,
                ev.to_string().into_bytes(),
                "application/json",
                &[],
            )
            .await
        }
    };

    // Another session first, which leaves something of its own behind.
    let other = "1700000000.011000";
    post(mention(
        "EvOther",
        "C11",
        "U1",
        other,
        None,
        "plant-a-secret",
    ))
    .await;
    let card = final_card(&slack, "C11", other).await;
    assert!(card.contains("planted"), "{card}\n{}", chime.log_text());

    let root = "1700000000.012000";
    post(mention("EvProbe", "C12", "U2", root, None, "look around")).await;
    let card = final_card(&slack, "C12", root).await;
    assert!(
        card.contains("*Done*") && card.contains("probes done"),
        "{card}"
    );
    let home = std::fs::read_dir(workdir.join("homes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|h| h.join("findings.txt").exists())
        .expect("the probing session's home");
    let findings = std::fs::read_to_string(home.join("findings.txt")).unwrap();
    eprintln!("the agent found:\n{findings}");
    for (what, text) in [("card", &card), ("findings", &findings)] {
        for secret in [
            BOT_TOKEN,
            SECRET,
            DB_PASSWORD,
            "SLACK_",
            "DATABASE_URL",
            CONFIG_MARKER,
            OTHER_SESSION_SECRET,
            "SQLite format",
            "root:",
        ] {
            assert!(!text.contains(secret), "{secret:?} in the {what}:\n{text}");
        }
    }
    // Chime's working directory, seen from inside: only the skeleton bwrap made for the workdir,
    // and the agent's own script.
    for probe in ["up5", "chime-dir"] {
        let listing = section(&findings, probe);
        for name in ["sandbox.toml", "sandbox.log", "chime.db"] {
            assert!(!listing.contains(name), "{name} in {probe}: {listing}");
        }
        assert!(listing.contains("work"), "{probe}: {listing}");
    }
    // The probes ran and saw the sandbox: its own few processes, no capabilities, and neither
    // Chime's working directory nor the database or config file.
    assert!(
        findings.contains("== ppid-environ\nCHIME_") || findings.contains("== ppid-environ\nHOME="),
        "{findings}"
    );
    assert!(findings.contains("CapEff:\t0000000000000000"), "{findings}");
    assert!(findings.contains("No such file or directory"), "{findings}");
    let processes = section(&findings, "processes");
    // bwrap's init, the agent and the probe's own pipeline; the host has hundreds.
    assert!(
        processes.split_whitespace().count() <= 20,
        "the agent sees processes beyond its own: {processes}"
    );
}
dual_db!(nothing_of_chime_test, agent_finds_nothing_of_chime);

/// Runs one mention against a command backend with `mode` whose agent tries a TCP connection to
/// `port` on loopback, and returns what the agent says about it.
async fn tcp_from_agent(db: &TestDb, mode: SandboxMode, port: u16) -> String {
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let agent = tmp.path().join("agent.sh");
    write_script(
        &agent,
        &format!(
            "#!/bin/bash\ncat >/dev/null\nif (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo 'tcp: connected'; else echo 'tcp: refused'; fi\n"
        ),
    );
    let mut config = test_config(db, &slack);
    config.agent.workdir = tmp.path().join("work");
    command_backend(&mut config, "agent", vec![agent.display().to_string()], 60);
    if let Some(BackendConfig::Command { sandbox, .. }) = config.backends.get_mut("agent") {
        *sandbox = mode;
    }
    let app = TestApp::spawn(config).await;
    // Both runs share the database, so each needs an event (and thread) of its own.
    let (event, root) = match mode {
        SandboxMode::NoNetwork => ("EvTcpClosed", "1700000000.013100"),
        _ => ("EvTcpOpen", "1700000000.013000"),
    };
    let r = app
        .post_event(&mention(event, "C13", "U1", root, None, "call home"))
        .await;
    assert_eq!(r.status(), 200);
    let card = eventually(WAIT, "the final card", || async {
        let thread = slack.thread("C13", root);
        thread
            .iter()
            .map(|m| m["blocks"].to_string())
            .find(|b| b.contains("*Done*") || b.contains("*Failed*"))
    })
    .await;
    app.stop().await;
    card
}

/// With `no-network` the agent cannot reach a listener on loopback that the same agent reaches
/// in the default sandbox.
async fn no_network_means_no_loopback_either(db: TestDb) {
    if !have_bwrap() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = tcp_from_agent(&db, SandboxMode::Bwrap, port).await;
    assert!(open.contains("tcp: connected"), "{open}");
    let closed = tcp_from_agent(&db, SandboxMode::NoNetwork, port).await;
    assert!(closed.contains("tcp: refused"), "{closed}");
    drop(listener);
}
dual_db!(no_network_test, no_network_means_no_loopback_either);

/// `check-config` warns loudly about a backend without a sandbox.
#[test]
fn check_config_warns_about_an_unsandboxed_backend() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("chime.toml");
    std::fs::write(
        &config,
        "[agent]\ndefault_backend = \"codex\"\n\n[backends.codex]\nkind = \"command\"\ncommand = [\"codex\"]\nsandbox = \"none\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chime"))
        .arg("check-config")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CHIME_CONFIG", &config)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("warning: [backends.codex] sandbox = \"none\": its agent runs UNSANDBOXED"),
        "{stdout}"
    );
    assert!(stdout.contains("DATABASE_URL"), "{stdout}");
}

/// A config key the sandbox relies on is checked like every other.
#[test]
fn sandbox_values_are_checked() {
    let err = chime::config::Config::parse(
        "[backends.codex]\nkind = \"command\"\ncommand = [\"codex\"]\nsandbox = \"off\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("no-network"), "{err}");
    let c = chime::config::Config::parse(
        "[backends.codex]\nkind = \"command\"\ncommand = [\"codex\"]\nsandbox_read_only = [\"relative/path\"]\n",
    )
    .unwrap();
    assert!(c
        .check()
        .errors
        .iter()
        .any(|e| e.contains("sandbox_read_only entries must be absolute")));
    let _ = RepoConfig::default();
}
