//! The `command` backend: runs a CLI coding agent (Codex, Claude Code, or any program) once per
//! turn, in a git worktree that belongs to the session.
//!
//! # Where the agent runs
//!
//! Every session works on its own branch `chime/<session-id>`, checked out in a worktree of its
//! own per repository, `<workdir>/worktrees/<session-id>/<owner>/<name>` (a session whose turns
//! name different repositories gets one worktree for each). Worktrees hang off a local bare mirror
//! of the repository, `<workdir>/mirrors/<owner>/<name>.git`, cloned once with `git clone --mirror` and afterwards
//! only fetched (`git fetch --prune`) when a new session starts. A follow-up turn reuses the
//! worktree exactly as the previous turn left it (after `git reset --hard` and `git clean -ffdx`,
//! which drop the uncommitted leftovers of a crashed attempt), so the agent builds on its own
//! earlier work and starts within milliseconds. A request without a repository runs in
//! `<workdir>/scratch/<session-id>`, a fresh git repository of its own. Session ids, owners and
//! names never contain `/`, so these paths are distinct for distinct sessions and repositories.
//!
//! After the agent exits successfully, everything it changed is committed on the branch
//! (`chime: turn <n>: <first line of the request>`). The agent never gets credentials to push. With
//! `GITHUB_TOKEN` set, Chime itself pushes the branch and opens (or updates) a pull request once the
//! turn has ended, as a step of the outbox (`github::publish`). An agent that opens a pull request
//! itself reports it with a `pr` line.
//!
//! # Best-of-N
//!
//! A turn with `variants = N > 1` runs N agents at once, attempt k in its own worktree, home and
//! branch named `<session-id>-<k>` (`worktrees/<session-id>-<k>/…`, `chime/<session-id>-<k>`),
//! under the turn's one deadline and Stop. The outcome lists every attempt; the turn fails only
//! when all of them did.
//!
//! # Input and environment
//!
//! The agent gets the turn's full input (the rendered `templates/agent/input.md.hbs`) on stdin, which is then
//! closed. Its environment is cleared except `PATH`, `LANG` and `TERM`, so Chime's own secrets
//! (`SLACK_*` tokens, `DATABASE_URL`) never reach it. On top come `HOME`, the backend's `env` table
//! (which may override `HOME`) and the `CHIME_*` variables:
//!
//! | variable | value |
//! |---|---|
//! | `HOME` | `<workdir>/homes/<session-id>`, the session's own, kept across its turns |
//! | `CHIME_SESSION_ID` | the session id |
//! | `CHIME_TASK_ID` | the task (turn) id |
//! | `CHIME_TURN` | the turn number, from 1 |
//! | `CHIME_REPO` | `owner/name` (unset for scratch runs) |
//! | `CHIME_BRANCH` | `chime/<session-id>` |
//! | `CHIME_MODE` | `work`, or `plan` for a plan-only turn (`approval = "plan"`), run in `<session-id>-plan` and thrown away |
//!
//! # Isolation
//!
//! Unless the backend says `sandbox = "none"`, the agent runs in a bubblewrap sandbox that shows
//! it only the system directories, its worktree, its home and its repository's mirror (see
//! `sandbox.rs` for exactly what it can see and write, and what it can still do).
//!
//! The agent runs in a process group of its own (in the sandbox: under the sandbox's init): on
//! timeout or stop the group gets SIGTERM, then SIGKILL once the agent has exited (or after two
//! seconds if it has not), so background children die with it. Whatever is left when the agent
//! exits normally is killed too.
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
//! | `{"type":"checks","text":"cargo test: 41 passed"}` | what its own checks said (best-of-N shows it) |
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

use super::{AgentInput, Attempt, Backend, BackendError, Outcome, Progress};
use crate::config::RepoConfig;
use crate::ids::RepoName;
use anyhow::{anyhow, Context};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, PoisonError};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub mod branches;
pub mod cleanup;
mod evidence;
mod git;
mod process;
mod protocol;
mod sandbox;
mod setup;

