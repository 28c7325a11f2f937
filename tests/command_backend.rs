//! The `command` backend against real git repositories and real (bash) agent processes, run in
//! the bubblewrap sandbox as they are by default.

use chime::backend::command::{find_bwrap, CommandBackend, Sandbox};
use chime::backend::{AgentInput, Backend, BackendError, Outcome, Progress};
use chime::config::RepoConfig;
use chime::config::SandboxMode;
use chime::ids::{RepoName, SessionId, TaskId};
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const REPO: &str = "acme/api";

/// A temporary world: an upstream repository `acme/api` (one commit on `main`), a Chime workdir
/// and a directory where agent scripts leave what they observed.
struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    upstream: PathBuf,
    workdir: PathBuf,
    out: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let upstream = root.join("upstream");
        let workdir = root.join("work");
        let out = root.join("out");
        std::fs::create_dir_all(&upstream).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        git(&upstream, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(upstream.join("README.md"), "# api\n").unwrap();
        git(&upstream, &["add", "-A"]);
        commit(&upstream, "initial");
        Self {
            _tmp: tmp,
            root,
            upstream,
            workdir,
            out,
        }
    }

    /// Writes an executable bash agent; `set -eu` makes a failed assertion a failed turn.
    fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.root.join(name);
        std::fs::write(&path, format!("#!/bin/bash\nset -eu\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn backend(&self, script: &Path) -> CommandBackend {
        self.backend_with_timeout(script, Duration::from_secs(30))
    }

    fn backend_with_timeout(&self, script: &Path, timeout: Duration) -> CommandBackend {
        let mut env = BTreeMap::new();
        env.insert("OUT_DIR".to_string(), self.out.display().to_string());
        env.insert("FROM_CONFIG".to_string(), "configured value".to_string());
        let mut repos = BTreeMap::new();
        repos.insert(
            REPO.to_string(),
            RepoConfig {
                url: self.upstream.display().to_string(),
                default_branch: Some("main".into()),
                ..Default::default()
            },
        );
        CommandBackend::new(
            "test-agent".into(),
            vec![script.display().to_string()],
            timeout,
            env,
            self.workdir.clone(),
            repos,
        )
        .with_sandbox(sandbox(SandboxMode::Bwrap))
    }

    fn mirror(&self) -> PathBuf {
        self.workdir.join("mirrors").join("acme").join("api.git")
    }

    fn worktree(&self, session: &str) -> PathBuf {
        self.workdir.join("worktrees").join(session).join(REPO)
    }

    /// The session's `$HOME`, where agents leave what they observed (the sandbox shows them
    /// nothing else of the host to write to).
    fn home(&self, session: &str) -> PathBuf {
        self.workdir.join("homes").join(session)
    }
}

/// The sandbox `mode`, or none with a printed note when this machine has no bubblewrap (a failure
/// under CI, which must test the sandbox).
fn sandbox(mode: SandboxMode) -> Sandbox {
    let mode = match find_bwrap() {
        Some(_) => mode,
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("bubblewrap (bwrap) is not installed, and CI=true: install it (apt install bubblewrap)")
        }
        None => {
            eprintln!("note: bubblewrap (bwrap) is not installed: running the agent unsandboxed");
            SandboxMode::None
        }
    };
    Sandbox {
        mode,
        read_only: vec![],
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
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

fn commit(dir: &Path, message: &str) {
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
            message,
        ],
    );
}

fn input(session: &str, turn_no: i64, prompt: &str, repo: Option<&str>) -> AgentInput {
    AgentInput {
        session_id: SessionId::new(session),
        task_id: TaskId::new(format!("task-{session}-{turn_no}")),
        turn_no,
        prompt: prompt.to_string(),
        requester: "U123".into(),
        repo: repo.map(|r| RepoName::parse(r).expect("valid repo name")),
        backend: "test-agent".into(),
        history: vec![],
        thread_context: vec![],
        rendered: format!("# Request\n\n{prompt}\n"),
        rendered_turn: String::new(),
        variants: 1,
        plan_only: false,
        remote: None,
        checkpoint: Default::default(),
        base: None,
    }
}

/// Runs one turn and returns its result with every progress line it sent.
async fn run(
    backend: &CommandBackend,
    input: &AgentInput,
) -> (Result<Outcome, BackendError>, Vec<String>) {
    let (tx, mut rx) = mpsc::channel(10_000);
    let result = backend.run(input, tx, CancellationToken::new()).await;
    let mut progress = vec![];
    while let Ok(Progress { text, .. }) = rx.try_recv() {
        progress.push(text);
    }
    (result, progress)
}

async fn run_ok(backend: &CommandBackend, input: &AgentInput) -> (Outcome, Vec<String>) {
    let (result, progress) = run(backend, input).await;
    match result {
        Ok(outcome) => (outcome, progress),
        Err(e) => panic!("turn {} failed: {e}", input.turn_no),
    }
}

/// Whether a process runs (a zombie waiting for a reaper counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            state != Some('Z')
        }
        Err(_) => false,
    }
}

