//! Follow-up start latency of the `command` backend.
//!
//! Measures, on a warm mirror and an existing worktree, the time from calling `run()` for a
//! follow-up turn to the agent process starting (the agent's first action writes `date +%s%N` to a
//! file), next to a baseline that spawns the same script directly with tokio (no git work).
//!
//! Run with `cargo bench --bench command_followup`.

use anyhow::{ensure, Context};
use chime::backend::command::CommandBackend;
use chime::backend::{AgentInput, Backend};
use chime::config::RepoConfig;
use chime::ids::{RepoName, SessionId, TaskId};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const RUNS: usize = 20;
/// Files in the benchmark repository: `reset --hard` and `clean` scale with the worktree.
const REPO_FILES: usize = 1000;

const AGENT: &str = r#"#!/bin/sh
date +%s%N > "$START_FILE"
cat > /dev/null
echo "turn $CHIME_TURN" > notes.txt
echo '{"type":"result","text":"ok"}'
"#;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let upstream = root.join("upstream");
    make_repo(&upstream)?;
    let script = root.join("agent.sh");
    std::fs::write(&script, AGENT)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let start_file = root.join("started");

    let backend = CommandBackend::new(
        "bench".into(),
        vec![script.display().to_string()],
        Duration::from_secs(60),
        BTreeMap::from([("START_FILE".to_string(), start_file.display().to_string())]),
        root.join("work"),
        BTreeMap::from([(
            "acme/api".to_string(),
            RepoConfig {
                url: upstream.display().to_string(),
                default_branch: Some("main".into()),
            },
        )]),
    );

    // Turn 1 clones the mirror and creates the worktree; it is not measured.
    run_turn(&backend, 1).await?;

    let (mut followup, mut baseline) = (vec![], vec![]);
    // Interleaved, so both see the same machine load.
    for i in 0..RUNS {
        let t0 = now_ns();
        run_turn(&backend, i as i64 + 2).await?;
        followup.push(started_ms(&start_file, t0)?);

        let t0 = now_ns();
        spawn_directly(&script, &start_file).await?;
        baseline.push(started_ms(&start_file, t0)?);
    }

    println!(
        "Command backend: follow-up start latency ({RUNS} runs, {REPO_FILES}-file repository)"
    );
    let f = Stats::of(&mut followup);
    let b = Stats::of(&mut baseline);
    println!("  follow-up run() -> agent start: {f}");
    println!("  direct tokio spawn (baseline):   {b}");
    println!("  ratio of medians: {:.1}x", f.median / b.median);
    Ok(())
}

async fn run_turn(backend: &CommandBackend, turn_no: i64) -> anyhow::Result<()> {
    let input = AgentInput {
        session_id: SessionId::new("bench"),
        task_id: TaskId::new(format!("bench-{turn_no}")),
        turn_no,
        prompt: "Benchmark turn".into(),
        requester: "U1".into(),
        repo: RepoName::parse("acme/api"),
        backend: "bench".into(),
        history: vec![],
        thread_context: vec![],
        rendered: "Benchmark turn\n".into(),
    };
    let (tx, _rx) = mpsc::channel(100);
    backend
        .run(&input, tx, CancellationToken::new())
        .await
        .with_context(|| format!("turn {turn_no}"))?;
    Ok(())
}

/// The baseline: the same script with the same stdin, spawned with no git work around it.
async fn spawn_directly(script: &Path, start_file: &Path) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new(script)
        .current_dir(start_file.parent().context("no parent")?)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("START_FILE", start_file)
        .env("CHIME_TURN", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(b"Benchmark turn\n").await?;
    }
    let output = child.wait_with_output().await?;
    ensure!(output.status.success(), "baseline script failed");
    Ok(())
}

fn make_repo(dir: &Path) -> anyhow::Result<()> {
    for i in 0..REPO_FILES {
        let sub = dir.join(format!("src/m{}", i % 20));
        std::fs::create_dir_all(&sub)?;
        std::fs::write(
            sub.join(format!("f{i}.rs")),
            format!("pub fn f{i}() {{}}\n"),
        )?;
    }
    git(dir, &["init", "--quiet", "--initial-branch=main"])?;
    git(dir, &["add", "-A"])?;
    git(
        dir,
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
    )
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .status()?;
    ensure!(status.success(), "git {args:?} failed");
    Ok(())
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Milliseconds from `t0` to the time the agent wrote into `start_file`.
fn started_ms(start_file: &Path, t0: u128) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(start_file)?;
    let started: u128 = text.trim().parse().context("agent start time")?;
    Ok(started.saturating_sub(t0) as f64 / 1e6)
}

struct Stats {
    min: f64,
    median: f64,
    p95: f64,
}

impl Stats {
    fn of(samples: &mut [f64]) -> Self {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self {
            min: at(0.0),
            median: at(0.5),
            p95: at(0.95),
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min {:.1} ms, median {:.1} ms, p95 {:.1} ms",
            self.min, self.median, self.p95
        )
    }
}
