//! The `command` backend: runs a CLI coding agent (Codex, Claude Code, or any program) once per
//! turn, in a git worktree that belongs to the session.
//!
//! # Where the agent runs
//!
//! Every session works on its own branch `chime/<session-id>`, checked out in its own worktree
//! `<workdir>/worktrees/<session-id>`. Worktrees hang off a local bare mirror of the repository,
//! `<workdir>/mirrors/<owner>__<name>.git`, cloned once with `git clone --mirror` and afterwards
//! only fetched (`git fetch --prune`) when a new session starts. A follow-up turn reuses the
//! worktree exactly as the previous turn left it (after `git reset --hard` and `git clean -ffdx`,
//! which drop the uncommitted leftovers of a crashed attempt), so the agent builds on its own
//! earlier work and starts within milliseconds. A request without a repository runs in
//! `<workdir>/scratch/<session-id>`, a fresh git repository of its own.
//!
//! After the agent exits successfully, everything it changed is committed on the branch
//! (`chime: turn <n>: <first line of the request>`). Chime never pushes; an agent that opens a pull
//! request pushes the branch itself (the worktree's `origin` is the configured repository URL).
//!
//! # Input and environment
//!
//! The agent gets the turn's full input (the rendered `agent_input.md.hbs`) on stdin, which is then
//! closed. Its environment is cleared except `PATH`, `HOME`, `LANG` and `TERM`, so Chime's own
//! secrets (`SLACK_*` tokens, `DATABASE_URL`) never reach it. On top come the backend's `env` table
//! and:
//!
//! | variable | value |
//! |---|---|
//! | `CHIME_SESSION_ID` | the session id |
//! | `CHIME_TASK_ID` | the task (turn) id |
//! | `CHIME_TURN` | the turn number, from 1 |
//! | `CHIME_REPO` | `owner/name` (unset for scratch runs) |
//! | `CHIME_BRANCH` | `chime/<session-id>` |
//!
//! The agent runs in a process group of its own: on timeout or stop the whole group gets SIGTERM,
//! then SIGKILL once the agent has exited (or after two seconds if it has not), so background
//! children die with it. Whatever is left in the group when the agent exits normally is killed too.
//!
//! # Progress protocol (stdout)
//!
//! The agent reports on stdout, one JSON object per line:
//!
//! | line | meaning |
//! |---|---|
//! | `{"type":"progress","text":"Running the tests"}` | a milestone, shown in the status message |
//! | `{"type":"result","text":"Fixed the off-by-one in …"}` | the final message, posted to the thread |
//! | `{"type":"pr","url":"https://github.com/acme/api/pull/7"}` | the pull request the agent opened |
//!
//! The JSONL of `codex exec --json` and of `claude -p --output-format stream-json --verbose` is
//! understood as is:
//!
//! - Codex `{"type":"item.completed","item":{"type":"agent_message","text":"…"}}` is progress, and
//!   the last one is the final message. Other completed items (`command_execution`, `file_change`,
//!   `mcp_tool_call`, `web_search`) become a short progress line.
//! - Claude `{"type":"assistant","message":{"content":[{"type":"text","text":"…"}]}}` is progress
//!   and the final message unless a later one comes; a `tool_use` part becomes a short progress
//!   line. `{"type":"result","result":"…"}` is the final message.
//!
//! Any line that is not a JSON object is plain text: it is shown as progress, and when no final
//! message arrives, the plain text (its last 4000 characters) is the final message. JSON objects
//! of any other shape are ignored. Lines longer than 64 KiB are cut at 64 KiB; invalid UTF-8 is
//! replaced. A progress line is shortened to 1000 characters.
//!
//! The last 4 KiB of stderr are kept for the error message when the agent exits with a non-zero
//! status.

use super::{AgentInput, Backend, BackendError, Outcome, Progress};
use crate::config::RepoConfig;
use crate::ids::RepoName;
use anyhow::{anyhow, bail, Context};
use async_trait::async_trait;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Longer stdout lines are cut here, so a runaway agent cannot make Chime buffer without bound.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// How much of stderr is kept for the error message.
const STDERR_TAIL_BYTES: usize = 4 * 1024;
/// How much plain text is kept as the final message when the agent sends no explicit one.
const PLAIN_TAIL_CHARS: usize = 4000;
/// Progress is shown in a status message; a milestone longer than this is noise.
const PROGRESS_MAX_CHARS: usize = 1000;
/// Between SIGTERM and SIGKILL when the agent is stopped.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// After the agent exits, how long to wait for the rest of its stdout.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// The only variables of Chime's own environment the agent inherits.
const INHERITED_ENV: [&str; 4] = ["PATH", "HOME", "LANG", "TERM"];
/// Variables that would point git at another repository than the one named with `-C`.
const GIT_LOCATION_ENV: [&str; 5] = [
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR",
];