async fn wait_for_file(path: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The host pid of the one process whose argv is exactly `argv`.
fn pid_by_argv(argv: &[&str]) -> i32 {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let scan = || -> Vec<i32> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
            .collect()
    };
    // A shell that forks (for `sleep`) has a child with its own argv until that child execs:
    // scan again for a moment before deciding there are two.
    let mut found = scan();
    for _ in 0..50 {
        if found.len() == 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        found = scan();
    }
    assert_eq!(found.len(), 1, "processes running {argv:?}: {found:?}");
    found[0]
}

/// (a) Three turns in one session build on each other, on one branch, from a mirror cloned once.
#[tokio::test]
async fn turns_build_on_each_other_in_one_worktree() {
    let fx = Fixture::new();
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null
case "$CHIME_TURN" in
  1) echo one > a.txt; echo '{"type":"progress","text":"wrote a.txt"}'; echo '{"type":"result","text":"added a.txt"}' ;;
  2) echo two > b.txt; echo '{"type":"result","text":"added b.txt"}' ;;
  3) test -f a.txt; test -f b.txt; echo '{"type":"result","text":"a.txt and b.txt are both here"}' ;;
esac"#,
    );
    let backend = fx.backend(&script);

    let (one, progress) = run_ok(
        &backend,
        &input("s1", 1, "Add a.txt\nwith details", Some(REPO)),
    )
    .await;
    assert_eq!(one.summary, "added a.txt");
    assert_eq!(one.branch.as_deref(), Some("chime/s1"));
    assert!(!one.dry_run);
    assert!(
        progress.contains(&"wrote a.txt".to_string()),
        "{progress:?}"
    );
    let commit1 = one.commit.clone().expect("a commit");
    assert_eq!(
        commit1,
        git(&fx.mirror(), &["rev-parse", "refs/heads/chime/s1"])
    );
    let stat = one.diff_stat.clone().unwrap();
    assert!(
        stat.contains("a.txt") && stat.contains("1 file changed"),
        "{stat}"
    );

    // Observable facts about the mirror: a marker that a re-clone would lose, its inode, and no
    // FETCH_HEAD (a fresh clone has none; only a fetch writes it).
    std::fs::write(fx.mirror().join("chime-test-marker"), "x").unwrap();
    let inode = std::fs::metadata(fx.mirror()).unwrap().ino();

    let (two, _) = run_ok(&backend, &input("s1", 2, "Add b.txt", Some(REPO))).await;
    assert_eq!(two.summary, "added b.txt");
    let commit2 = two.commit.clone().unwrap();
    assert_ne!(commit2, commit1);
    assert_eq!(
        git(&fx.worktree("s1"), &["rev-parse", &format!("{commit2}^")]),
        commit1
    );
    let stat = two.diff_stat.clone().unwrap();
    assert!(stat.contains("b.txt") && !stat.contains("a.txt"), "{stat}");

    let (three, _) = run_ok(&backend, &input("s1", 3, "Check both files", Some(REPO))).await;
    assert_eq!(three.summary, "a.txt and b.txt are both here");
    assert_eq!(
        three.commit.as_deref(),
        Some(commit2.as_str()),
        "nothing changed, nothing committed"
    );
    assert_eq!(three.diff_stat.as_deref(), Some("no changes"));

    assert!(
        fx.mirror().join("chime-test-marker").exists(),
        "the mirror was cloned again"
    );
    assert_eq!(std::fs::metadata(fx.mirror()).unwrap().ino(), inode);
    assert!(
        !fx.mirror().join("FETCH_HEAD").exists(),
        "a follow-up fetched the mirror"
    );
    let subjects = git(&fx.mirror(), &["log", "--format=%s", "refs/heads/chime/s1"]);
    assert_eq!(
        subjects,
        "chime: turn 2: Add b.txt\nchime: turn 1: Add a.txt\ninitial"
    );
    assert_eq!(
        git(
            &fx.mirror(),
            &["log", "-1", "--format=%an <%ae>", "refs/heads/chime/s1"]
        ),
        "Chime <chime@localhost>"
    );
    // Chime itself never pushes.
    assert_eq!(git(&fx.upstream, &["branch", "--list", "chime/*"]), "");
}

/// A new session fetches the mirror (and so sees new upstream commits), without losing the
/// branches of earlier sessions to `fetch --prune`.
#[tokio::test]
async fn new_sessions_fetch_and_keep_other_session_branches() {
    let fx = Fixture::new();
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null
if [ "$CHIME_SESSION_ID" = s2 ]; then test -f upstream-news.txt; fi
echo "$CHIME_SESSION_ID" > "$CHIME_SESSION_ID.txt""#,
    );
    let backend = fx.backend(&script);
    let (one, _) = run_ok(&backend, &input("s1", 1, "first", Some(REPO))).await;

    std::fs::write(fx.upstream.join("upstream-news.txt"), "news\n").unwrap();
    git(&fx.upstream, &["add", "-A"]);
    commit(&fx.upstream, "news");

    let (two, _) = run_ok(&backend, &input("s2", 1, "second", Some(REPO))).await;
    assert!(
        fx.mirror().join("FETCH_HEAD").exists(),
        "a new session fetches"
    );
    assert!(two.diff_stat.unwrap().contains("s2.txt"));
    assert_eq!(
        git(&fx.mirror(), &["rev-parse", "refs/heads/chime/s1"]),
        one.commit.unwrap()
    );
    assert!(fx.worktree("s1").join("s1.txt").exists());
}

