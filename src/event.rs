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
    /// A message in a channel Chime is in that does not ask for it: for the relevance policy.
    Message(ChannelMessage),
    /// Someone asked for work outside any thread (`/chime <request>`).
    Request(Request),
    /// A `webhook` backend's service reported on a turn (signed callback).
    BackendUpdate(BackendUpdate),
    /// A remote agent's own status webhook (Cursor's v0 `statusChange`) for the run it names.
    RemoteStatus(RemoteStatus),
    /// A pull request a turn opened was merged or closed, or its CI finished.
    PullRequest(PullRequestEvent),
    /// Someone turned suggestions to them off for a while, or on again (`/chime mute`).
    MuteSuggestions(MuteSuggestions),
    /// Someone asked, on the surface itself, to stop the turn running at a binding (Linear's
    /// `stop` signal): the same as pressing its Stop.
    StopRequested(StopRequested),
    /// Someone redeemed a link code (`/chime link CODE`): their account here and the one the code
    /// was made for are one person.
    LinkAccount(LinkAccount),
    /// Someone opened their own page on a surface (Slack's App Home).
    HomeOpened(HomeOpened),
    /// Someone changed one of their own settings, on their page or with `/chime`.
    SettingChanged(SettingChanged),
    /// An operator asked for a week's digest to be posted now (`chime digest post`).
    PostDigest(PostDigest),
    /// A person's editor reported on their work (`GET /ide/stream`).
    IdeSignal(IdeSignal),
    /// Someone opened a new conversation with Chime (Slack's assistant thread in its DM): it is
    /// offered a few starters.
    ConversationStarted(ConversationStarted),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationStarted {
    /// The new conversation's thread.
    pub binding: Binding,
    pub author: Author,
    /// The place the person was looking at when they opened it, when the surface tells.
    #[serde(default)]
    pub context: Option<crate::binding::Place>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdeSignal {
    /// The surface of the account the editor's token belongs to (`slack`, `local`).
    pub account_surface: String,
    pub author: Author,
    /// The token the editor connected with.
    pub token: i64,
    pub report: IdeReport,
}

/// What an editor reports (untrusted text throughout, already bounded by the edge).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IdeReport {
    /// The editor's workspace: its repository remote, branch and commit.
    Hello {
        client: String,
        remote: String,
        branch: String,
        head: String,
    },
    TestRun {
        runner: String,
        passed: u64,
        failed: u64,
        /// Failing tests: name and the end of their output.
        failures: Vec<(String, String)>,
    },
    Diagnostics {
        file: String,
        errors: u64,
        first: Option<String>,
    },
    CommandFailed {
        command: String,
        exit_code: i64,
        output_tail: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostDigest {
    pub place: crate::binding::Place,
    /// The ISO week, like `2026-W47`.
    pub week: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeOpened {
    pub surface: crate::binding::Surface,
    /// The workspace the page is in.
    pub workspace: crate::ids::TeamId,
    pub author: Author,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingChanged {
    pub surface: crate::binding::Surface,
    pub workspace: crate::ids::TeamId,
    pub author: Author,
    pub change: Setting,
    /// It was changed on the person's page, which is shown again with the change.
    #[serde(default)]
    pub from_home: bool,
}

/// One change to a person's own settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Setting {
    /// No suggestions on their messages for `days` days (None: until they unmute).
    Mute {
        days: Option<u32>,
    },
    Unmute,
    Verbosity {
        verbosity: crate::settings::Verbosity,
    },
    /// Quiet hours as whole hours in their own time (`18-9`), or None for none.
    QuietHours {
        hours: Option<String>,
    },
    /// Link their account on `surface` (by their verified email).
    Link {
        surface: String,
    },
    /// Unlink their account on `surface`.
    Unlink {
        surface: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkAccount {
    pub surface: crate::binding::Surface,
    pub author: Author,
    pub code: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRequested {
    pub binding: Binding,
    pub author: Author,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendUpdate {
    pub task: TaskId,
    /// `progress`, `result` or `error`.
    pub kind: String,
    /// Untrusted text.
    pub text: String,
    #[serde(default)]
    pub pr_url: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
    /// The service's own id for the session, sent back with the next turn.
    #[serde(default)]
    pub remote: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteStatus {
    /// The remote agent's id, as recorded at the start of the task's remote run.
    pub remote: String,
    /// `result` or `error`.
    pub kind: String,
    /// Untrusted text.
    pub text: String,
    #[serde(default)]
    pub pr_url: Option<String>,
    #[serde(default)]
    pub branch: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequestEvent {
    pub repo: RepoName,
    /// The pull requests it is about (a CI run can belong to several).
    pub numbers: Vec<i64>,
    pub change: PullRequestChange,
    /// When Chime heard of it, in Unix milliseconds.
    pub at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PullRequestChange {
    Merged,
    Closed,
    /// A CI suite finished: `success`, `failure`, `cancelled`, `timed_out`, ….
    Checks {
        conclusion: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Where it was asked: Chime opens a thread for it there.
    pub place: crate::binding::Place,
    pub author: Author,
    /// Untrusted text.
    pub text: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MuteSuggestions {
    pub surface: crate::binding::Surface,
    pub author: Author,
    /// Until when (Unix milliseconds); None for good. Ignored when `unmute`.
    pub until_ms: Option<i64>,
    pub unmute: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMessage {
    /// The thread it belongs to (itself, when it starts one).
    pub binding: Binding,
    /// The message itself, as its connector names it.
    pub message: String,
    pub author: Author,
    /// A bot or an integration (CI, alerting) wrote it.
    pub author_is_bot: bool,
    /// The channel's name, when the connector knows it (policies may name channels).
    #[serde(default)]
    pub place_name: String,
    /// It starts its thread.
    pub top_level: bool,
    /// When it was written, in Unix milliseconds.
    pub at_ms: i64,
    /// Untrusted text.
    pub text: String,
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
    Stop {
        task: TaskId,
    },
    Retry {
        task: TaskId,
    },
    PickRepo {
        task: TaskId,
        repo: RepoName,
    },
    /// A result's **Try 3 ways**: the request again, as attempts side by side.
    TryWays {
        task: TaskId,
    },
    /// A comparison's **Use this one**: attempt `attempt` of a best-of-N turn.
    Choose {
        task: TaskId,
        attempt: u32,
    },
    /// A suggestion's **Do it**.
    Accept {
        suggestion: String,
    },
    /// A suggestion's **Not now**.
    NotNow {
        suggestion: String,
    },
    /// A suggestion's **Don't suggest this here**.
    MuteHere {
        suggestion: String,
    },
    /// Thumbs up (`positive`) or down on a turn's result.
    Feedback {
        task: TaskId,
        positive: bool,
    },
    /// A plan's **Approve**: run its work.
    ApprovePlan {
        task: TaskId,
    },
    /// A plan's **Revise**: ask for what to change.
    RevisePlan {
        task: TaskId,
    },
}

impl ButtonAction {
    pub const STOP: &'static str = "chime_stop";
    pub const RETRY: &'static str = "chime_retry";
    pub const PICK_REPO: &'static str = "chime_pick_repo";
    pub const TRY_WAYS: &'static str = "chime_try_ways";
    pub const CHOOSE: &'static str = "chime_choose";
    pub const ACCEPT: &'static str = "chime_accept";
    pub const NOT_NOW: &'static str = "chime_not_now";
    pub const MUTE_HERE: &'static str = "chime_mute_here";
    pub const FEEDBACK: &'static str = "chime_feedback";
    pub const APPROVE_PLAN: &'static str = "chime_approve_plan";
    pub const REVISE_PLAN: &'static str = "chime_revise_plan";

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
            Self::TRY_WAYS => Some(Self::TryWays {
                task: task_ok(value)?,
            }),
            Self::APPROVE_PLAN => Some(Self::ApprovePlan {
                task: task_ok(value)?,
            }),
            Self::REVISE_PLAN => Some(Self::RevisePlan {
                task: task_ok(value)?,
            }),
            Self::CHOOSE => {
                let (task, n) = value.split_once(' ')?;
                let attempt = n.parse().ok().filter(|n| (1..=99).contains(n))?;
                Some(Self::Choose {
                    task: task_ok(task)?,
                    attempt,
                })
            }
            Self::ACCEPT => Some(Self::Accept {
                suggestion: task_ok(value)?.0,
            }),
            Self::NOT_NOW => Some(Self::NotNow {
                suggestion: task_ok(value)?.0,
            }),
            Self::MUTE_HERE => Some(Self::MuteHere {
                suggestion: task_ok(value)?.0,
            }),
            Self::FEEDBACK => {
                let (vote, task) = value.split_once(' ')?;
                let positive = match vote {
                    "up" => true,
                    "down" => false,
                    _ => return None,
                };
                Some(Self::Feedback {
                    task: task_ok(task)?,
                    positive,
                })
            }
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