/// Runs a CLI agent per turn in the session's git worktree. See the module documentation.
pub struct CommandBackend {
    name: String,
    command: Vec<String>,
    timeout: Duration,
    env: BTreeMap<String, String>,
    workdir: PathBuf,
    repos: BTreeMap<String, RepoConfig>,
    /// One lock per repository, held while its mirror is cloned or fetched and a worktree added,
    /// so two sessions starting at once never run git on the same mirror concurrently.
    mirror_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl CommandBackend {
    /// `command` is an argv (never run through a shell); `timeout` bounds a whole turn.
    pub fn new(
        name: String,
        command: Vec<String>,
        timeout: Duration,
        env: BTreeMap<String, String>,
        workdir: PathBuf,
        repos: BTreeMap<String, RepoConfig>,
    ) -> Self {
        // git resolves relative paths against its `-C` directory, so every path handed to it must
        // be absolute; a relative workdir is taken relative to Chime's working directory.
        let workdir = std::path::absolute(&workdir).unwrap_or(workdir);
        Self {
            name,
            command,
            timeout,
            env,
            workdir,
            repos,
            mirror_locks: std::sync::Mutex::default(),
        }
    }

    /// The bare mirror that worktrees of `repo` are made from.
    pub fn mirror_path(&self, repo: &RepoName) -> PathBuf {
        let dir = format!("{}.git", repo.as_str().replacen('/', "__", 1));
        self.workdir.join("mirrors").join(dir)
    }

    /// Where a session with a repository works.
    pub fn worktree_path(&self, session_id: &str) -> PathBuf {
        self.workdir.join("worktrees").join(session_id)
    }

    /// Where a session without a repository works.
    pub fn scratch_path(&self, session_id: &str) -> PathBuf {
        self.workdir.join("scratch").join(session_id)
    }

    fn mirror_lock(&self, repo: &RepoName) -> Arc<tokio::sync::Mutex<()>> {
        // A panic while holding this map lock cannot leave the map inconsistent, so poisoning is
        // safe to ignore.
        let mut locks = self
            .mirror_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        locks.entry(repo.as_str().to_string()).or_default().clone()
    }

    /// Finds the repository's config entry; the error is meant for the requester as is.
    fn repo_config(&self, repo: &RepoName) -> Result<&RepoConfig, BackendError> {
        match self.repos.get(repo.as_str()) {
            Some(config) if !config.url.trim().is_empty() => Ok(config),
            _ => Err(BackendError::Failed(format!(
                "repository {repo} has no [repos.\"{repo}\"] entry with a url in the config"
            ))),
        }
    }

    /// Makes the directory the turn runs in ready, and returns it.
    async fn prepare(&self, input: &AgentInput, branch: &str) -> anyhow::Result<PathBuf> {
        match &input.repo {
            Some(repo) => {
                let config = self.repo_config(repo)?;
                self.prepare_worktree(repo, config, input.session_id.as_str(), branch)
                    .await
            }
            None => {
                let dir = self.scratch_path(input.session_id.as_str());
                prepare_scratch(&dir, branch).await?;
                Ok(dir)
            }
        }
    }

    async fn prepare_worktree(
        &self,
        repo: &RepoName,
        config: &RepoConfig,
        session_id: &str,
        branch: &str,
    ) -> anyhow::Result<PathBuf> {
        let worktree = self.worktree_path(session_id);
        if worktree.join(".git").exists() {
            // A follow-up (or a retry): no fetch, so it starts at once from where the last turn
            // left the branch.
            reset_worktree(&worktree).await?;
            return Ok(worktree);
        }
        // RepoName's fields are public, so re-check that it cannot escape the mirrors directory.
        let repo = RepoName::parse(repo.as_str())
            .ok_or_else(|| anyhow!("repository name {repo:?} is not owner/name"))?;
        let lock = self.mirror_lock(&repo);
        let _guard = lock.lock().await;
        let mirror = self.mirror_path(&repo);
        let synced = if mirror.exists() {
            git(&mirror, ["fetch", "--prune", "--quiet", "origin"])
                .await
                .map(drop)
                .with_context(|| format!("cannot update the mirror of {repo}"))
        } else {
            clone_mirror(&config.url, &mirror)
                .await
                .with_context(|| format!("cannot clone {repo} from {}", config.url))
        };
        // The url may carry a token (`https://x-access-token:…@github.com/…`), and this error is
        // shown to the requester.
        synced.map_err(|e| anyhow!(redact_credentials(&format!("{e:#}"), &config.url)))?;
        let start = match &config.default_branch {
            Some(b) => format!("refs/heads/{b}"),
            None => "HEAD".to_string(),
        };
        add_worktree(&mirror, &worktree, branch, &start).await?;
        Ok(worktree)
    }

    /// Runs the agent process to its end and collects what it printed.
    async fn run_agent(
        &self,
        input: &AgentInput,
        dir: &Path,
        branch: &str,
        progress: &mpsc::Sender<Progress>,
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Result<Transcript, BackendError> {
        let (program, args) = self.command.split_first().ok_or_else(|| {
            BackendError::Failed(format!("backend {} has an empty command", self.name))
        })?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(dir)
            .env_clear()
            .envs(
                INHERITED_ENV
                    .iter()
                    .filter_map(|k| Some((*k, std::env::var_os(k)?))),
            )
            .envs(&self.env)
            .envs(chime_env(input, branch))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a stop reaches every process the agent started.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| {
            BackendError::Failed(format!("cannot start the agent command {program:?}: {e}"))
        })?;
        let group = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(ProcessGroup)
            .ok_or_else(|| BackendError::Failed("the agent exited before it started".into()))?;
        let guard = KillOnDrop(Some(group));

        feed_stdin(&mut child, input.rendered.clone());
        let mut transcript = Transcript::default();
        let mut stderr_tail = Vec::new();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let io = async {
            tokio::join!(
                read_stdout(stdout, &mut transcript, progress),
                read_tail(stderr, &mut stderr_tail, STDERR_TAIL_BYTES),
            );
        };
        let end = supervise(&mut child, group, io, deadline, cancel).await;
        guard.disarm();

        match end {
            End::Cancelled => Err(BackendError::Cancelled),
            End::TimedOut => Err(BackendError::TimedOut(self.timeout)),
            End::Exited(Err(e)) => Err(BackendError::Failed(format!(
                "cannot wait for the agent process: {e}"
            ))),
            End::Exited(Ok(status)) if status.success() => Ok(transcript),
            End::Exited(Ok(status)) => {
                Err(BackendError::Failed(exit_message(status, &stderr_tail)))
            }
        }
    }
}

#[async_trait]
impl Backend for CommandBackend {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(
        &self,
        input: &AgentInput,
        progress: mpsc::Sender<Progress>,
        cancel: CancellationToken,
    ) -> Result<Outcome, BackendError> {
        if cancel.is_cancelled() {
            return Err(BackendError::Cancelled);
        }
        // The timeout bounds the whole turn, git included: a hung fetch is as stuck as a hung agent.
        let deadline = Instant::now() + self.timeout;
        let session_id = input.session_id.as_str();
        if !is_safe_component(session_id) {
            return Err(BackendError::Failed(format!(
                "session id {session_id:?} cannot name a branch or a directory"
            )));
        }
        if let Some(repo) = &input.repo {
            self.repo_config(repo)?;
        }
        let branch = format!("chime/{session_id}");

        // Dropping the preparation on stop or timeout kills its git process (kill_on_drop); a
        // half-made worktree is repaired by the reset of the next attempt.
        let dir = tokio::select! {
            dir = self.prepare(input, &branch) => dir.map_err(failed)?,
            () = cancel.cancelled() => return Err(BackendError::Cancelled),
            () = tokio::time::sleep_until(deadline) => return Err(BackendError::TimedOut(self.timeout)),
        };
        let head_before = head(&dir).await.map_err(failed)?;

        let transcript = self
            .run_agent(input, &dir, &branch, &progress, &cancel, deadline)
            .await?;

        commit_turn(&dir, input).await.map_err(failed)?;
        let commit = head(&dir).await.map_err(failed)?;
        let diff_stat = diff_stat(&dir, &head_before, &commit)
            .await
            .map_err(failed)?;
        Ok(Outcome {
            summary: transcript.final_message(),
            branch: Some(branch),
            commit: Some(commit),
            diff_stat: Some(diff_stat),
            pr_url: transcript.pr_url,
            dry_run: false,
        })
    }
}

/// The boundary between internal errors and what the requester sees: the whole context chain.
fn failed(e: anyhow::Error) -> BackendError {
    match e.downcast::<BackendError>() {
        Ok(e) => e,
        Err(e) => BackendError::Failed(format!("{e:#}")),
    }
}

/// Replaces the credentials of `url` (its `user:password@` part) wherever they appear in `text`.
fn redact_credentials(text: &str, url: &str) -> String {
    let userinfo = url.split_once("://").and_then(|(_, rest)| {
        let authority = rest.split('/').next().unwrap_or(rest);
        authority.rsplit_once('@').map(|(userinfo, _)| userinfo)
    });
    match userinfo {
        Some(userinfo) if !userinfo.is_empty() => text.replace(&format!("{userinfo}@"), "***@"),
        _ => text.to_string(),
    }
}

/// Session ids become a branch name and a directory name, so only plain characters are allowed.
fn is_safe_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn chime_env(input: &AgentInput, branch: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("CHIME_SESSION_ID", input.session_id.to_string()),
        ("CHIME_TASK_ID", input.task_id.to_string()),
        ("CHIME_TURN", input.turn_no.to_string()),
        ("CHIME_BRANCH", branch.to_string()),
    ];
    if let Some(repo) = &input.repo {
        env.push(("CHIME_REPO", repo.to_string()));
    }
    env
}