/// Sessions starting at once on a cold mirror share one clone.
#[tokio::test]
async fn concurrent_sessions_share_one_mirror() {
    let fx = Fixture::new();
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null; echo "$CHIME_SESSION_ID" > mine.txt"#,
    );
    let backend = fx.backend(&script);
    let inputs: Vec<AgentInput> = (0..4)
        .map(|i| input(&format!("c{i}"), 1, "go", Some(REPO)))
        .collect();
    let results = futures::future::join_all(inputs.iter().map(|i| run(&backend, i))).await;
    for (result, _) in results {
        let outcome = result.expect("every session succeeds");
        assert!(outcome.diff_stat.unwrap().contains("mine.txt"));
    }
    let mirrors: Vec<_> = std::fs::read_dir(fx.workdir.join("mirrors"))
        .unwrap()
        .collect();
    assert_eq!(mirrors.len(), 1);
}

/// An agent that pushes its branch and opens a PR must not push anything else: the mirror's
/// `remote.origin.mirror` is off, so `git push origin HEAD` is an ordinary push.
#[tokio::test]
async fn agent_pushes_only_its_branch() {
    let fx = Fixture::new();
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null
if [ "$CHIME_TURN" = 1 ]; then echo x > x.txt; exit 0; fi
git push --quiet origin HEAD 2>&1
echo '{"type":"pr","url":"https://example.test/acme/api/pull/7"}'
echo '{"type":"result","text":"opened a PR"}'"#,
    );
    // The upstream is a local path, which the sandbox does not show: what is tested here is
    // git's push, so this agent runs unsandboxed.
    let backend = fx.backend(&script).with_sandbox(sandbox(SandboxMode::None));
    run_ok(&backend, &input("p1", 1, "work", Some(REPO))).await;
    // A branch created upstream after the mirror was cloned: a mirror push would delete it.
    git(&fx.upstream, &["branch", "feature"]);
    let (two, _) = run_ok(&backend, &input("p1", 2, "push it", Some(REPO))).await;
    assert_eq!(
        two.pr_url.as_deref(),
        Some("https://example.test/acme/api/pull/7")
    );
    assert_eq!(
        git(&fx.upstream, &["rev-parse", "chime/p1"]),
        two.commit.unwrap()
    );
    assert_eq!(
        git(&fx.upstream, &["branch", "--list", "feature"]),
        "feature"
    );
}