pub use sandbox::{find_bwrap, not_installed, Sandbox, ETC_READ_ONLY};

use git::{
    add_worktree, clone_mirror, commit_turn, diff_stat, head, prepare_scratch, redact_credentials,
    reset_worktree,
};
use process::{
    exit_message, feed_stdin, read_stdout, read_tail, supervise, AgentGroup, End, KillOnDrop,
    STDERR_TAIL_BYTES,
};
use protocol::Transcript;
use sandbox::{worktree_mounts, Mount};

/// The only variables of Chime's own environment the agent inherits.
const INHERITED_ENV: [&str; 3] = ["PATH", "LANG", "TERM"];

/// Runs a CLI agent per turn in the session's git worktree. See the module documentation.
pub struct CommandBackend {
    name: String,
    command: Vec<String>,
    timeout: Duration,
    env: BTreeMap<String, String>,
    workdir: PathBuf,
    repos: BTreeMap<String, RepoConfig>,
    sandbox: Sandbox,
    egress: crate::egress::Egress,
    /// One lock per repository, held while its mirror is cloned or fetched and a worktree added,
    /// so two sessions starting at once never run git on the same mirror concurrently.
    mirror_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Where one turn runs: the directory and what the sandbox shows besides the system.
struct Workspace {
    dir: PathBuf,
    home: PathBuf,
    mounts: Vec<Mount>,
    /// The repository's setup cache, once its setup ran (or was cached): shown read-only.
    cache: Option<PathBuf>,
}

impl CommandBackend {
    /// `command` is an argv (never run through a shell); `timeout` bounds a whole turn. The agent
    /// runs in the default bubblewrap sandbox unless [`CommandBackend::with_sandbox`] says else.
    pub fn new(
        name: String,
        command: Vec<String>,
        timeout: Duration,
        env: BTreeMap<String, String>,
        workdir: PathBuf,
        repos: BTreeMap<String, RepoConfig>,
    ) -> Self {
        // git resolves relative paths against its `-C` directory, and bwrap binds absolute paths,
        // so every path must be absolute; a relative workdir is taken relative to Chime's working
        // directory.
        let workdir = std::path::absolute(&workdir).unwrap_or(workdir);
        Self {
            name,
            command,
            timeout,
            env,
            workdir,
            repos,
            sandbox: Sandbox::default(),
            egress: crate::egress::Egress::default(),
            mirror_locks: std::sync::Mutex::default(),
        }
    }

    pub fn with_sandbox(mut self, sandbox: Sandbox) -> Self {
        self.sandbox = sandbox;
        self
    }

    /// Where Chime's own git may fetch from (`[network]`); open unless set.
    pub fn with_egress(mut self, egress: crate::egress::Egress) -> Self {
        self.egress = egress;
        self
    }

    /// The bare mirror that worktrees of `repo` are made from: `mirrors/<owner>/<name>.git`.
    /// Neither part can hold a `/`, so two repositories never share a mirror.
    pub fn mirror_path(&self, repo: &RepoName) -> PathBuf {
        branches::mirror_path(&self.workdir, repo)
    }

    /// Where a session works on a repository: one worktree per session and repository.
    pub fn worktree_path(&self, session_id: &str, repo: &RepoName) -> PathBuf {
        self.workdir
            .join("worktrees")
            .join(session_id)
            .join(repo.as_str())
    }

    /// Where a session without a repository works.
    pub fn scratch_path(&self, session_id: &str) -> PathBuf {
        self.workdir.join("scratch").join(session_id)
    }