// ---------------------------------------------------------------------------------------------
// git
// ---------------------------------------------------------------------------------------------

/// Runs `git -C <dir> <args>` and returns its stdout; the error names the command and its stderr.
async fn git<I, S>(dir: &Path, args: I) -> anyhow::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<S> = args.into_iter().collect();
    let output = git_output(dir, &args).await?;
    if !output.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            describe_git(dir, &args),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `git -C <dir> <args>`, whatever its exit status.
async fn git_output<S: AsRef<OsStr>>(
    dir: &Path,
    args: &[S],
) -> anyhow::Result<std::process::Output> {
    let mut cmd = Command::new("git");
    cmd.arg("-C").arg(dir).args(args);
    for var in GIT_LOCATION_ENV {
        cmd.env_remove(var);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0") // fail instead of waiting for a password nobody types
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("cannot run `{}`", describe_git(dir, args)))
}

fn describe_git<S: AsRef<OsStr>>(dir: &Path, args: &[S]) -> String {
    let mut text = format!("git -C {}", dir.display());
    for arg in args {
        text.push(' ');
        text.push_str(&arg.as_ref().to_string_lossy());
    }
    text
}

/// Clones `url` as a bare mirror at `mirror`, atomically: a clone that dies halfway leaves only a
/// `.partial` directory, which the next attempt removes, never a broken mirror.
async fn clone_mirror(url: &str, mirror: &Path) -> anyhow::Result<()> {
    let parent = mirror
        .parent()
        .ok_or_else(|| anyhow!("mirror path {} has no parent", mirror.display()))?;
    tokio::fs::create_dir_all(parent)
        .await
        .with_context(|| format!("cannot create {}", parent.display()))?;
    // git runs with `-C <mirrors dir>`, but a local path in the config is meant relative to
    // Chime's working directory.
    let url = match Path::new(url) {
        local if local.exists() => std::path::absolute(local)
            .with_context(|| format!("cannot resolve the path {url}"))?
            .into_os_string(),
        _ => url.into(),
    };
    let partial = mirror.with_extension("git.partial");
    if partial.exists() {
        tokio::fs::remove_dir_all(&partial)
            .await
            .with_context(|| format!("cannot remove {}", partial.display()))?;
    }
    git(
        parent,
        [
            OsStr::new("clone"),
            OsStr::new("--mirror"),
            OsStr::new("--quiet"),
            OsStr::new("--"),
            &url,
            partial.as_os_str(),
        ],
    )
    .await?;
    // With `mirror = true`, a plain `git push` by the agent would force every ref of the mirror
    // upstream and delete the branches created since the last fetch. Fetching keeps `+refs/*:refs/*`.
    git(&partial, ["config", "remote.origin.mirror", "false"]).await?;
    // Session branches exist only here: keep `fetch --prune` from deleting them, and from
    // overwriting them with a same-named upstream branch (say, after the agent pushed one).
    git(
        &partial,
        [
            "config",
            "--add",
            "remote.origin.fetch",
            "^refs/heads/chime/*",
        ],
    )
    .await?;
    tokio::fs::rename(&partial, mirror)
        .await
        .with_context(|| format!("cannot move {} into place", partial.display()))?;
    Ok(())
}

