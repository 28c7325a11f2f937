//! Where a session lives on a surface, and where a turn's answer goes: one typed value with one
//! text form, stored on session bindings, tasks and outbox rows.
//!
//! The text form is `<surface>:<key>`, e.g. `slack:T1/C1/1700000000.000100` or
//! `local:CGENERAL/1700000000.000100`. It is parsed in exactly one place ([`FromStr`]); a stored
//! value that does not parse is an error, never a guess.

use crate::ids::{ChannelId, OrgId, TeamId, ThreadTs};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A surface Chime reports on: one per connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    Slack,
    Local,
    Linear,
    /// A person's editor, on the IDE stream.
    Ide,
}

impl Surface {
    pub const ALL: [Surface; 4] = [
        Surface::Slack,
        Surface::Local,
        Surface::Linear,
        Surface::Ide,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Slack => "slack",
            Surface::Local => "local",
            Surface::Linear => "linear",
            Surface::Ide => "ide",
        }
    }
}

impl Surface {
    /// How people call it ("Slack", "Linear", "the playground").
    pub fn display_name(self) -> &'static str {
        match self {
            Surface::Slack => "Slack",
            Surface::Local => "the playground",
            Surface::Linear => "Linear",
            Surface::Ide => "the editor",
        }
    }
}

impl FromStr for Surface {
    type Err = BadValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Surface::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| BadValue::new("surface", s))
    }
}

impl fmt::Display for Surface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored or received value Chime does not know: an error to report, not a default to assume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct BadValue {
    pub what: &'static str,
    pub value: String,
}

impl BadValue {
    pub fn new(what: &'static str, value: &str) -> Self {
        Self {
            what,
            value: value.chars().take(200).collect(),
        }
    }
}

/// One place a session is bound to. IDE connections join later.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    /// A Slack thread: its workspace, channel and root message.
    SlackThread {
        team: TeamId,
        channel: ChannelId,
        thread: ThreadTs,
    },
    /// A thread in the local playground's workspace.
    LocalThread {
        channel: ChannelId,
        thread: ThreadTs,
    },
    /// A Linear agent session (`linear:ORG/SESSION`), or an issue answered with comments where
    /// agent sessions are not used (`linear:ORG/issue/ISSUE`).
    Linear { org: OrgId, thread: LinearThread },
    /// A hand-off from a person's editor (`ide:ACCOUNT/HANDOFF`): `account` is the token owner's
    /// `surface.user` (`slack.U123`), `handoff` the id of the message that asked.
    Ide { account: String, handoff: String },
}

/// What a Linear binding answers in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LinearThread {
    /// An agent session: activities.
    Session(String),
    /// An issue, for plain assignment and comment mentions: comments.
    Issue(String),
}

/// A place on a surface where threads start: a channel. A request asked outside any thread
/// (`/chime <request>`) names one, and Chime opens the thread there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "surface", rename_all = "snake_case")]
pub enum Place {
    Slack {
        team: TeamId,
        channel: ChannelId,
    },
    Local {
        channel: ChannelId,
    },
    /// A Linear workspace (organization): its agent sessions and issues.
    Linear {
        org: OrgId,
    },
    /// A person's editors (`surface.user`).
    Ide {
        account: String,
    },
}

impl Place {
    pub fn surface(&self) -> Surface {
        match self {
            Place::Slack { .. } => Surface::Slack,
            Place::Local { .. } => Surface::Local,
            Place::Linear { .. } => Surface::Linear,
            Place::Ide { .. } => Surface::Ide,
        }
    }
}

impl Binding {
    /// The channel this thread is in.
    pub fn location(&self) -> Place {
        match self {
            Binding::SlackThread { team, channel, .. } => Place::Slack {
                team: team.clone(),
                channel: channel.clone(),
            },
            Binding::LocalThread { channel, .. } => Place::Local {
                channel: channel.clone(),
            },
            Binding::Linear { org, .. } => Place::Linear { org: org.clone() },
            Binding::Ide { account, .. } => Place::Ide {
                account: account.clone(),
            },
        }
    }

    /// The connector that reports on this binding.
    pub fn surface(&self) -> Surface {
        match self {
            Binding::SlackThread { .. } => Surface::Slack,
            Binding::LocalThread { .. } => Surface::Local,
            Binding::Linear { .. } => Surface::Linear,
            Binding::Ide { .. } => Surface::Ide,
        }
    }

    /// The place inside the surface that routing and access rules are written for (a channel;
    /// for Linear, the workspace).
    pub fn place(&self) -> &str {
        match self {
            Binding::SlackThread { channel, .. } | Binding::LocalThread { channel, .. } => {
                channel.as_str()
            }
            Binding::Linear { org, .. } => org.as_str(),
            Binding::Ide { account, .. } => account.as_str(),
        }
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Binding::SlackThread {
                team,
                channel,
                thread,
            } => write!(f, "slack:{team}/{channel}/{thread}"),
            Binding::LocalThread { channel, thread } => write!(f, "local:{channel}/{thread}"),
            Binding::Linear {
                org,
                thread: LinearThread::Session(s),
            } => write!(f, "linear:{org}/{s}"),
            Binding::Linear {
                org,
                thread: LinearThread::Issue(i),
            } => write!(f, "linear:{org}/issue/{i}"),
            Binding::Ide { account, handoff } => write!(f, "ide:{account}/{handoff}"),
        }
    }
}

