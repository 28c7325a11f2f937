//! Agent backends: one trait, one implementation per way of running a coding agent.

pub mod command;
pub mod dry_run;

use crate::ids::{RepoName, SessionId, TaskId};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
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
    /// The full text handed to the agent: all of the above rendered by `templates/agent_input.md.hbs`.
    pub rendered: String,
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

/// A milestone the agent reports while it works; shown by editing the one status message.
#[derive(Clone, Debug, PartialEq)]
pub struct Progress {
    pub text: String,
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
    fn name(&self) -> &str;

    /// Runs one turn to its end. Milestones go to `progress`; `cancel` asks the backend to stop at
    /// once (and then it returns [`BackendError::Cancelled`]).
    async fn run(
        &self,
        input: &AgentInput,
        progress: mpsc::Sender<Progress>,
        cancel: CancellationToken,
    ) -> Result<Outcome, BackendError>;
}