/// Checks out `branch` in a new worktree, creating the branch from `start` if it is new.
async fn add_worktree(
    mirror: &Path,
    worktree: &Path,
    branch: &str,
    start: &str,
) -> anyhow::Result<()> {
    // A worktree directory without `.git` is the remains of an interrupted `worktree add`, and a
    // registration whose directory is gone would make `worktree add` refuse: clear both.
    if worktree.exists() {
        tokio::fs::remove_dir_all(worktree)
            .await
            .with_context(|| format!("cannot remove the broken worktree {}", worktree.display()))?;
    }
    git(mirror, ["worktree", "prune"]).await?;
    let branch_ref = format!("refs/heads/{branch}");
    let exists = git_output(mirror, &["rev-parse", "--verify", "--quiet", &branch_ref])
        .await?
        .status
        .success();
    let path = worktree.as_os_str();
    if exists {
        // The session's worktree was lost but its branch survives: continue from the branch.
        git(
            mirror,
            [
                OsStr::new("worktree"),
                OsStr::new("add"),
                path,
                OsStr::new(branch),
            ],
        )
        .await?;
    } else {
        let verify = format!("{start}^{{commit}}");
        if !git_output(mirror, &["rev-parse", "--verify", "--quiet", &verify])
            .await?
            .status
            .success()
        {
            bail!(
                "the mirror {} has no {start} to start from",
                mirror.display()
            );
        }
        git(
            mirror,
            [
                OsStr::new("worktree"),
                OsStr::new("add"),
                OsStr::new("-b"),
                OsStr::new(branch),
                path,
                OsStr::new(start),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Drops everything not committed: what a crashed attempt left must not leak into the retry,
/// while the commits of earlier turns stay. `-ff` also removes nested repositories.
async fn reset_worktree(dir: &Path) -> anyhow::Result<()> {
    git(dir, ["reset", "--hard", "--quiet"]).await?;
    git(dir, ["clean", "-ffdxq"]).await?;
    Ok(())
}

/// A scratch directory is a git repository too, so diff stats and commits work the same way.
async fn prepare_scratch(dir: &Path, branch: &str) -> anyhow::Result<()> {
    if !dir.join(".git").exists() {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let initial_branch = format!("--initial-branch={branch}");
        git(dir, ["init", "--quiet", &initial_branch]).await?;
    }
    if head(dir).await.is_err() {
        // A first commit gives every turn a HEAD to diff against.
        let mut args = identity_args();
        args.extend([
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            "chime: scratch space",
        ]);
        git(dir, args).await?;
    }
    reset_worktree(dir).await
}

async fn head(dir: &Path) -> anyhow::Result<String> {
    Ok(git(dir, ["rev-parse", "HEAD"]).await?.trim().to_string())
}

/// `-c` options that make Chime's commits independent of the host's git configuration.
fn identity_args() -> Vec<&'static str> {
    vec![
        "-c",
        "user.name=Chime",
        "-c",
        "user.email=chime@localhost",
        "-c",
        "commit.gpgsign=false",
    ]
}

/// Commits whatever the agent left uncommitted, if anything.
async fn commit_turn(dir: &Path, input: &AgentInput) -> anyhow::Result<()> {
    git(dir, ["add", "-A"]).await?;
    let staged = git_output(dir, &["diff", "--cached", "--quiet"]).await?;
    match staged.status.code() {
        Some(0) => return Ok(()), // nothing to commit
        Some(1) => {}
        _ => bail!(
            "`git -C {} diff --cached --quiet` failed ({}): {}",
            dir.display(),
            staged.status,
            String::from_utf8_lossy(&staged.stderr).trim()
        ),
    }
    let message = commit_message(input.turn_no, &input.prompt);
    let mut args = identity_args();
    args.extend(["commit", "--quiet", "--no-verify", "-m", &message]);
    git(dir, args).await?;
    Ok(())
}

fn commit_message(turn_no: i64, prompt: &str) -> String {
    let first_line = prompt.trim().lines().next().unwrap_or("").trim();
    let subject: String = first_line.chars().take(72).collect();
    format!("chime: turn {turn_no}: {subject}")
}

async fn diff_stat(dir: &Path, before: &str, after: &str) -> anyhow::Result<String> {
    if before == after {
        return Ok("no changes".into());
    }
    let range = format!("{before}..{after}");
    // Colour or an external diff tool from the host's git config must not leak into the stat.
    let stat = git(
        dir,
        ["diff", "--no-color", "--no-ext-diff", "--stat", &range],
    )
    .await?;
    let stat = stat.trim_end();
    Ok(if stat.is_empty() {
        "no changes".into()
    } else {
        stat.to_string()
    })
}

// ---------------------------------------------------------------------------------------------
// The agent process
// ---------------------------------------------------------------------------------------------

/// How the agent process ended.
enum End {
    Exited(std::io::Result<ExitStatus>),
    TimedOut,
    Cancelled,
}

/// A process group, by its id (the id of its leader).
#[derive(Clone, Copy)]
struct ProcessGroup(i32);

impl ProcessGroup {
    fn signal(self, signal: i32) {
        // killpg(0) or killpg(1) would hit Chime's own group or every process: never.
        if self.0 > 1 {
            // SAFETY: killpg has no memory-safety preconditions; a group that is already gone
            // only yields ESRCH, which is fine to ignore.
            unsafe {
                libc::killpg(self.0, signal);
            }
        }
    }
}

/// Kills the agent's group if `run` is dropped halfway (the caller gave up on the turn).
struct KillOnDrop(Option<ProcessGroup>);

impl KillOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            group.signal(libc::SIGKILL);
        }
    }
}