/// A part of a key: non-empty, and without the separators of the text form.
fn part(s: &str) -> Option<&str> {
    (!s.is_empty() && s.len() <= 200 && !s.contains(['/', ':']) && !s.chars().any(char::is_control))
        .then_some(s)
}

impl FromStr for Binding {
    type Err = BadValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadValue::new("binding", s);
        let (surface, key) = s.split_once(':').ok_or_else(bad)?;
        let parts: Vec<&str> = key.split('/').collect();
        match (surface.parse::<Surface>().map_err(|_| bad())?, &parts[..]) {
            (Surface::Slack, &[team, channel, thread]) => Ok(Binding::SlackThread {
                team: TeamId::new(part(team).ok_or_else(bad)?),
                channel: ChannelId::new(part(channel).ok_or_else(bad)?),
                thread: ThreadTs::new(part(thread).ok_or_else(bad)?),
            }),
            (Surface::Local, &[channel, thread]) => Ok(Binding::LocalThread {
                channel: ChannelId::new(part(channel).ok_or_else(bad)?),
                thread: ThreadTs::new(part(thread).ok_or_else(bad)?),
            }),
            (Surface::Linear, &[org, session]) if session != "issue" => Ok(Binding::Linear {
                org: OrgId::new(part(org).ok_or_else(bad)?),
                thread: LinearThread::Session(part(session).ok_or_else(bad)?.to_string()),
            }),
            (Surface::Ide, &[account, handoff]) => Ok(Binding::Ide {
                account: part(account).ok_or_else(bad)?.to_string(),
                handoff: part(handoff).ok_or_else(bad)?.to_string(),
            }),
            (Surface::Linear, &[org, "issue", issue]) => Ok(Binding::Linear {
                org: OrgId::new(part(org).ok_or_else(bad)?),
                thread: LinearThread::Issue(part(issue).ok_or_else(bad)?.to_string()),
            }),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Binding {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Binding {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Inbox rows written before bindings existed hold the thread as an object; they are
        /// still read, so an upgrade loses no accepted event.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Text(String),
            Thread {
                surface: Surface,
                team: TeamId,
                channel: ChannelId,
                thread_ts: ThreadTs,
            },
        }
        match Stored::deserialize(d)? {
            Stored::Text(s) => s.parse().map_err(serde::de::Error::custom),
            Stored::Thread {
                surface: Surface::Slack,
                team,
                channel,
                thread_ts,
            } => Ok(Binding::SlackThread {
                team,
                channel,
                thread: thread_ts,
            }),
            Stored::Thread {
                surface: Surface::Local,
                channel,
                thread_ts,
                ..
            } => Ok(Binding::LocalThread {
                channel,
                thread: thread_ts,
            }),
            Stored::Thread { surface, .. } => Err(serde::de::Error::custom(format!(
                "a {surface} binding stored as a thread object"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        for s in [
            "slack:T1/C1/1700000000.000100",
            "local:CGENERAL/1.000001",
            "linear:org-1/0b5c7a3e-session",
            "linear:org-1/issue/ISSUE-UUID",
        ] {
            let b: Binding = s.parse().unwrap();
            assert_eq!(b.to_string(), s);
            let json = serde_json::to_string(&b).unwrap();
            assert_eq!(serde_json::from_str::<Binding>(&json).unwrap(), b);
        }
        let b: Binding = "slack:T1/C9/1.2".parse().unwrap();
        assert_eq!((b.surface(), b.place()), (Surface::Slack, "C9"));
    }

    #[test]
    fn hostile_text_is_refused() {
        for s in [
            "",
            "slack",
            "slack:",
            "slack:T1/C1",
            "slack:T1/C1/ts/extra",
            "slack:T1//ts",
            "local:T1/C1/ts",
            "linear:abc",
            "linear:org/issue",
            "linear:org/issue/",
            "linear:org/issue/a/b",
            "linear:/s",
            "SLACK:T1/C1/1",
            "slack:T1/C1/1\n",
            "slack:T1/C:1/1",
            &format!("slack:T1/C1/{}", "9".repeat(300)),
        ] {
            assert!(s.parse::<Binding>().is_err(), "{s:?} should be refused");
        }
        assert!("mars".parse::<Surface>().is_err());
    }

    #[test]
    fn legacy_thread_objects_are_still_read() {
        let old = r#"{"surface":"local","team":"TLOCAL","channel":"CGENERAL","thread_ts":"1.1"}"#;
        assert_eq!(
            serde_json::from_str::<Binding>(old).unwrap().to_string(),
            "local:CGENERAL/1.1"
        );
    }
}