/// (b) stdin carries exactly the rendered input, large or not, and is then closed.
#[tokio::test]
async fn stdin_is_exactly_the_rendered_input() {
    let fx = Fixture::new();
    let script = fx.script("agent.sh", r#"cat > "$HOME/stdin.bin""#);
    let backend = fx.backend(&script);
    let mut turn = input("in1", 1, "Show me", Some(REPO));
    turn.rendered = format!(
        "Ünïcödé \t\"quotes\" $HOME `x`\n{}no newline at the end",
        "line\n".repeat(60_000)
    );
    run_ok(&backend, &turn).await;
    assert_eq!(
        std::fs::read(fx.home("in1").join("stdin.bin")).unwrap(),
        turn.rendered.as_bytes()
    );
}

/// (c) The agent's environment holds the allowed variables only: no Slack token, no database URL.
#[tokio::test]
async fn environment_is_cleared() {
    // Set once for the whole test binary; no other test reads these.
    std::env::set_var("SLACK_BOT_TOKEN", "xoxb-secret-test-token");
    std::env::set_var("DATABASE_URL", "postgres://u:secret@db/chime");
    let fx = Fixture::new();
    let script = fx.script("agent.sh", r#"cat >/dev/null; env > "$HOME/env.txt""#);
    let backend = fx.backend(&script);
    run_ok(&backend, &input("env1", 1, "env", Some(REPO))).await;
    let env = std::fs::read_to_string(fx.home("env1").join("env.txt")).unwrap();
    assert!(
        !env.contains("SLACK_BOT_TOKEN") && !env.contains("xoxb-"),
        "{env}"
    );
    assert!(!env.contains("DATABASE_URL"), "{env}");
    for expected in [
        "CHIME_SESSION_ID=env1",
        "CHIME_TASK_ID=task-env1-1",
        "CHIME_TURN=1",
        "CHIME_REPO=acme/api",
        "CHIME_BRANCH=chime/env1",
        "FROM_CONFIG=configured value",
    ] {
        assert!(
            env.lines().any(|l| l == expected),
            "{expected} missing from:\n{env}"
        );
    }
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    let home = format!("HOME={}", fx.home("env1").display());
    assert!(
        env.lines().any(|l| l == home),
        "{home} missing from:\n{env}"
    );

    // Without a repository there is no CHIME_REPO.
    run_ok(&backend, &input("env2", 1, "env", None)).await;
    let env = std::fs::read_to_string(fx.home("env2").join("env.txt")).unwrap();
    assert!(!env.contains("CHIME_REPO"), "{env}");
    assert!(env.lines().any(|l| l == "CHIME_SESSION_ID=env2"), "{env}");
}

/// Starts a turn whose agent leaves a grandchild `sleep 60` and waits; returns the running turn
/// and the pids of the agent and the grandchild.
async fn start_sleeper(
    fx: &Fixture,
    backend: CommandBackend,
    cancel: CancellationToken,
    body: &str,
) -> (
    tokio::task::JoinHandle<Result<Outcome, BackendError>>,
    i32,
    i32,
) {
    let script = fx.script("sleeper.sh", body);
    let backend = Arc::new(backend);
    let (tx, _rx) = mpsc::channel(10);
    let turn = input("long", 1, "wait forever", Some(REPO));
    let handle = tokio::spawn(async move { backend.run(&turn, tx, cancel).await });
    wait_for_file(&fx.home("long").join("started")).await;
    // In the sandbox `$$` is a pid of its own namespace, so the processes are found by their
    // command lines instead.
    let script = script.display().to_string();
    let agent = pid_by_argv(&["/bin/bash", &script]);
    let grandchild = pid_by_argv(&[&format!("{script}.child"), "60"]);
    assert!(alive(agent) && alive(grandchild));
    (handle, agent, grandchild)
}

const SLEEPER: &str = r#"(exec -a "$0.child" sleep 60) &
echo started > "$HOME/started"
echo '{"type":"progress","text":"waiting"}'
wait"#;

/// A sleeper that ignores SIGTERM (as does its child), so only SIGKILL ends it.
const STUBBORN_SLEEPER: &str = r#"trap '' TERM
(exec -a "$0.child" sleep 60) &
echo started > "$HOME/started"
wait"#;

async fn assert_gone(pids: &[i32]) {
    let start = Instant::now();
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "still running: {pids:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (d) Stopping a turn kills the agent and its grandchildren within seconds.
#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let fx = Fixture::new();
    let path = fx.root.join("sleeper.sh");
    let backend = fx.backend(&path);
    let cancel = CancellationToken::new();
    let (handle, agent, grandchild) = start_sleeper(&fx, backend, cancel.clone(), SLEEPER).await;
    let start = Instant::now();
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("stops within 5 s")
        .unwrap();
    assert!(matches!(result, Err(BackendError::Cancelled)), "{result:?}");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "took {:?}",
        start.elapsed()
    );
    assert_gone(&[agent, grandchild]).await;
}

/// An agent that ignores SIGTERM is killed with SIGKILL after the grace period.
#[tokio::test]
async fn cancel_escalates_to_sigkill() {
    let fx = Fixture::new();
    let path = fx.root.join("sleeper.sh");
    let backend = fx.backend(&path);
    let cancel = CancellationToken::new();
    let (handle, agent, grandchild) =
        start_sleeper(&fx, backend, cancel.clone(), STUBBORN_SLEEPER).await;
    let start = Instant::now();
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), handle)
        .await
        .expect("stops within 5 s")
        .unwrap();
    assert!(matches!(result, Err(BackendError::Cancelled)), "{result:?}");
    assert!(
        start.elapsed() >= Duration::from_millis(1900),
        "SIGKILL came early: {:?}",
        start.elapsed()
    );
    assert_gone(&[agent, grandchild]).await;
}