/// Writes the prompt and closes stdin, in the background: an agent that reads its input late (or
/// never) must not block Chime on a full pipe.
fn feed_stdin(child: &mut Child, prompt: String) {
    if let Some(mut stdin) = child.stdin.take() {
        tokio::spawn(async move {
            // An agent that exits without reading everything is not an error here.
            if let Err(e) = stdin.write_all(prompt.as_bytes()).await {
                tracing::debug!("agent stopped reading its input: {e}");
            }
            drop(stdin);
        });
    }
}

/// Waits for the agent to exit, the deadline, or a stop, while `io` reads its output.
async fn supervise(
    child: &mut Child,
    group: ProcessGroup,
    io: impl std::future::Future<Output = ()>,
    deadline: Instant,
    cancel: &CancellationToken,
) -> End {
    tokio::pin!(io);
    let mut io_done = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            () = &mut io, if !io_done => io_done = true,
            () = tokio::time::sleep_until(deadline) => {
                terminate(child, group).await;
                return End::TimedOut;
            }
            () = cancel.cancelled() => {
                terminate(child, group).await;
                return End::Cancelled;
            }
        }
    };
    // The agent is done; whatever it left running in its group (a dev server, a stuck child) is
    // killed, which also closes the pipes those processes hold so the reads below can end.
    group.signal(libc::SIGKILL);
    if !io_done && tokio::time::timeout(DRAIN_GRACE, &mut io).await.is_err() {
        tracing::warn!("the agent's output did not end after it exited; ignoring the rest");
    }
    End::Exited(status)
}