    /// The session's `$HOME`, kept across its turns (agents keep their state there).
    pub fn home_path(&self, session_id: &str) -> PathBuf {
        self.workdir.join("homes").join(session_id)
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

    /// Makes the directory the turn runs in ready, and says what the sandbox shows of it.
    async fn prepare(
        &self,
        input: &AgentInput,
        key: &str,
        branch: &str,
    ) -> anyhow::Result<Workspace> {
        let session_id = key;
        let home = self.home_path(session_id);
        tokio::fs::create_dir_all(&home)
            .await
            .with_context(|| format!("cannot create {}", home.display()))?;
        let (dir, mut mounts) = match &input.repo {
            Some(repo) => {
                // RepoName's fields are public, so re-check that it cannot escape a directory.
                let repo = RepoName::parse(repo.as_str())
                    .ok_or_else(|| anyhow!("repository name {repo:?} is not owner/name"))?;
                let config = self.repo_config(&repo)?;
                let worktree = self
                    .prepare_worktree(&repo, config, session_id, branch, input.base.as_ref())
                    .await?;
                let mounts = worktree_mounts(&self.mirror_path(&repo), &worktree).await?;
                (worktree, mounts)
            }
            None => {
                let dir = self.scratch_path(session_id);
                prepare_scratch(&dir, branch).await?;
                // The scratch repository's `.git` is Chime's bookkeeping; read-only, so the agent
                // cannot plant hooks or config there.
                let mounts = vec![
                    Mount::Writable(dir.clone()),
                    Mount::ReadOnly(dir.join(".git")),
                ];
                (dir, mounts)
            }
        };
        mounts.insert(0, Mount::Writable(home.clone()));
        Ok(Workspace {
            dir,
            home,
            mounts,
            cache: None,
        })
    }

    async fn prepare_worktree(
        &self,
        repo: &RepoName,
        config: &RepoConfig,
        session_id: &str,
        branch: &str,
        base: Option<&crate::backend::Base>,
    ) -> anyhow::Result<PathBuf> {
        let worktree = self.worktree_path(session_id, repo);
        if worktree.join(".git").exists() {
            // A follow-up (or a retry): no fetch, so it starts at once from where the last turn
            // left the branch.
            reset_worktree(&worktree).await?;
            return Ok(worktree);
        }
        if crate::egress::host_of(&config.url).is_some() {
            self.egress
                .check(&config.url)
                .map_err(|e| anyhow!("cannot fetch {repo}: {e}"))?;
        }
        let lock = self.mirror_lock(repo);
        let _guard = lock.lock().await;
        let mirror = self.mirror_path(repo);
        let synced = if mirror.exists() {
            git::git(&mirror, ["fetch", "--prune", "--quiet", "origin"])
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
        let default = match &config.default_branch {
            Some(b) => format!("refs/heads/{b}"),
            None => "HEAD".to_string(),
        };
        // A session from an editor starts at the editor's commit; one never pushed, at its
        // branch; a branch that is not upstream either, at the default branch.
        let wanted = base.map(|b| [b.commit.clone(), format!("refs/heads/{}", b.branch)]);
        let start = match &wanted {
            Some(candidates) => git::first_commit(&mirror, candidates)
                .await?
                .unwrap_or(default),
            None => default,
        };
        tracing::info!(%repo, start = %start, "new session worktree");
        add_worktree(&mirror, &worktree, branch, &start).await?;
        Ok(worktree)
    }

    /// The agent's environment: see the module documentation.
    fn agent_env(
        &self,
        input: &AgentInput,
        branch: &str,
        home: &Path,
    ) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = INHERITED_ENV
            .iter()
            .filter_map(|k| Some((OsString::from(k), std::env::var_os(k)?)))
            .collect();
        env.push(("HOME".into(), home.into()));
        env.extend(self.env.iter().map(|(k, v)| (k.into(), v.into())));
        env.extend(
            chime_env(input, branch)
                .into_iter()
                .map(|(k, v)| (k.into(), v.into())),
        );
        // Later entries win, as they would with repeated `Command::env` calls.
        let mut seen = std::collections::HashSet::new();
        let mut unique: Vec<_> = env
            .into_iter()
            .rev()
            .filter(|(k, _)| seen.insert(k.clone()))
            .collect();
        unique.reverse();
        unique
    }

    /// Runs the agent process to its end and collects what it printed.
    async fn run_agent(
        &self,
        input: &AgentInput,
        workspace: &Workspace,
        branch: &str,
        progress: &mpsc::Sender<Progress>,
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Result<Transcript, BackendError> {
        let mut env = self.agent_env(input, branch, &workspace.home);
        // After a setup, the agent gets its cache and no network (the setup had it).
        let mut sandbox = self.sandbox.clone();
        if let Some(cache) = &workspace.cache {
            env.push(("CHIME_CACHE".into(), cache.into()));
            if sandbox.mode == crate::config::SandboxMode::Bwrap {
                sandbox.mode = crate::config::SandboxMode::NoNetwork;
            }
        }
        let mut cmd = sandbox
            .command(
                &self.name,
                &self.command,
                &workspace.dir,
                &workspace.mounts,
                &env,
            )
            .map_err(BackendError::Failed)?;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a stop reaches every process the agent started.
            .process_group(0)
            .kill_on_drop(true);
        let program = &self.command[0];
        let mut child = cmd.spawn().map_err(|e| {
            BackendError::Failed(match e.kind() {
                std::io::ErrorKind::NotFound if self.sandbox.is_sandboxed() => {
                    not_installed(&self.name)
                }
                _ if self.sandbox.is_sandboxed() => {
                    format!(
                        "cannot start the sandbox (bwrap) for the agent command {program:?}: {e}"
                    )
                }
                _ => format!("cannot start the agent command {program:?}: {e}"),
            })
        })?;
        let group = child
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .map(|leader| AgentGroup {
                leader,
                sandboxed: self.sandbox.is_sandboxed(),
            })
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
                let stderr = String::from_utf8_lossy(&stderr_tail);
                let setup = self
                    .sandbox
                    .is_sandboxed()
                    .then(|| sandbox::setup_failure(&self.name, status.code(), &stderr))
                    .flatten();
                Err(BackendError::Failed(
                    setup.unwrap_or_else(|| exit_message(status, &stderr_tail)),
                ))
            }
        }
    }