/// A stop that comes before the turn starts runs nothing.
#[tokio::test]
async fn cancel_before_start_runs_nothing() {
    let fx = Fixture::new();
    let script = fx.script("agent.sh", r#"touch "$HOME/ran""#);
    let backend = fx.backend(&script);
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (tx, _rx) = mpsc::channel(10);
    let result = backend
        .run(&input("c0", 1, "x", Some(REPO)), tx, cancel)
        .await;
    assert!(matches!(result, Err(BackendError::Cancelled)), "{result:?}");
    assert!(!fx.home("c0").join("ran").exists());
}

/// (e) A turn that runs past its timeout is killed, grandchildren included.
#[tokio::test]
async fn timeout_kills_the_agent() {
    let fx = Fixture::new();
    let path = fx.root.join("sleeper.sh");
    let backend = fx.backend_with_timeout(&path, Duration::from_secs(2));
    let start = Instant::now();
    let (handle, agent, grandchild) =
        start_sleeper(&fx, backend, CancellationToken::new(), SLEEPER).await;
    let result = tokio::time::timeout(Duration::from_secs(8), handle)
        .await
        .expect("times out")
        .unwrap();
    assert!(
        matches!(result, Err(BackendError::TimedOut(d)) if d == Duration::from_secs(2)),
        "{result:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
    assert_gone(&[agent, grandchild]).await;
}

/// (f) A non-zero exit is a failure that quotes the end of stderr.
#[tokio::test]
async fn nonzero_exit_fails_with_stderr_tail() {
    let fx = Fixture::new();
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null
head -c 20000 /dev/zero | tr '\0' e >&2
echo >&2
echo "boom: the tests failed" >&2
echo '{"type":"result","text":"never mind"}'
exit 3"#,
    );
    let backend = fx.backend(&script);
    let (result, _) = run(&backend, &input("f1", 1, "fail", Some(REPO))).await;
    let Err(BackendError::Failed(message)) = result else {
        panic!("{result:?}")
    };
    assert!(
        message.starts_with("agent exited with status 3: "),
        "{}",
        &message[..80]
    );
    assert!(message.ends_with("boom: the tests failed"), "{message}");
    assert!(
        message.len() < 4200,
        "stderr tail is bounded: {}",
        message.len()
    );
}

/// A command that cannot start, and a repository without config, fail with a clear reason.
#[tokio::test]
async fn setup_errors_are_clear() {
    let fx = Fixture::new();
    let backend = fx.backend(&fx.root.join("no-such-agent"));
    let (result, _) = run(&backend, &input("e1", 1, "x", Some(REPO))).await;
    let Err(BackendError::Failed(message)) = result else {
        panic!("{result:?}")
    };
    assert!(
        message.contains("cannot start the agent command") && message.contains("no-such-agent"),
        "{message}"
    );

    let (result, _) = run(&backend, &input("e2", 1, "x", Some("acme/other"))).await;
    let Err(BackendError::Failed(message)) = result else {
        panic!("{result:?}")
    };
    assert_eq!(
        message,
        "repository acme/other has no [repos.\"acme/other\"] entry with a url in the config"
    );
    assert!(!fx.workdir.join("worktrees").join("e2").exists());
}

/// A repository whose url cannot be cloned fails naming the repository and git's complaint.
#[tokio::test]
async fn clone_errors_name_the_git_command() {
    let fx = Fixture::new();
    let script = fx.script("agent.sh", "true");
    std::fs::remove_dir_all(&fx.upstream).unwrap();
    let backend = fx.backend(&script);
    let (result, _) = run(&backend, &input("e3", 1, "x", Some(REPO))).await;
    let Err(BackendError::Failed(message)) = result else {
        panic!("{result:?}")
    };
    assert!(
        message.starts_with("cannot clone acme/api from "),
        "{message}"
    );
    assert!(message.contains("clone --mirror"), "{message}");
    assert!(!fx.mirror().exists());
}

/// (g) Plain-text output is progress, and the final message when nothing else is.
#[tokio::test]
async fn plain_text_is_the_final_message() {
    let fx = Fixture::new();
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null
echo "I looked at it."
echo
echo "Nothing to change.""#,
    );
    let backend = fx.backend(&script);
    let (outcome, progress) = run_ok(&backend, &input("g1", 1, "look", Some(REPO))).await;
    assert_eq!(outcome.summary, "I looked at it.\n\nNothing to change.");
    assert_eq!(progress, ["I looked at it.", "Nothing to change."]);
    assert_eq!(outcome.diff_stat.as_deref(), Some("no changes"));
}

/// (h) Codex's `exec --json` output.
#[tokio::test]
async fn codex_jsonl_is_understood() {
    let fx = Fixture::new();
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null
cat <<'EOF'
{"type":"thread.started","thread_id":"0199a213-81c0-7800-8aa1-bbab2a035a53"}
{"type":"turn.started"}
{"type":"item.completed","item":{"id":"item_0","type":"reasoning","text":"**Looking around**"}}
{"type":"item.started","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","status":"in_progress"}}
{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"README.md\n","exit_code":0,"status":"completed"}}
{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"I will add a file."}}
{"type":"item.completed","item":{"id":"item_3","type":"file_change","changes":[{"path":"src/lib.rs","kind":"add"}],"status":"completed"}}
{"type":"item.completed","item":{"id":"item_4","type":"agent_message","text":"Added src/lib.rs."}}
{"type":"turn.completed","usage":{"input_tokens":10,"cached_input_tokens":0,"output_tokens":5}}
EOF"#,
    );
    let backend = fx.backend(&script);
    let (outcome, progress) = run_ok(&backend, &input("h1", 1, "codex", Some(REPO))).await;
    assert_eq!(outcome.summary, "Added src/lib.rs.");
    // `ls` is no check: nothing in the result's Checks list.
    assert!(outcome.checks.is_empty(), "{:?}", outcome.checks);
    assert_eq!(
        progress,
        [
            "Ran `bash -lc ls`: exit 0\n```\nREADME.md\n```",
            "I will add a file.",
            "Edited src/lib.rs",
            "Added src/lib.rs."
        ]
    );
}