/// SIGTERM to the whole group; SIGKILL to whatever is left once the agent has exited, or after
/// the grace period if it has not.
///
/// The grace period follows the agent itself, not every member of its group: orphaned
/// grandchildren stay zombies (still counted in the group) until init reaps them, which some
/// container inits do only every few seconds, and a Chime running as PID 1 never does.
async fn terminate(child: &mut Child, group: ProcessGroup) {
    group.signal(libc::SIGTERM);
    let _ = tokio::time::timeout(KILL_GRACE, child.wait()).await;
    group.signal(libc::SIGKILL);
    if let Err(e) = child.wait().await {
        tracing::warn!("cannot reap the stopped agent: {e}");
    }
}

fn exit_message(status: ExitStatus, stderr_tail: &[u8]) -> String {
    let stderr = String::from_utf8_lossy(stderr_tail);
    let stderr = match stderr.trim() {
        "" => "(nothing on stderr)",
        s => s,
    };
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("agent exited with status {code}: {stderr}"),
        (None, Some(signal)) => format!("agent was killed by signal {signal}: {stderr}"),
        (None, None) => format!("agent failed ({status}): {stderr}"),
    }
}

/// Keeps the last `limit` bytes of `reader` in `tail`.
async fn read_tail<R: AsyncRead + Unpin>(reader: Option<R>, tail: &mut Vec<u8>, limit: usize) {
    let Some(mut reader) = reader else { return };
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                tail.extend_from_slice(&chunk[..n]);
                // Trim in batches rather than on every read.
                if tail.len() > 2 * limit {
                    tail.drain(..tail.len() - limit);
                }
            }
            Err(e) => {
                tracing::debug!("cannot read the agent's stderr: {e}");
                break;
            }
        }
    }
    if tail.len() > limit {
        tail.drain(..tail.len() - limit);
    }
}

/// Reads the agent's stdout line by line into `transcript`, forwarding progress.
async fn read_stdout<R: AsyncRead + Unpin>(
    reader: Option<R>,
    transcript: &mut Transcript,
    progress: &mpsc::Sender<Progress>,
) {
    let Some(reader) = reader else { return };
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        match read_capped_line(&mut reader, &mut line, MAX_LINE_BYTES).await {
            Ok(true) => {
                let text = String::from_utf8_lossy(&line);
                transcript.apply(parse_line(&text), progress);
            }
            Ok(false) => break,
            Err(e) => {
                tracing::debug!("cannot read the agent's stdout: {e}");
                break;
            }
        }
    }
}

