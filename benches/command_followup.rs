//! Follow-up start latency of the `command` backend, per sandbox mode.
//!
//! Measures, on a warm mirror and an existing worktree, the time from calling `run()` for a
//! follow-up turn to the agent process starting (the agent's first action writes `date +%s%N` to
//! `$HOME/started`, the one place every mode lets it write outside the worktree), for each
//! `sandbox` mode (`bwrap`, `no-network`, `none`), next to a baseline that spawns the same script
//! directly with tokio (no git work, no sandbox). The four are interleaved, so all see the same
//! machine load.
//!
//! Run with `cargo bench --bench command_followup`.

use anyhow::{ensure, Context};
use chime::backend::command::{find_bwrap, CommandBackend, Sandbox};
use chime::backend::{AgentInput, Backend};
use chime::config::{RepoConfig, SandboxMode};
use chime::ids::{RepoName, SessionId, TaskId};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const RUNS: usize = 40;
/// Files in the benchmark repository: `reset --hard` and `clean` scale with the worktree.
const REPO_FILES: usize = 1000;
const SESSION: &str = "bench";

const AGENT: &str = r#"#!/bin/sh
date +%s%N > "$HOME/started"
cat > /dev/null
echo "turn $CHIME_TURN" > notes.txt
echo '{"type":"result","text":"ok"}'
"#;

const MODES: [(&str, SandboxMode); 3] = [
    ("bwrap", SandboxMode::Bwrap),
    ("no-network", SandboxMode::NoNetwork),
    ("none", SandboxMode::None),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ensure!(
        find_bwrap().is_some(),
        "bubblewrap (bwrap) is not on PATH: the sandboxed modes cannot be measured"
    );
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    let upstream = root.join("upstream");
    make_repo(&upstream)?;
    let script = root.join("agent.sh");
    std::fs::write(&script, AGENT)?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    let direct_home = root.join("direct-home");
    std::fs::create_dir_all(&direct_home)?;

    // One backend (own workdir, mirror and worktree) per mode.
    let backends: Vec<CommandBackend> = MODES
        .iter()
        .map(|(label, mode)| {
            CommandBackend::new(
                "bench".into(),
                vec![script.display().to_string()],
                Duration::from_secs(60),
                BTreeMap::new(),
                root.join(label),
                BTreeMap::from([(
                    "acme/api".to_string(),
                    RepoConfig {
                        url: upstream.display().to_string(),
                        default_branch: Some("main".into()),
                        ..Default::default()
                    },
                )]),
            )
            .with_sandbox(Sandbox {
                mode: *mode,
                read_only: vec![],
            })
        })
        .collect();

    // Turn 1 clones the mirror and creates the worktree; it is not measured.
    for backend in &backends {
        run_turn(backend, 1).await?;
    }

    let mut samples = vec![vec![]; MODES.len() + 1];
    for i in 0..RUNS {
        for (m, backend) in backends.iter().enumerate() {
            let t0 = now_ns();
            run_turn(backend, i as i64 + 2).await?;
            samples[m].push(started_ms(&backend.home_path(SESSION), t0)?);
        }
        let t0 = now_ns();
        spawn_directly(&script, &direct_home).await?;
        samples[MODES.len()].push(started_ms(&direct_home, t0)?);
    }

    println!(
        "Command backend: follow-up run() -> agent start ({RUNS} runs each, interleaved, \
         {REPO_FILES}-file repository)"
    );
    let stats: Vec<Stats> = samples.iter_mut().map(|s| Stats::of(s)).collect();
    for ((label, _), s) in MODES.iter().zip(&stats) {
        println!("  sandbox = {:<14} {s}", format!("\"{label}\":"));
    }
    let direct = &stats[MODES.len()];
    println!("  direct spawn (baseline):  {direct}");
    let none = &stats[2];
    for (m, (label, _)) in MODES.iter().enumerate().take(2) {
        println!(
            "  {label}/none: median {:.2}x (+{:.1} ms), p90 {:.2}x",
            stats[m].median / none.median,
            stats[m].median - none.median,
            stats[m].p90 / none.p90
        );
    }
    for (m, (label, _)) in MODES.iter().enumerate() {
        println!(
            "  {label}/direct: median {:.1}x",
            stats[m].median / direct.median
        );
    }
    Ok(())
}

async fn run_turn(backend: &CommandBackend, turn_no: i64) -> anyhow::Result<()> {
    let input = AgentInput {
        session_id: SessionId::new(SESSION),
        task_id: TaskId::new(format!("bench-{turn_no}")),
        turn_no,
        prompt: "Benchmark turn".into(),
        requester: "U1".into(),
        repo: RepoName::parse("acme/api"),
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
    backend
        .run(&input, tx, CancellationToken::new())
        .await
        .with_context(|| format!("turn {turn_no}"))?;
    Ok(())
}

/// The baseline: the same script with the same stdin, spawned with no git work and no sandbox.
async fn spawn_directly(script: &Path, home: &Path) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new(script)
        .current_dir(home)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
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

/// Milliseconds from `t0` to the time the agent wrote into `home/started`. The file is removed,
/// so a run whose agent never started cannot pass off an older run's time as its own.
fn started_ms(home: &Path, t0: u128) -> anyhow::Result<f64> {
    let file = home.join("started");
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("the agent left no {}", file.display()))?;
    std::fs::remove_file(&file)?;
    let started: u128 = text.trim().parse().context("agent start time")?;
    Ok(started.saturating_sub(t0) as f64 / 1e6)
}

struct Stats {
    min: f64,
    median: f64,
    p90: f64,
}

impl Stats {
    fn of(samples: &mut [f64]) -> Self {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Self {
            min: at(0.0),
            median: at(0.5),
            p90: at(0.9),
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "min {:.1} ms, median {:.1} ms, p90 {:.1} ms",
            self.min, self.median, self.p90
        )
    }
}