/// (h) Claude Code's `-p --output-format stream-json` output.
#[tokio::test]
async fn claude_stream_json_is_understood() {
    let fx = Fixture::new();
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null
cat <<'EOF'
{"type":"system","subtype":"init","session_id":"abc","tools":["Bash"]}
{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"Let me check the tests."}]}}
{"type":"assistant","message":{"role":"assistant","content":[{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"cargo test"}}]}}
{"type":"user","message":{"role":"user","content":[{"type":"tool_result","tool_use_id":"t1","content":"ok"}]}}
{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"All tests pass."}]}}
{"type":"result","subtype":"success","is_error":false,"duration_ms":1200,"num_turns":3,"result":"The tests pass; nothing to fix.","session_id":"abc"}
EOF"#,
    );
    let backend = fx.backend(&script);
    let (outcome, progress) = run_ok(&backend, &input("h2", 1, "claude", Some(REPO))).await;
    assert_eq!(outcome.summary, "The tests pass; nothing to fix.");
    assert_eq!(
        progress,
        [
            "Let me check the tests.",
            "Running `cargo test`",
            "Ran `cargo test`: passed\n```\nok\n```",
            "All tests pass."
        ]
    );
    // The command ran (the transcript says so): it is on the result's Checks list.
    assert_eq!(outcome.checks.len(), 1);
    assert_eq!(outcome.checks[0].line(), "`cargo test`: passed");
}

/// (i) Invalid UTF-8, huge lines and broken JSON on stdout are survived; a progress channel that
/// nobody reads never blocks the agent.
#[tokio::test]
async fn hostile_stdout_is_survived() {
    let fx = Fixture::new();
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null
printf 'bad bytes \xff\xfe\xc3 here\n'
head -c 3000000 /dev/zero | tr '\0' x; echo
printf '{"type":"progress","text":"'; head -c 200000 /dev/zero | tr '\0' y; echo '"}'
echo '{"type":'
echo 'null'
echo '[1,2,3]'
echo '{"type":"result","text":5}'
echo '{"type":"item.completed","item":null}'
echo '{"type":"assistant","message":{"content":"not a list"}}'
echo '{"type":"pr"}'
for i in $(seq 1 20000); do echo '{"type":"progress","text":"tick"}'; done
echo '{"type":"result","text":"survived"}'
printf 'last words without a newline'"#,
    );
    let backend = fx.backend(&script);
    // Capacity 1 and never read while the turn runs.
    let (tx, mut rx) = mpsc::channel(1);
    let turn = input("i1", 1, "hostile", Some(REPO));
    let result = tokio::time::timeout(
        Duration::from_secs(20),
        backend.run(&turn, tx, CancellationToken::new()),
    )
    .await
    .expect("a full progress channel must not block the agent");
    let outcome = result.expect("turn succeeds");
    assert_eq!(outcome.summary, "survived");
    let first = rx.try_recv().expect("one progress fits").text;
    assert_eq!(first, "bad bytes \u{fffd}\u{fffd}\u{fffd} here");
    assert!(outcome.pr_url.is_none());

    // Everything that reaches progress is bounded.
    let (tx, mut rx) = mpsc::channel(100_000);
    backend
        .run(
            &input("i1", 2, "again", Some(REPO)),
            tx,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    let mut texts = vec![];
    while let Ok(p) = rx.try_recv() {
        texts.push(p.text);
    }
    assert!(
        texts.iter().all(|t| t.chars().count() <= 1001),
        "a progress line is too long"
    );
    assert!(texts.iter().any(|t| t.starts_with("xxxx")));
    assert_eq!(
        texts.last().map(String::as_str),
        Some("last words without a newline")
    );
}

/// (j) A crashed attempt's uncommitted leftovers are gone on the retry; earlier turns stay.
#[tokio::test]
async fn retry_after_crash_starts_clean() {
    let fx = Fixture::new();
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null
if [ "$CHIME_TURN" = 1 ]; then echo one > a.txt; echo 'build/' > .gitignore; exit 0; fi
if [ ! -e "$HOME/crashed" ]; then
  touch "$HOME/crashed"
  echo two > a.txt; echo junk > junk.txt; mkdir -p build && echo o > build/out.o
  mkdir nested && git -C nested init --quiet
  echo "crashing" >&2; exit 1
fi
test "$(cat a.txt)" = one
test ! -e junk.txt
test ! -e build
test ! -e nested
echo '{"type":"result","text":"clean"}'"#,
    );
    let backend = fx.backend(&script);
    let (one, _) = run_ok(&backend, &input("j1", 1, "start", Some(REPO))).await;
    let turn2 = input("j1", 2, "crash", Some(REPO));
    let (result, _) = run(&backend, &turn2).await;
    assert!(
        matches!(&result, Err(BackendError::Failed(m)) if m.contains("crashing")),
        "{result:?}"
    );
    assert!(
        fx.worktree("j1").join("junk.txt").exists(),
        "leftovers stay until the retry"
    );

    let (retry, _) = run_ok(&backend, &turn2).await;
    assert_eq!(retry.summary, "clean");
    assert_eq!(retry.commit, one.commit, "the crash committed nothing");
}

