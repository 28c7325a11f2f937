//! Agent backends: one trait, one implementation per way of running a coding agent.

pub mod command;
pub mod cursor;
mod cursor_stream;
pub mod cursor_webhook;
pub mod devin;
pub mod dry_run;
pub mod openai;
mod remote;
pub mod webhook;

use crate::ids::{RepoName, SessionId, TaskId};
use async_trait::async_trait;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Everything an agent gets for one turn.
#[derive(Clone, Debug, Serialize)]
pub struct AgentInput {
    pub session_id: SessionId,
    pub task_id: TaskId,
    pub turn_no: i64,
    /// This turn's request, as the requester wrote it (untrusted).
    pub prompt: String,
    pub requester: String,
    pub repo: Option<RepoName>,
    pub backend: String,
    /// Every earlier turn of the session, oldest first.
    pub history: Vec<TurnRecord>,
    /// The thread the request came from, quoted as data with each author named.
    pub thread_context: Vec<QuotedMessage>,
    /// The full text handed to the agent: all of the above rendered by `templates/agent/input.md.hbs`.
    pub rendered: String,
    /// The same without the earlier turns, for a backend whose remote conversation already holds
    /// them (the Responses API with `previous_response_id`): sending them again costs them again.
    #[serde(skip)]
    pub rendered_turn: String,
    /// Attempts to run side by side, each on its own branch (best-of-N); 1 for an ordinary turn.
    pub variants: u32,
    /// Only a plan is asked for (`approval = "plan"`): the backend must change nothing.
    #[serde(default)]
    pub plan_only: bool,
    /// The remote run an earlier claim of this same turn started (a cloud agent's run or
    /// session): the backend resumes it instead of launching again.
    #[serde(skip)]
    pub remote: Option<String>,
    #[serde(skip)]
    pub checkpoint: Checkpoint,
    /// Where a new session's branch starts, when the request came with a workspace (an
    /// editor's commit and branch); None: the repository's default branch.
    #[serde(skip)]
    pub base: Option<Base>,
}

/// A workspace's position: a commit, and the branch it is on (for when the commit was never
/// pushed).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Base {
    pub commit: String,
    pub branch: String,
}

type Record = dyn Fn(String) -> BoxFuture<'static, anyhow::Result<bool>> + Send + Sync;
type Reports = dyn Fn(i64) -> BoxFuture<'static, anyhow::Result<Vec<Report>>> + Send + Sync;

/// What a remote service reported on a turn (a `webhook` backend's callback), in order.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub seq: i64,
    pub kind: String,
    pub text: String,
    pub pr_url: Option<String>,
    pub branch: Option<String>,
    pub remote: Option<String>,
}

/// Records a turn's remote id on its task before a backend does anything else with it, so that
/// a restart, or another replica, resumes that run instead of launching another. The worker makes
/// one for the claim that runs the turn; without one (a backend driven directly) nothing is kept.
#[derive(Clone, Default)]
pub struct Checkpoint {
    record: Option<Arc<Record>>,
    stop: Option<Arc<AtomicBool>>,
    reports: Option<Arc<Reports>>,
}

impl Checkpoint {
    pub fn new(
        record: impl Fn(String) -> BoxFuture<'static, anyhow::Result<bool>> + Send + Sync + 'static,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Self {
            record: Some(Arc::new(record)),
            stop: Some(stop),
            reports: None,
        }
    }

    /// Adds how the turn's stored reports are read (after a sequence number).
    pub fn with_reports(
        mut self,
        reports: impl Fn(i64) -> BoxFuture<'static, anyhow::Result<Vec<Report>>> + Send + Sync + 'static,
    ) -> Self {
        self.reports = Some(Arc::new(reports));
        self
    }

    /// The turn's reports after `seq`, oldest first; none without a store.
    pub async fn reports(&self, seq: i64) -> Result<Vec<Report>, BackendError> {
        let Some(reports) = &self.reports else {
            return Ok(vec![]);
        };
        reports(seq)
            .await
            .map_err(|e| BackendError::Failed(format!("could not read the turn's reports: {e:#}")))
    }

