//! Chime's own events: what every connector turns its platform's payloads into.
//!
//! The core only ever sees these types. They are stored in the inbox as JSON, so adding a field must
//! keep old rows readable (`#[serde(default)]`).

use crate::binding::Binding;
use crate::ids::{RepoName, TaskId, UserId};
use serde::{Deserialize, Serialize};

/// Who wrote something, as far as the edge can tell from the payload alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub user: UserId,
    /// The author's home workspace differs from the one the event came from (Slack Connect).
    #[serde(default)]
    pub external: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Someone asked Chime for something: an @-mention, or a direct message.
    Mention(Mention),
    /// Someone pressed one of Chime's buttons.
    ButtonClicked(ButtonClicked),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    /// Where it was said, and where the answer goes.
    #[serde(alias = "thread")]
    pub binding: Binding,
    /// The message itself, as its connector names it (acknowledged with a reaction on chat surfaces).
    #[serde(alias = "message_ts")]
    pub message: String,
    pub author: Author,
    /// The request with Chime's own mention removed. Untrusted text.
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ButtonClicked {
    /// Where the button was pressed.
    #[serde(alias = "thread")]
    pub binding: Option<Binding>,
    pub author: Author,
    pub action: ButtonAction,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ButtonAction {
    Stop { task: TaskId },
    Retry { task: TaskId },
    PickRepo { task: TaskId, repo: RepoName },
}

impl ButtonAction {
    pub const STOP: &'static str = "chime_stop";
    pub const RETRY: &'static str = "chime_retry";
    pub const PICK_REPO: &'static str = "chime_pick_repo";

    /// Rebuilds an action from a button's `action_id` and `value`; None for buttons Chime did not make.
    pub fn from_parts(action_id: &str, value: &str) -> Option<Self> {
        let task_ok = |t: &str| {
            (!t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphanumeric()))
                .then(|| TaskId::new(t))
        };
        match action_id {
            Self::STOP => Some(Self::Stop {
                task: task_ok(value)?,
            }),
            Self::RETRY => Some(Self::Retry {
                task: task_ok(value)?,
            }),
            Self::PICK_REPO => {
                let (task, repo) = value.split_once(' ')?;
                Some(Self::PickRepo {
                    task: task_ok(task)?,
                    repo: RepoName::parse(repo)?,
                })
            }
            _ => None,
        }
    }
}