/// A session without a repository works in a scratch git repository of its own.
#[tokio::test]
async fn scratch_sessions_without_a_repo() {
    let fx = Fixture::new();
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null
if [ "$CHIME_TURN" = 2 ]; then test -f notes.md; fi
echo "turn $CHIME_TURN" >> notes.md
pwd"#,
    );
    let backend = fx.backend(&script);
    let (one, _) = run_ok(&backend, &input("x1", 1, "take notes", None)).await;
    let scratch = fx.workdir.join("scratch").join("x1");
    assert_eq!(one.summary, scratch.display().to_string());
    assert_eq!(one.branch.as_deref(), Some("chime/x1"));
    assert!(one.diff_stat.unwrap().contains("notes.md"));
    let (two, _) = run_ok(&backend, &input("x1", 2, "more notes", None)).await;
    assert_eq!(
        std::fs::read_to_string(scratch.join("notes.md")).unwrap(),
        "turn 1\nturn 2\n"
    );
    assert_eq!(git(&scratch, &["rev-parse", "HEAD"]), two.commit.unwrap());
    assert!(!fx.workdir.join("mirrors").exists());
}

/// A worktree directory lost from disk is recreated from the session's branch.
#[tokio::test]
async fn lost_worktree_is_recreated_from_its_branch() {
    let fx = Fixture::new();
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null
if [ "$CHIME_TURN" = 2 ]; then test -f a.txt; fi
echo "$CHIME_TURN" > "turn$CHIME_TURN.txt"; echo x > a.txt"#,
    );
    let backend = fx.backend(&script);
    let (one, _) = run_ok(&backend, &input("w1", 1, "one", Some(REPO))).await;
    std::fs::remove_dir_all(fx.worktree("w1")).unwrap();
    let (two, _) = run_ok(&backend, &input("w1", 2, "two", Some(REPO))).await;
    assert_eq!(
        git(&fx.worktree("w1"), &["rev-parse", "HEAD^"]),
        one.commit.unwrap()
    );
    assert!(two.diff_stat.unwrap().contains("turn2.txt"));
}

/// Writes a bash agent that plants every hook and git setting it can into its worktree's git
/// directories, then changes a file. Anything planted that runs leaves a line in `marker`.
fn planting_agent(fx: &Fixture, marker: &Path) -> PathBuf {
    fx.script(
        "planter.sh",
        &format!(
            r#"cat >/dev/null
set +e
hook='#!/bin/sh
echo "$0 $*" >> {marker}'
common=$(git rev-parse --git-common-dir)
gitdir=$(git rev-parse --absolute-git-dir)
for dir in "$common/hooks" "$gitdir/hooks" "$PWD/.evil-hooks"; do
  mkdir -p "$dir"
  for name in pre-commit post-commit post-checkout post-index-change reference-transaction fsmonitor-watchman; do
    printf '%s\n' "$hook" > "$dir/$name" && chmod +x "$dir/$name"
  done
done 2>/dev/null
git config core.hooksPath "$PWD/.evil-hooks" 2>/dev/null
git config core.fsmonitor "$PWD/.evil-hooks/fsmonitor-watchman" 2>/dev/null
git config diff.external "$PWD/.evil-hooks/post-commit" 2>/dev/null
echo "$CHIME_TURN" > "turn$CHIME_TURN.txt"
if [ "$CHIME_TURN" = 2 ]; then echo started > "$HOME/started"; sleep 60; fi
echo '{{"type":"result","text":"planted"}}'"#,
            marker = marker.display()
        ),
    )
}

/// Hooks, an fsmonitor and an external diff that the agent configures never run when Chime
/// commits, checks out or diffs: not after the turn, not after a Stop, not in a later session of
/// the same repository. Unsandboxed, so that planting them succeeds.
#[tokio::test]
async fn planted_hooks_never_run_in_chimes_git() {
    let fx = Fixture::new();
    let marker = fx.out.join("hook-ran");
    let script = planting_agent(&fx, &marker);
    let backend = Arc::new(fx.backend(&script).with_sandbox(sandbox(SandboxMode::None)));
    let (one, _) = run_ok(&backend, &input("h1", 1, "plant", Some(REPO))).await;
    assert!(one.diff_stat.unwrap().contains("turn1.txt"));
    let config = std::fs::read_to_string(fx.mirror().join("config")).unwrap();
    assert!(
        config.contains("hooksPath"),
        "the agent's plant worked:\n{config}"
    );
    assert!(fx.mirror().join("hooks/post-commit").exists());

    // Turn 2 is stopped while it runs; its retry then commits.
    let cancel = CancellationToken::new();
    let turn2 = input("h1", 2, "plant again", Some(REPO));
    let running = {
        let (backend, turn2, cancel) = (backend.clone(), turn2.clone(), cancel.clone());
        let (tx, _rx) = mpsc::channel(10);
        tokio::spawn(async move { backend.run(&turn2, tx, cancel).await })
    };
    wait_for_file(&fx.home("h1").join("started")).await;
    cancel.cancel();
    assert!(matches!(
        running.await.unwrap(),
        Err(BackendError::Cancelled)
    ));
    let (three, _) = run_ok(&backend, &input("h1", 3, "after the stop", Some(REPO))).await;
    assert!(three.commit.is_some());

    // A later session of the same repository: fetch, worktree add (post-checkout), commit.
    let (other, _) = run_ok(&backend, &input("h2", 1, "later session", Some(REPO))).await;
    assert!(other.diff_stat.unwrap().contains("turn1.txt"));
    assert!(
        !marker.exists(),
        "a planted hook ran: {}",
        std::fs::read_to_string(&marker).unwrap_or_default()
    );
}