    /// Runs `work` unless the turn is stopped or out of time first; dropping it kills its git
    /// process (`kill_on_drop`).
    /// The repository's setup phase (see `setup.rs`), when it has one: run once per cache key
    /// (under the repository's lock, so concurrent sessions wait for one run), or found cached.
    async fn set_up(
        &self,
        input: &AgentInput,
        workspace: &mut Workspace,
        progress: &mpsc::Sender<Progress>,
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Result<(), BackendError> {
        let Some(repo) = &input.repo else {
            return Ok(());
        };
        let config = self.repo_config(repo)?;
        let Some(setup) = setup::Setup::of(&self.workdir, repo, config, &workspace.dir) else {
            return Ok(());
        };
        if !setup.is_cached() {
            let lock = self.mirror_lock(repo);
            let _guard = lock.lock().await;
            if !setup.is_cached() {
                let _ = progress.send(Progress::new("Setting up")).await;
                let started = Instant::now();
                let home = self
                    .workdir
                    .join("setup-homes")
                    .join(input.session_id.as_str());
                let ran = self
                    .bounded(
                        async {
                            setup
                                .run(&self.sandbox, &workspace.dir, &home)
                                .await
                                .map_err(|e| anyhow!(e))
                        },
                        cancel,
                        deadline,
                    )
                    .await;
                ran?;
                let secs = started.elapsed().as_secs();
                let _ = progress
                    .send(Progress::new(format!("Setting up ({secs} s)")))
                    .await;
                workspace.mounts.push(Mount::ReadOnly(setup.cache.clone()));
                workspace.cache = Some(setup.cache);
                return Ok(());
            }
        }
        let _ = progress.send(Progress::new("Setting up (cached)")).await;
        workspace.mounts.push(Mount::ReadOnly(setup.cache.clone()));
        workspace.cache = Some(setup.cache);
        Ok(())
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = anyhow::Result<T>>,
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Result<T, BackendError> {
        tokio::select! {
            result = work => result.map_err(failed),
            () = cancel.cancelled() => Err(BackendError::Cancelled),
            () = tokio::time::sleep_until(deadline) => Err(BackendError::TimedOut(self.timeout)),
        }
    }
}

#[async_trait]
impl Backend for CommandBackend {
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
        if input.plan_only {
            return self.plan_in(input, &progress, &cancel, deadline).await;
        }
        if input.variants > 1 {
            return self.run_attempts(input, &progress, &cancel, deadline).await;
        }
        let (outcome, _checks) = self
            .run_in(input, session_id, &progress, &cancel, deadline)
            .await?;
        Ok(outcome)
    }
}

impl CommandBackend {
    /// One agent run in the workspace named `key` (the session id, or `<session-id>-<n>` for
    /// attempt n of a best-of-N turn), on branch `chime/<key>`. Also returns the agent's `checks`.
    async fn run_in(
        &self,
        input: &AgentInput,
        key: &str,
        progress: &mpsc::Sender<Progress>,
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Result<(Outcome, Option<String>), BackendError> {
        let branch = format!("chime/{key}");
        // Dropping the preparation on stop or timeout kills its git process (kill_on_drop); a
        // half-made worktree is repaired by the reset of the next attempt.
        let mut workspace = self
            .bounded(self.prepare(input, key, &branch), cancel, deadline)
            .await?;
        self.set_up(input, &mut workspace, progress, cancel, deadline)
            .await?;
        let dir = &workspace.dir;
        let head_before = self.bounded(head(dir), cancel, deadline).await?;

        let transcript = self
            .run_agent(input, &workspace, &branch, progress, cancel, deadline)
            .await?;

        // Still under the turn's deadline and stop: a stopped turn commits nothing.
        self.bounded(commit_turn(dir, input), cancel, deadline)
            .await?;
        let commit = self.bounded(head(dir), cancel, deadline).await?;
        let diff_stat = self
            .bounded(diff_stat(dir, &head_before, &commit), cancel, deadline)
            .await?;
        let outcome = Outcome {
            summary: transcript.final_message(),
            branch: Some(branch),
            commit: Some(commit),
            diff_stat: Some(diff_stat),
            pr_url: transcript.pr_url.clone(),
            dry_run: false,
            remote: None,
            attempts: vec![],
            checks: transcript.evidence(),
            usage: None,
        };
        Ok((outcome, transcript.checks))
    }

    /// A plan-only turn (`approval = "plan"`): the agent runs in a workspace of its own,
    /// `<session-id>-plan`, set to where the session's branch stands, and whatever it changed there
    /// is thrown away afterwards. The session's own worktree and branch are not touched, so nothing
    /// changes before the plan is approved.
    async fn plan_in(
        &self,
        input: &AgentInput,
        progress: &mpsc::Sender<Progress>,
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Result<Outcome, BackendError> {
        let key = format!("{}-plan", input.session_id);
        let branch = format!("chime/{key}");
        let mut workspace = self
            .bounded(self.prepare(input, &key, &branch), cancel, deadline)
            .await?;
        self.set_up(input, &mut workspace, progress, cancel, deadline)
            .await?;
        let dir = &workspace.dir;
        if input.repo.is_some() {
            // Worktrees share the mirror's refs: the session's branch, once a turn made it.
            let session_branch = format!("refs/heads/chime/{}", input.session_id);
            if git::git(dir, ["rev-parse", "--verify", "--quiet", &session_branch])
                .await
                .is_ok()
            {
                self.bounded(
                    git::git(dir, ["reset", "--hard", "--quiet", &session_branch]),
                    cancel,
                    deadline,
                )
                .await?;
            }
        }
        let ran = self
            .run_agent(input, &workspace, &branch, progress, cancel, deadline)
            .await;
        // Thrown away whatever happened, so a later plan starts clean too.
        if let Err(e) = reset_worktree(dir).await {
            tracing::warn!(error = %format!("{e:#}"), "could not clean the plan workspace");
        }
        let transcript = ran?;
        Ok(Outcome {
            summary: transcript.final_message(),
            branch: None,
            commit: None,
            diff_stat: None,
            pr_url: None,
            dry_run: false,
            remote: None,
            attempts: vec![],
            checks: transcript.evidence(),
            usage: None,
        })
    }

    /// A best-of-N turn: every attempt runs at once in a worktree and on a branch of its own, under
    /// the one deadline and Stop. The turn succeeds when at least one attempt did; the outcome
    /// lists them all for the comparison card.
    async fn run_attempts(
        &self,
        input: &AgentInput,
        progress: &mpsc::Sender<Progress>,
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Result<Outcome, BackendError> {
        let n = input.variants;
        let runs = (1..=n).map(|k| async move {
            let key = format!("{}-{k}", input.session_id);
            let (tx, mut rx) = mpsc::channel::<Progress>(16);
            let forward = async {
                while let Some(p) = rx.recv().await {
                    let text = format!("Attempt {k} of {n}: {}", p.text);
                    let _ = progress.try_send(Progress { text, ..p });
                }
            };
            let run = async move { self.run_in(input, &key, &tx, cancel, deadline).await };
            let (result, ()) = tokio::join!(run, forward);
            (k, result)
        });
        let results = futures::future::join_all(runs).await;
        let mut attempts = Vec::new();
        let mut timed_out = None;
        for (k, result) in results {
            attempts.push(match result {
                Ok((o, checks)) => Attempt {
                    n: k,
                    // What the agent said of its checks, else what its transcript shows.
                    checks: checks.or_else(|| {
                        let ran: Vec<String> = o.checks.iter().map(|c| c.line()).collect();
                        (!ran.is_empty()).then(|| ran.join("; "))
                    }),
                    summary: o.summary,
                    branch: o.branch,
                    commit: o.commit,
                    diff_stat: o.diff_stat,
                    error: None,
                },
                Err(BackendError::Cancelled) => return Err(BackendError::Cancelled),
                Err(e) => {
                    if let BackendError::TimedOut(d) = e {
                        timed_out = Some(d);
                    }
                    Attempt {
                        n: k,
                        error: Some(e.to_string()),
                        ..Attempt::default()
                    }
                }
            });
        }
        let finished = attempts.iter().filter(|a| a.error.is_none()).count();
        if finished == 0 {
            if let Some(d) = timed_out {
                return Err(BackendError::TimedOut(d));
            }
            let first = attempts[0].error.clone().unwrap_or_default();
            return Err(BackendError::Failed(format!(
                "all {n} attempts failed; the first: {first}"
            )));
        }
        Ok(Outcome {
            summary: format!(
                "{finished} of {n} attempts finished. Compare them and choose one to open its pull request."
            ),
            attempts,
            ..Outcome::default()
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
        // `plan`: only a plan is asked for, and the workspace is thrown away afterwards.
        (
            "CHIME_MODE",
            if input.plan_only { "plan" } else { "work" }.to_string(),
        ),
    ];
    if let Some(repo) = &input.repo {
        env.push(("CHIME_REPO", repo.to_string()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_checked() {
        assert!(is_safe_component("0123abcd-ef_9"));
        for bad in ["", "..", "a/b", "a b", "é", "a\nb"] {
            assert!(!is_safe_component(bad), "{bad:?}");
        }
    }

    fn backend() -> CommandBackend {
        CommandBackend::new(
            "agent".into(),
            vec!["agent".into()],
            Duration::from_secs(1),
            BTreeMap::new(),
            PathBuf::from("/w"),
            BTreeMap::new(),
        )
    }

    /// `a__b/c` and `a/b__c` once shared `mirrors/a__b__c.git`.
    #[test]
    fn mirrors_and_worktrees_are_distinct_per_repository() {
        let b = backend();
        let one = RepoName::parse("a__b/c").unwrap();
        let two = RepoName::parse("a/b__c").unwrap();
        assert_ne!(b.mirror_path(&one), b.mirror_path(&two));
        assert_eq!(b.mirror_path(&two), PathBuf::from("/w/mirrors/a/b__c.git"));
        assert_ne!(b.worktree_path("s", &one), b.worktree_path("s", &two));
        assert_eq!(
            b.worktree_path("s", &two),
            PathBuf::from("/w/worktrees/s/a/b__c")
        );
    }
}
