//! Newtypes for the identifiers Chime passes around, so a channel id is never mistaken for a user id.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A Slack workspace (`T…`).
    TeamId
);
string_id!(
    /// A Linear workspace (organization id).
    OrgId
);
string_id!(
    /// A Slack conversation: channel, DM or group (`C…`, `D…`, `G…`).
    ChannelId
);
string_id!(
    /// A person or bot on a surface (`U…`/`W…` in Slack).
    UserId
);
string_id!(
    /// A Slack message timestamp; the root message's ts names a thread.
    ThreadTs
);
string_id!(
    /// One turn of a session.
    TaskId
);
string_id!(
    /// One conversation with Chime, wherever it lives.
    SessionId
);
string_id!(
    /// A repository as `owner/name`.
    RepoName
);

impl TaskId {
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }
}

impl SessionId {
    pub fn generate() -> Self {
        // Short enough for a readable branch name (`chime/<id>`), random enough not to collide.
        Self(uuid::Uuid::new_v4().simple().to_string()[..16].to_string())
    }
}

impl RepoName {
    /// Parses `owner/name`, refusing anything that could escape a path or a git ref.
    pub fn parse(s: &str) -> Option<Self> {
        let (owner, name) = s.split_once('/')?;
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 100
                && !p.starts_with('.')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        (ok(owner) && ok(name) && !name.ends_with(".git") && !s.contains(".."))
            .then(|| Self(s.to_string()))
    }

    /// The owner and the name.
    pub fn parts(&self) -> (&str, &str) {
        self.0.split_once('/').unwrap_or(("", &self.0))
    }
}

/// Milliseconds since the Unix epoch; every timestamp in the store uses this unit.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_names_are_strict() {
        assert!(RepoName::parse("acme/api").is_some());
        assert!(RepoName::parse("acme-co/api.rs").is_some());
        for bad in [
            "acme", "/api", "acme/", "../x", "a/../b", "a/b/c", "a/.git", "a/b c", "a/b.git",
        ] {
            assert!(RepoName::parse(bad).is_none(), "{bad} should be refused");
        }
    }
}