/// In the sandbox the same agent cannot plant anything in the mirror at all: its config and hooks
/// are read-only, and its worktree's `.git` pointer cannot be redirected.
#[tokio::test]
async fn sandboxed_agent_cannot_plant_in_the_mirror() {
    let fx = Fixture::new();
    let marker = fx.out.join("hook-ran");
    let script = planting_agent(&fx, &marker);
    let backend = fx.backend(&script);
    let (one, _) = run_ok(&backend, &input("m1", 1, "plant", Some(REPO))).await;
    assert!(one.diff_stat.unwrap().contains("turn1.txt"));
    let config = std::fs::read_to_string(fx.mirror().join("config")).unwrap();
    assert!(
        !config.contains("hooksPath") && !config.contains("fsmonitor"),
        "{config}"
    );
    assert!(!config.contains("external"), "{config}");
    assert!(!fx.mirror().join("hooks/post-commit").exists());
    let (_, _) = run_ok(&backend, &input("m2", 1, "plant", Some(REPO))).await;
    assert!(!marker.exists());
}

/// Repositories `a__b/c` and `a/b__c` once shared one mirror (`mirrors/a__b__c.git`), so a
/// session on one worked on the other's code.
#[tokio::test]
async fn similar_repository_names_get_their_own_mirrors() {
    let fx = Fixture::new();
    let mut repos = BTreeMap::new();
    for (name, content) in [("a__b/c", "first"), ("a/b__c", "second")] {
        let upstream = fx.root.join(name.replace('/', "-"));
        std::fs::create_dir_all(&upstream).unwrap();
        git(&upstream, &["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(upstream.join("which.txt"), content).unwrap();
        git(&upstream, &["add", "-A"]);
        commit(&upstream, "initial");
        repos.insert(
            name.to_string(),
            RepoConfig {
                url: upstream.display().to_string(),
                default_branch: Some("main".into()),
                ..Default::default()
            },
        );
    }
    let script = fx.script(
        "agent.sh",
        r#"cat >/dev/null; echo "{\"type\":\"result\",\"text\":\"$(cat which.txt)\"}""#,
    );
    let backend = CommandBackend::new(
        "test-agent".into(),
        vec![script.display().to_string()],
        Duration::from_secs(30),
        BTreeMap::new(),
        fx.workdir.clone(),
        repos,
    )
    .with_sandbox(sandbox(SandboxMode::Bwrap));
    let (one, _) = run_ok(&backend, &input("n1", 1, "which", Some("a__b/c"))).await;
    let (two, _) = run_ok(&backend, &input("n2", 1, "which", Some("a/b__c"))).await;
    assert_eq!(one.summary, "first");
    assert_eq!(two.summary, "second");
}

/// A session from an editor starts at the editor's commit; at its branch when the commit never
/// reached upstream; at the default branch when neither did.
#[tokio::test]
async fn a_session_starts_at_the_editors_commit() {
    let fx = Fixture::new();
    let first = git(&fx.upstream, &["rev-parse", "HEAD"]);
    git(&fx.upstream, &["checkout", "--quiet", "-b", "feature"]);
    std::fs::write(fx.upstream.join("feature.txt"), "f\n").unwrap();
    git(&fx.upstream, &["add", "-A"]);
    commit(&fx.upstream, "feature");
    let feature = git(&fx.upstream, &["rev-parse", "HEAD"]);
    git(&fx.upstream, &["checkout", "--quiet", "main"]);
    std::fs::write(fx.upstream.join("main.txt"), "m\n").unwrap();
    git(&fx.upstream, &["add", "-A"]);
    commit(&fx.upstream, "main moves on");
    let main = git(&fx.upstream, &["rev-parse", "HEAD"]);
    let script = fx.script("agent.sh", "cat >/dev/null\ngit rev-parse HEAD");
    let backend = fx.backend(&script);
    let base = |commit: &str, branch: &str| {
        Some(chime::backend::Base {
            commit: commit.into(),
            branch: branch.into(),
        })
    };
    for (session, start, expected) in [
        ("b1", base(&first, "main"), &first),
        ("b2", base(&"f".repeat(40), "feature"), &feature),
        ("b3", base(&"f".repeat(40), "--upload-pack=x"), &main),
        ("b4", None, &main),
    ] {
        let mut input = input(session, 1, "where am I?", Some(REPO));
        input.base = start;
        let (outcome, _) = run_ok(&backend, &input).await;
        assert_eq!(&outcome.summary, expected, "{session}");
    }
}
