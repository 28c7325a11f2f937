//! Time to the agent's first output for a repository with a setup phase: the first task on the
//! repository (mirror clone, worktree, setup run) against later tasks in new sessions (worktree,
//! setup cache reused), beside a repository without setup (worktree only) as the baseline.
//!
//! The setup stands in for a dependency install: it waits 1 s (a download) and writes 2000 small
//! files into `$CHIME_CACHE`. The agent's first action writes `date +%s%N` to `$HOME/started`.
//! Runs are interleaved so all see the same load; sandbox `none`, so only the phases differ.
//!
//! Run with `cargo bench --bench setup_cache`.

use anyhow::{ensure, Context};
use chime::backend::command::{CommandBackend, Sandbox};
use chime::backend::{AgentInput, Backend};
use chime::config::{RepoConfig, SandboxMode};
use chime::ids::{RepoName, SessionId, TaskId};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const RUNS: usize = 8;

const AGENT: &str = r#"#!/bin/sh
date +%s%N > "$HOME/started"
cat > /dev/null
echo '{"type":"result","text":"ok"}'
"#;

const SETUP: &str =
    "sleep 1\ni=0\nwhile [ $i -lt 2000 ]; do echo $i > \"$CHIME_CACHE/dep$i\"; i=$((i+1)); done\n";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let with_setup = root.join("with-setup");
    make_repo(&with_setup, true)?;
    let plain = root.join("plain");
    make_repo(&plain, false)?;
    let script = root.join("agent.sh");
    std::fs::write(&script, AGENT)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let backend = |workdir: &Path| {
        CommandBackend::new(
            "bench".into(),
            vec![script.display().to_string()],
            Duration::from_secs(120),
            BTreeMap::new(),
            workdir.to_path_buf(),
            BTreeMap::from([
                (
                    "acme/api".to_string(),
                    RepoConfig {
                        url: with_setup.display().to_string(),
                        default_branch: Some("main".into()),
                        ..Default::default()
                    },
                ),
                (
                    "acme/plain".to_string(),
                    RepoConfig {
                        url: plain.display().to_string(),
                        default_branch: Some("main".into()),
                        ..Default::default()
                    },
                ),
            ]),
        )
        .with_sandbox(Sandbox {
            mode: SandboxMode::None,
            read_only: vec![],
        })
    };
    // Warm: one backend whose setup cache (and mirrors) already exist.
    let warm = backend(&root.join("warm"));
    run(&warm, "warmup", "acme/api").await?;
    run(&warm, "warmup-plain", "acme/plain").await?;
    let (mut first, mut later, mut baseline) = (vec![], vec![], vec![]);
    for i in 0..RUNS {
        // First task on the repository: a fresh workdir (clone, worktree, setup).
        let cold = backend(&root.join(format!("cold{i}")));
        first.push(run(&cold, &format!("first{i}"), "acme/api").await?);
        later.push(run(&warm, &format!("later{i}"), "acme/api").await?);
        baseline.push(run(&warm, &format!("plain{i}"), "acme/plain").await?);
    }
    let (f, l, b) = (
        median(&mut first),
        median(&mut later),
        median(&mut baseline),
    );
    println!("Setup cache: run() -> agent's first output, median of {RUNS} interleaved runs");
    println!("  first task on the repository (clone, worktree, setup): {f:>8.1} ms");
    println!("  later task, new session (worktree, setup cached):      {l:>8.1} ms");
    println!("  baseline, repository without setup (worktree only):   {b:>8.1} ms");
    println!(
        "  first/later: {:.1}x; later/baseline: {:.2}x",
        f / l,
        l / b
    );
    Ok(())
}

/// Runs one turn of a new session; the time from `run()` to the agent's start, in ms.
async fn run(backend: &CommandBackend, session: &str, repo: &str) -> anyhow::Result<f64> {
    let input = AgentInput {
        session_id: SessionId::new(session),
        task_id: TaskId::new(format!("t-{session}")),
        turn_no: 1,
        prompt: "Benchmark turn".into(),
        requester: "U1".into(),
        repo: RepoName::parse(repo),
        backend: "bench".into(),
        history: vec![],
        thread_context: vec![],
        rendered: "Benchmark turn\n".into(),
        rendered_turn: String::new(),
        variants: 1,
        plan_only: false,
        remote: None,
        checkpoint: Default::default(),
        base: None,
    };
    let (tx, _rx) = mpsc::channel(100);
    let t0 = now_ns();
    backend
        .run(&input, tx, CancellationToken::new())
        .await
        .with_context(|| format!("session {session}"))?;
    let started: u128 = std::fs::read_to_string(backend.home_path(session).join("started"))?
        .trim()
        .parse()?;
    Ok((started.saturating_sub(t0)) as f64 / 1e6)
}

fn make_repo(dir: &Path, setup: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("src/lib.rs"), "pub fn f() {}\n")?;
    std::fs::write(dir.join("Cargo.lock"), "# lock\n")?;
    if setup {
        std::fs::create_dir_all(dir.join(".chime"))?;
        std::fs::write(dir.join(".chime/setup"), SETUP)?;
    }
    for args in [
        &["init", "--quiet", "--initial-branch=main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=B",
            "-c",
            "user.email=b@b",
            "commit",
            "--quiet",
            "-m",
            "init",
        ],
    ] {
        let out = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()?;
        ensure!(out.status.success(), "git {args:?} failed");
    }
    Ok(())
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