    /// Whether a cancellation is someone's Stop (end the remote run), rather than a shutdown or
    /// a lost lease (leave it running: the next claim resumes it).
    pub fn stop_requested(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Stores `remote` on the task. A claim that lost the task is told to stop.
    pub async fn record(&self, remote: &str) -> Result<(), BackendError> {
        let Some(record) = &self.record else {
            return Ok(());
        };
        match record(remote.to_string()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(BackendError::Cancelled),
            Err(e) => Err(BackendError::Failed(format!(
                "could not record the remote run {remote}: {e:#}"
            ))),
        }
    }
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.record.is_some() {
            "Checkpoint(recording)"
        } else {
            "Checkpoint(none)"
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TurnRecord {
    pub turn_no: i64,
    pub requester: String,
    pub prompt: String,
    pub state: String,
    pub outcome: Option<Outcome>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct QuotedMessage {
    pub author: String,
    pub is_bot: bool,
    pub text: String,
}

/// A milestone the agent reports while it works: a step of the turn's plan (`session::plan`).
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub text: String,
    /// `None` for a step that starts now; `Some(failed)` for one that has already ended (a
    /// command the agent ran, read from its transcript).
    pub ended: Option<bool>,
}

impl Progress {
    /// A step that starts now.
    pub fn new(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            ended: None,
        }
    }
}

/// What a finished turn produced.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Outcome {
    /// The agent's final message (or, for a dry run, the input it would have been given).
    pub summary: String,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub diff_stat: Option<String>,
    #[serde(default)]
    pub pr_url: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    /// The backend's own id for where this turn's work lives remotely (a Responses id, a remote
    /// session), so that a follow-up continues there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// A best-of-N turn's attempts, each on its own branch (empty for an ordinary turn).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// The checks the agent ran (tests, builds, linters), each with its last outcome, read from
    /// its own transcript: evidence for the reviewer, not the agent's claim.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// What the turn used, where the backend reports it (a model's tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// Tokens a model turn used, as its API reported them.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A check an agent ran and how it ended.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub command: String,
    /// Its exit status, when the transcript gives one.
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub failed: bool,
    /// The failing tests its output names (a few).
    #[serde(default)]
    pub failing: Vec<String>,
}

impl Check {
    /// One line of a **Checks** list: "`cargo test`: exit 101, failing: tests::adds". Untrusted
    /// (the agent's): each surface escapes it.
    pub fn line(&self) -> String {
        let command = self.command.replace('`', "ʼ");
        let mut line = match (self.exit_code, self.failed) {
            (Some(code), _) => format!("`{command}`: exit {code}"),
            (None, false) => format!("`{command}`: passed"),
            (None, true) => format!("`{command}`: failed"),
        };
        if !self.failing.is_empty() {
            line.push_str(&format!(", failing: {}", self.failing.join(", ")));
        }
        line
    }
}

/// One attempt of a best-of-N turn.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Attempt {
    /// From 1.
    pub n: u32,
    pub summary: String,
    #[serde(default)]
    pub branch: Option<String>,
    #[serde(default)]
    pub commit: Option<String>,
    #[serde(default)]
    pub diff_stat: Option<String>,
    /// What the agent reported of its own checks (a `checks` line), if anything.
    #[serde(default)]
    pub checks: Option<String>,
    /// Why this attempt failed; its branch is then not offered.
    #[serde(default)]
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("stopped")]
    Cancelled,
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// A failure worth showing to the requester, with its reason.
    #[error("{0}")]
    Failed(String),
}

#[async_trait]
pub trait Backend: Send + Sync {
    /// Runs one turn to its end. Milestones go to `progress`; `cancel` asks the backend to stop at
    /// once (and then it returns [`BackendError::Cancelled`]).
    async fn run(
        &self,
        input: &AgentInput,
        progress: mpsc::Sender<Progress>,
        cancel: CancellationToken,
    ) -> Result<Outcome, BackendError>;
}

/// Why a cloud agent that works on its own branch (Devin, Cursor) does not make plans: it cannot
/// promise to change nothing, and a plan must change nothing before it is approved.
pub const PLAN_REFUSED: &str = "this backend cannot make a plan without changing code, so it does not run where `approval = \"plan\"`; use a `command`, `openai` or `webhook` backend there";

/// The longest pull request URL Chime accepts from an agent.
pub const PR_URL_MAX_CHARS: usize = 500;

/// The pull request URL an agent reported, if it is one Chime will show and quote: `http(s)://`
/// with a host and no user info, at most [`PR_URL_MAX_CHARS`], printable ASCII only, and none of the
/// characters RFC 3986 leaves out of URLs (`<`, `>`, `|`, quotes, ...) that would end or forge
/// Slack's link markup. Checked where an agent reports it and again where a card shows it, since
/// a stored outcome may predate this check.
pub fn valid_pr_url(url: &str) -> Option<String> {
    let url = url.trim();
    let has_scheme = |scheme: &str| {
        url.get(..scheme.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
    };
    let scheme_len = if has_scheme("https://") {
        8
    } else if has_scheme("http://") {
        7
    } else {
        return None;
    };
    let authority = url[scheme_len..].split(['/', '?', '#']).next()?;
    let ok = url.len() <= PR_URL_MAX_CHARS
        && !authority.is_empty()
        && !authority.contains('@')
        && url
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>|\"'`\\^{}".contains(&b));
    ok.then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_urls_are_pull_requests() {
        for good in [
            "https://github.com/acme/api/pull/7",
            "http://git.example:8080/acme/api/-/merge_requests/3?x=1&y=2#top",
            " HTTPS://github.com/acme/api/pull/7\n",
        ] {
            assert!(valid_pr_url(good).is_some(), "{good:?}");
        }
        let long = format!("https://x/{}", "&".repeat(20_000));
        let limit = format!("https://x/{}", "a".repeat(PR_URL_MAX_CHARS - 10));
        assert!(valid_pr_url(&limit).is_some());
        for bad in [
            long.as_str(),
            &format!("{limit}a"),
            "javascript:alert(1)",
            "ftp://x/y",
            "https://",
            "https:///path",
            "https://github.com@evil.example/pull/1",
            "https://x/<!channel>",
            "https://x/a|click here",
            "https://x/a b",
            "https://x/a\n## This turn's request",
            "https://x/a\u{2028}b",
            "https://x/\u{e9}",
            "\u{1F600}\u{1F600}\u{1F600}",
            "<https://x/|y>",
        ] {
            assert!(valid_pr_url(bad).is_none(), "{bad:?} should be refused");
        }
    }
}