/// Reads one line into `buf` (without its newline), keeping at most `cap` bytes of it and
/// skipping the rest. Returns `false` at the end of the input.
async fn read_capped_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<bool> {
    buf.clear();
    let mut read_any = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(read_any);
        }
        read_any = true;
        let newline = chunk.iter().position(|&b| b == b'\n');
        let content = &chunk[..newline.unwrap_or(chunk.len())];
        let room = cap.saturating_sub(buf.len());
        buf.extend_from_slice(&content[..content.len().min(room)]);
        let consumed = newline.map_or(chunk.len(), |i| i + 1);
        reader.consume(consumed);
        if newline.is_some() {
            return Ok(true);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The stdout protocol
// ---------------------------------------------------------------------------------------------

/// What one line of the agent's stdout means.
#[derive(Debug, PartialEq)]
enum Event {
    /// A milestone.
    Progress(String),
    /// A milestone that is also the final message, unless a later message or a result follows.
    Message(String),
    /// The final message.
    Result(String),
    PullRequest(String),
    /// A line that is not a JSON object.
    Plain(String),
    Ignored,
}

/// What the agent said during the turn.
#[derive(Debug, Default)]
struct Transcript {
    result: Option<String>,
    last_message: Option<String>,
    plain: String,
    pr_url: Option<String>,
}

impl Transcript {
    fn apply(&mut self, event: Event, progress: &mpsc::Sender<Progress>) {
        match event {
            Event::Progress(text) => send_progress(progress, &text),
            Event::Message(text) => {
                send_progress(progress, &text);
                self.last_message = Some(text);
            }
            Event::Result(text) => self.result = Some(text),
            Event::PullRequest(url) => self.pr_url = Some(url),
            Event::Plain(text) => {
                send_progress(progress, &text);
                self.plain.push_str(&text);
                self.plain.push('\n');
                // Trim in batches (a char is at most 4 bytes, so this keeps more than enough); the
                // exact cut happens in `final_message`.
                if self.plain.len() > 16 * PLAIN_TAIL_CHARS {
                    self.plain = tail_chars(&self.plain, PLAIN_TAIL_CHARS).to_string();
                }
            }
            Event::Ignored => {}
        }
    }

    /// An explicit result wins, then the last agent message, then the tail of the plain text.
    fn final_message(&self) -> String {
        if let Some(text) = self.result.as_ref().or(self.last_message.as_ref()) {
            return text.trim().to_string();
        }
        match tail_chars(self.plain.trim(), PLAIN_TAIL_CHARS) {
            // An empty reply cannot be posted, and silence would look like a hang.
            "" => "The agent finished without a message.".to_string(),
            text => text.to_string(),
        }
    }
}

/// Never waits: a slow consumer of progress must not stall the agent, so a milestone that does
/// not fit is dropped (the caller only shows the latest one anyway).
fn send_progress(progress: &mpsc::Sender<Progress>, text: &str) {
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let text = match text.char_indices().nth(PROGRESS_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    };
    let _ = progress.try_send(Progress { text });
}

/// The last `n` characters of `s`.
fn tail_chars(s: &str, n: usize) -> &str {
    match s.char_indices().rev().nth(n.saturating_sub(1)) {
        Some((start, _)) if n > 0 => &s[start..],
        _ if n == 0 => "",
        _ => s,
    }
}

fn parse_line(line: &str) -> Event {
    let line = line.strip_suffix('\r').unwrap_or(line);
    match serde_json::from_str::<Value>(line) {
        Ok(value @ Value::Object(_)) => parse_json(&value),
        _ => Event::Plain(line.to_string()),
    }
}

fn parse_json(v: &Value) -> Event {
    let text_of = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    match v.get("type").and_then(Value::as_str) {
        Some("progress") => text_of("text").map_or(Event::Ignored, Event::Progress),
        // Chime's own result carries `text`; Claude's carries `result`.
        Some("result") => text_of("text")
            .or_else(|| text_of("result"))
            .map_or(Event::Ignored, Event::Result),
        Some("pr") => match text_of("url") {
            Some(url) => crate::backend::valid_pr_url(&url).map_or_else(
                || {
                    tracing::warn!(chars = url.chars().count(), "ignoring a pull request URL that is not a plain http(s) URL of at most 500 characters");
                    Event::Ignored
                },
                Event::PullRequest,
            ),
            None => Event::Ignored,
        },
        Some("item.completed") => v.get("item").map_or(Event::Ignored, parse_codex_item),
        Some("assistant") => v
            .pointer("/message/content")
            .and_then(Value::as_array)
            .map_or(Event::Ignored, |parts| parse_claude_content(parts)),
        _ => Event::Ignored,
    }
}

/// A completed item of `codex exec --json`.
fn parse_codex_item(item: &Value) -> Event {
    let field = |key: &str| item.get(key).and_then(Value::as_str);
    match field("type") {
        Some("agent_message") => field("text").map_or(Event::Ignored, |t| Event::Message(t.into())),
        Some("command_execution") => field("command").map_or(Event::Ignored, |c| {
            Event::Progress(format!("Ran `{}`", shorten(c, 200)))
        }),
        Some("file_change") => {
            let paths: Vec<&str> = item
                .get("changes")
                .and_then(Value::as_array)
                .map(|changes| {
                    changes
                        .iter()
                        .filter_map(|c| c.get("path").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            if paths.is_empty() {
                Event::Progress("Edited files".into())
            } else {
                Event::Progress(format!("Edited {}", shorten(&paths.join(", "), 300)))
            }
        }
        Some("mcp_tool_call") => match (field("server"), field("tool")) {
            (Some(server), Some(tool)) => Event::Progress(format!("Called {server}.{tool}")),
            _ => Event::Ignored,
        },
        Some("web_search") => field("query").map_or(Event::Ignored, |q| {
            Event::Progress(format!("Searched the web for {}", shorten(q, 200)))
        }),
        _ => Event::Ignored,
    }
}

/// The content parts of a Claude `assistant` message.
fn parse_claude_content(parts: &[Value]) -> Event {
    let part_type = |p: &Value| p.get("type").and_then(Value::as_str).map(str::to_string);
    let texts: Vec<&str> = parts
        .iter()
        .filter(|p| part_type(p).as_deref() == Some("text"))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    if !texts.is_empty() {
        return Event::Message(texts.join("\n"));
    }
    let tool = parts
        .iter()
        .filter(|p| part_type(p).as_deref() == Some("tool_use"))
        .find_map(|p| p.get("name").and_then(Value::as_str));
    tool.map_or(Event::Ignored, |name| {
        Event::Progress(format!("Using {name}"))
    })
}

fn shorten(s: &str, max_chars: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chime_lines() {
        assert_eq!(
            parse_line(r#"{"type":"progress","text":"Running tests"}"#),
            Event::Progress("Running tests".into())
        );
        assert_eq!(
            parse_line(r#"{"type":"result","text":"Done"}"#),
            Event::Result("Done".into())
        );
        assert_eq!(
            parse_line(r#"{"type":"pr","url":"https://x/pull/1"}"#),
            Event::PullRequest("https://x/pull/1".into())
        );
    }

    #[test]
    fn codex_lines() {
        let msg = r#"{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"All done"}}"#;
        assert_eq!(parse_line(msg), Event::Message("All done".into()));
        let cmd = r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"","exit_code":0,"status":"completed"}}"#;
        assert_eq!(parse_line(cmd), Event::Progress("Ran `bash -lc ls`".into()));
        let edit = r#"{"type":"item.completed","item":{"type":"file_change","changes":[{"path":"a.rs","kind":"update"},{"path":"b.rs","kind":"add"}]}}"#;
        assert_eq!(
            parse_line(edit),
            Event::Progress("Edited a.rs, b.rs".into())
        );
        let reasoning = r#"{"type":"item.completed","item":{"type":"reasoning","text":"hmm"}}"#;
        assert_eq!(parse_line(reasoning), Event::Ignored);
        assert_eq!(
            parse_line(r#"{"type":"turn.completed","usage":{}}"#),
            Event::Ignored
        );
    }

    #[test]
    fn claude_lines() {
        let text =
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Looking"}]}}"#;
        assert_eq!(parse_line(text), Event::Message("Looking".into()));
        let tool = r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Bash","input":{}}]}}"#;
        assert_eq!(parse_line(tool), Event::Progress("Using Bash".into()));
        let result =
            r#"{"type":"result","subtype":"success","is_error":false,"result":"Fixed it"}"#;
        assert_eq!(parse_line(result), Event::Result("Fixed it".into()));
    }

    #[test]
    fn other_lines() {
        assert_eq!(parse_line("hello"), Event::Plain("hello".into()));
        assert_eq!(parse_line("hello\r"), Event::Plain("hello".into()));
        assert_eq!(parse_line("42"), Event::Plain("42".into()));
        assert_eq!(
            parse_line(r#"{"type":"#),
            Event::Plain(r#"{"type":"#.into())
        );
        assert_eq!(parse_line(r#"{"type":"result","text":5}"#), Event::Ignored);
        assert_eq!(parse_line(r#"{"hello":"world"}"#), Event::Ignored);
    }

    #[test]
    fn final_message_precedence() {
        let (tx, _rx) = mpsc::channel(100);
        let mut t = Transcript::default();
        assert_eq!(t.final_message(), "The agent finished without a message.");
        t.apply(Event::Plain("plain".into()), &tx);
        assert_eq!(t.final_message(), "plain");
        t.apply(Event::Message("message".into()), &tx);
        assert_eq!(t.final_message(), "message");
        t.apply(Event::Result("result".into()), &tx);
        t.apply(Event::Message("later message".into()), &tx);
        assert_eq!(t.final_message(), "result");
    }

    #[test]
    fn plain_text_keeps_its_tail() {
        let (tx, _rx) = mpsc::channel(1);
        let mut t = Transcript::default();
        for i in 0..10_000 {
            t.apply(Event::Plain(format!("line {i} é")), &tx);
        }
        let text = t.final_message();
        assert_eq!(text.chars().count(), PLAIN_TAIL_CHARS);
        assert!(text.ends_with("line 9999 é"));
    }

    #[test]
    fn tails_respect_char_boundaries() {
        assert_eq!(tail_chars("héllo", 4), "éllo");
        assert_eq!(tail_chars("hi", 10), "hi");
        assert_eq!(tail_chars("hi", 0), "");
        assert_eq!(shorten("ééé", 2), "éé…");
    }

    #[test]
    fn commit_messages() {
        assert_eq!(
            commit_message(2, "  Fix the bug\nmore"),
            "chime: turn 2: Fix the bug"
        );
        let long = "x".repeat(100);
        assert_eq!(
            commit_message(1, &long),
            format!("chime: turn 1: {}", "x".repeat(72))
        );
    }

    #[tokio::test]
    async fn capped_lines() {
        let data = format!("short\n{}\nlast", "y".repeat(100));
        let mut reader = BufReader::with_capacity(16, data.as_bytes());
        let mut buf = Vec::new();
        assert!(read_capped_line(&mut reader, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"short");
        assert!(read_capped_line(&mut reader, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"yyyyyyyyyy");
        assert!(read_capped_line(&mut reader, &mut buf, 10).await.unwrap());
        assert_eq!(buf, b"last");
        assert!(!read_capped_line(&mut reader, &mut buf, 10).await.unwrap());
    }

    #[test]
    fn credentials_are_redacted() {
        let url = "https://x-access-token:ghs_secret@github.com/acme/api.git";
        let text = format!("cannot clone acme/api from {url}: fatal: {url} not found");
        let redacted = redact_credentials(&text, url);
        assert!(!redacted.contains("ghs_secret"), "{redacted}");
        assert!(
            redacted.contains("https://***@github.com/acme/api.git"),
            "{redacted}"
        );
        let token_only = "https://ghp_abc@github.com/acme/api";
        assert_eq!(
            redact_credentials(token_only, token_only),
            "https://***@github.com/acme/api"
        );
        assert_eq!(
            redact_credentials("git@host: no", "git@host:acme/api"),
            "git@host: no"
        );
        assert_eq!(
            redact_credentials("/srv/git/api", "/srv/git/api"),
            "/srv/git/api"
        );
    }

    #[test]
    fn session_ids_are_checked() {
        assert!(is_safe_component("0123abcd-ef_9"));
        for bad in ["", "..", "a/b", "a b", "é", "a\nb"] {
            assert!(!is_safe_component(bad), "{bad:?}");
        }
    }
}
