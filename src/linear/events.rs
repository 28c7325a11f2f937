//! Linear's webhook payloads turned into Chime's events. Only this module reads Linear's JSON;
//! everything it returns is Chime's own types (and, for a new agent session, the issue it is on,
//! which the connector keeps: `store::ThreadInfo`).

use super::store::ThreadInfo;
use crate::binding::{Binding, LinearThread};
use crate::event::{Author, Event, Mention, StopRequested};
use crate::ids::{OrgId, RepoName, UserId};
use serde_json::Value;

/// How much of a comment or prompt is kept: a request, not a document.
const TEXT_CHARS: usize = 20_000;
/// How much of Linear's `promptContext` is kept for the agent.
const CONTEXT_CHARS: usize = 40_000;

/// Why a signed delivery is refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("missing or invalid field {0}")]
    Shape(&'static str),
}

/// What a delivery means for Chime.
#[derive(Debug, PartialEq)]
pub struct Inbound {
    pub event: Event,
    /// The issue behind a new agent session.
    pub thread: Option<ThreadInfo>,
}

/// A Linear id as it goes into a binding: Linear's are UUIDs; anything else is refused.
fn id(v: &Value, what: &'static str) -> Result<String, Refusal> {
    v.as_str()
        .filter(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        .map(str::to_string)
        .ok_or(Refusal::Shape(what))
}

fn text(v: &Value, max: usize) -> Option<String> {
    let s = v.as_str()?;
    Some(match s.char_indices().nth(max) {
        Some((cut, _)) => s[..cut].to_string(),
        None => s.to_string(),
    })
}

/// A `repo: owner/name` line (any case, optional backticks) in an issue's description.
pub fn repo_line(description: &str) -> Option<RepoName> {
    description.lines().find_map(|line| {
        let line = line.trim().trim_start_matches(['-', '*', ' ']);
        let (key, value) = line.split_once(':')?;
        if !key.trim().eq_ignore_ascii_case("repo") {
            return None;
        }
        RepoName::parse(value.trim().trim_matches('`').trim())
    })
}

/// What a delivery is: an agent-session event, or (for workspaces without agent sessions) an
/// issue assignment or a comment, which is Chime's only once it is known whom Chime acts as.
#[derive(Debug, PartialEq)]
pub enum Parsed {
    Session(Inbound),
    Plain(Plain),
}

/// An issue assigned to someone, or a comment on an issue.
#[derive(Debug, PartialEq)]
pub struct Plain {
    pub org: OrgId,
    /// The issue, as a thread answered with comments.
    pub thread: ThreadInfo,
    /// Who did it.
    pub actor: String,
    pub kind: PlainKind,
}

#[derive(Debug, PartialEq)]
pub enum PlainKind {
    /// The issue's assignee changed to `assignee`.
    Assigned { assignee: String, at: String },
    /// A new comment. Untrusted text.
    Comment { id: String, body: String },
}

impl Plain {
    /// The event this is for Chime, acting as `app_user` (and mentioned as `@mention_name`):
    /// an assignment to it, or a comment that mentions it (never one of its own).
    pub fn for_chime(self, app_user: &str, mention_name: &str) -> Option<Inbound> {
        let author = |user: &str| Author {
            user: UserId::new(user),
            external: false,
        };
        let binding = self.thread.binding.clone();
        let (message, text, author) = match self.kind {
            PlainKind::Assigned { assignee, at } if assignee == app_user => (
                format!("assigned:{at}"),
                format!("Work on {}: {}", self.thread.identifier, self.thread.title),
                author(&self.actor),
            ),
            PlainKind::Comment { id, body } if self.actor != app_user => {
                let text = without_mention(&body, app_user, mention_name)?;
                (id, text, author(&self.actor))
            }
            _ => return None,
        };
        Some(Inbound {
            event: Event::Mention(Mention {
                binding,
                message,
                author,
                text,
            }),
            thread: Some(self.thread),
        })
    }
}

/// A comment's text without Chime's mention, when it mentions Chime: `@name` (any case), or a
/// link to Chime's profile or user id (how Linear's editor writes a mention).
fn without_mention(body: &str, app_user: &str, name: &str) -> Option<String> {
    let lower = body.to_lowercase();
    let at = format!("@{}", name.to_lowercase());
    let profile = format!("/profiles/{}", name.to_lowercase());
    let mentioned = lower
        .split(|c: char| c.is_whitespace() || c == '[' || c == '(')
        .any(|w| w.trim_end_matches([',', '.', ':', ']', ')']) == at)
        || lower.contains(&profile)
        || (!app_user.is_empty() && body.contains(app_user));
    if !mentioned {
        return None;
    }
    let text: Vec<&str> = body
        .split(' ')
        .filter(|w| !w.to_lowercase().trim_end_matches([',', ':']).eq(&at))
        .collect();
    Some(text.join(" ").trim().to_string())
}

/// Someone a payload names: how to call them, and their email as Linear verified it.
#[derive(Debug, PartialEq)]
pub struct Person {
    pub id: String,
    pub name: String,
    pub email: Option<String>,
}

/// The people a payload names (the session's creator, the prompt's author, the actor, the
/// comment's author), for naming them and linking their accounts by email.
pub fn people(v: &Value) -> Vec<Person> {
    [
        "/agentSession/creator",
        "/agentActivity/user",
        "/actor",
        "/data/user",
    ]
    .iter()
    .filter_map(|p| v.pointer(p))
    .filter_map(|u| {
        Some(Person {
            id: id(&u["id"], "user id").ok()?,
            name: crate::templates::one_line(u["name"].as_str()?, 100),
            email: u["email"]
                .as_str()
                .filter(|e| e.len() <= 200 && e.contains('@') && !e.contains(char::is_whitespace))
                .map(str::to_ascii_lowercase),
        })
    })
    .collect()
}

/// Ok(None) for deliveries Chime does not act on (other types and actions).
pub fn parse(v: &Value) -> Result<Option<Parsed>, Refusal> {
    match (v["type"].as_str(), v["action"].as_str()) {
        (Some("AgentSessionEvent"), Some("created")) => {
            created(v).map(|i| Some(Parsed::Session(i)))
        }
        (Some("AgentSessionEvent"), Some("prompted")) => {
            prompted(v).map(|i| Some(Parsed::Session(i)))
        }
        (Some("Issue"), Some("update")) => assigned(v).map(|p| p.map(Parsed::Plain)),
        (Some("Comment"), Some("create")) => comment(v).map(|p| p.map(Parsed::Plain)),
        _ => Ok(None),
    }
}

/// The issue of a plain event as a thread answered with comments.
fn issue_thread(org: &OrgId, issue: &Value, description: &str) -> Result<ThreadInfo, Refusal> {
    let issue_id = id(&issue["id"], "issue id")?;
    let identifier = issue["identifier"]
        .as_str()
        .filter(|k| k.len() <= 32 && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .ok_or(Refusal::Shape("issue identifier"))?
        .to_string();
    let team_key = issue["team"]["key"]
        .as_str()
        .or_else(|| identifier.split_once('-').map(|(k, _)| k))
        .filter(|k| k.len() <= 32)
        .unwrap_or_default()
        .to_string();
    Ok(ThreadInfo {
        binding: Binding::Linear {
            org: org.clone(),
            thread: LinearThread::Issue(issue_id.clone()),
        },
        org: org.clone(),
        issue_id,
        identifier,
        title: text(&issue["title"], 500).ok_or(Refusal::Shape("issue title"))?,
        url: issue["url"]
            .as_str()
            .filter(|u| {
                u.starts_with("https://") && u.len() <= 500 && !u.contains(char::is_whitespace)
            })
            .unwrap_or_default()
            .to_string(),
        team_key,
        prompt_context: None,
        delegated: false,
        repo_hint: repo_line(description),
    })
}

/// An `Issue` update whose assignee changed.
fn assigned(v: &Value) -> Result<Option<Plain>, Refusal> {
    let changed = v["updatedFrom"]
        .as_object()
        .is_some_and(|f| f.contains_key("assigneeId"));
    let Some(assignee) = v["data"]["assigneeId"].as_str().filter(|_| changed) else {
        return Ok(None);
    };
    let org = OrgId::new(id(&v["organizationId"], "organizationId")?);
    let data = &v["data"];
    let mut thread = issue_thread(&org, data, data["description"].as_str().unwrap_or_default())?;
    thread.delegated = true;
    Ok(Some(Plain {
        org,
        thread,
        actor: id(&v["actor"]["id"], "actor.id").unwrap_or_default(),
        kind: PlainKind::Assigned {
            assignee: assignee.to_string(),
            at: data["updatedAt"]
                .as_str()
                .filter(|a| a.len() <= 40)
                .unwrap_or_default()
                .to_string(),
        },
    }))
}

/// A new comment on an issue.
fn comment(v: &Value) -> Result<Option<Plain>, Refusal> {
    let data = &v["data"];
    if !data["issue"].is_object() {
        return Ok(None); // A comment on a project update or a document.
    }
    let org = OrgId::new(id(&v["organizationId"], "organizationId")?);
    let thread = issue_thread(&org, &data["issue"], "")?;
    Ok(Some(Plain {
        org,
        thread,
        actor: id(&data["userId"], "data.userId").unwrap_or_default(),
        kind: PlainKind::Comment {
            id: id(&data["id"], "data.id")?,
            body: text(&data["body"], TEXT_CHARS).ok_or(Refusal::Shape("data.body"))?,
        },
    }))
}

fn session_binding(v: &Value) -> Result<(OrgId, Binding), Refusal> {
    let org = OrgId::new(id(&v["organizationId"], "organizationId")?);
    let session = id(&v["agentSession"]["id"], "agentSession.id")?;
    let binding = Binding::Linear {
        org: org.clone(),
        thread: LinearThread::Session(session),
    };
    Ok((org, binding))
}

fn created(v: &Value) -> Result<Inbound, Refusal> {
    let (org, binding) = session_binding(v)?;
    let s = &v["agentSession"];
    let issue = &s["issue"];
    let creator = id(
        if s["creatorId"].is_string() {
            &s["creatorId"]
        } else {
            &s["creator"]["id"]
        },
        "agentSession.creatorId",
    )?;
    let description = issue["description"].as_str().unwrap_or_default();
    // The issue is read as for a plain event; the session's own binding and context replace
    // the issue's.
    let mut thread = issue_thread(&org, issue, description)?;
    // A mention comes with the comment that asked; a delegation has none.
    let comment = text(&s["comment"]["body"], TEXT_CHARS);
    thread.delegated = comment.is_none();
    thread.binding = binding.clone();
    thread.prompt_context = text(&v["promptContext"], CONTEXT_CHARS);
    let request = match &comment {
        Some(body) if !body.trim().is_empty() => body.clone(),
        _ => format!("Work on {}: {}", thread.identifier, thread.title),
    };
    let mention = Mention {
        message: format!("{}:created", thread_key(&binding)),
        binding,
        author: Author {
            user: UserId::new(creator),
            external: false,
        },
        text: request,
    };
    Ok(Inbound {
        event: Event::Mention(mention),
        thread: Some(thread),
    })
}

fn prompted(v: &Value) -> Result<Inbound, Refusal> {
    let (_, binding) = session_binding(v)?;
    let a = &v["agentActivity"];
    let user = id(
        if a["userId"].is_string() {
            &a["userId"]
        } else {
            &a["user"]["id"]
        },
        "agentActivity.userId",
    )?;
    let author = Author {
        user: UserId::new(user),
        external: false,
    };
    if a["signal"].as_str() == Some("stop") {
        return Ok(Inbound {
            event: Event::StopRequested(StopRequested { binding, author }),
            thread: None,
        });
    }
    let body = text(&a["content"]["body"], TEXT_CHARS)
        .ok_or(Refusal::Shape("agentActivity.content.body"))?;
    let message = id(&a["id"], "agentActivity.id")?;
    Ok(Inbound {
        event: Event::Mention(Mention {
            binding,
            message,
            author,
            text: body,
        }),
        thread: None,
    })
}

/// The part of a binding that names its thread, for message names.
fn thread_key(b: &Binding) -> String {
    match b {
        Binding::Linear {
            thread: LinearThread::Session(s) | LinearThread::Issue(s),
            ..
        } => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn created_payload() -> Value {
        json!({
            "type": "AgentSessionEvent", "action": "created", "organizationId": "org-1",
            "appUserId": "app-1", "oauthClientId": "c", "webhookId": "w", "webhookTimestamp": 1,
            "createdAt": "2026-11-30T00:00:00.000Z",
            "promptContext": "<issue identifier=\"ENG-123\">…</issue>",
            "agentSession": {
                "id": "sess-1", "creatorId": "user-1", "status": "pending", "type": "commentThread",
                "appUserId": "app-1", "organizationId": "org-1", "createdAt": "", "updatedAt": "",
                "comment": {"id": "c1", "body": "@chime please fix the flaky retry test"},
                "issue": {"id": "iss-1", "identifier": "ENG-123", "title": "Retry test flakes",
                    "url": "https://linear.app/acme/issue/ENG-123", "teamId": "t1",
                    "team": {"id": "t1", "key": "ENG", "name": "Engineering"},
                    "description": "Flaky since Monday.\n\nrepo: `acme/api`\n"}
            }
        })
    }

    fn session(v: &Value) -> Inbound {
        match parse(v).unwrap().unwrap() {
            Parsed::Session(i) => i,
            other => panic!("{other:?}"),
        }
    }

    fn plain(v: &Value) -> Plain {
        match parse(v).unwrap().unwrap() {
            Parsed::Plain(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn assignments_and_comment_mentions() {
        let issue = json!({"id": "iss-1", "identifier": "ENG-9", "title": "Fix it", "url": "https://linear.app/a/issue/ENG-9",
            "teamId": "t1", "description": "repo: acme/web", "assigneeId": "app-user", "updatedAt": "2026-11-30T10:00:00Z"});
        let mut v = json!({"type": "Issue", "action": "update", "organizationId": "org-1", "actor": {"id": "u1"},
            "data": issue, "updatedFrom": {"assigneeId": null}});
        let p = plain(&v);
        assert_eq!(p.thread.binding.to_string(), "linear:org-1/issue/iss-1");
        assert_eq!(
            (
                p.thread.team_key.as_str(),
                p.thread.repo_hint.as_ref().unwrap().as_str()
            ),
            ("ENG", "acme/web")
        );
        let Event::Mention(m) = plain(&v).for_chime("app-user", "chime").unwrap().event else {
            panic!()
        };
        assert_eq!(
            (m.text.as_str(), m.author.user.as_str()),
            ("Work on ENG-9: Fix it", "u1")
        );
        assert!(plain(&v).for_chime("someone-else", "chime").is_none());
        v["updatedFrom"] = json!({"title": "old"});
        assert_eq!(
            parse(&v).unwrap(),
            None,
            "an update that did not change the assignee"
        );

        let c = |body: &str, user: &str| {
            json!({"type": "Comment", "action": "create", "organizationId": "org-1",
            "data": {"id": "cm-1", "body": body, "userId": user, "issueId": "iss-1",
                "issue": {"id": "iss-1", "identifier": "ENG-9", "title": "Fix it", "url": "https://linear.app/a/issue/ENG-9", "teamId": "t1"}}})
        };
        let Event::Mention(m) = plain(&c("@Chime please fix the retry", "u1"))
            .for_chime("app-user", "chime")
            .unwrap()
            .event
        else {
            panic!()
        };
        assert_eq!(m.text, "please fix the retry");
        assert!(
            plain(&c("[@Chime](https://linear.app/a/profiles/chime) go", "u1"))
                .for_chime("app-user", "chime")
                .is_some()
        );
        assert!(plain(&c("no mention here, chime", "u1"))
            .for_chime("app-user", "chime")
            .is_none());
        assert!(plain(&c("emails like x@chime.dev are not mentions", "u1"))
            .for_chime("app-user", "chime")
            .is_none());
        assert!(plain(&c("@chime my own comment", "app-user"))
            .for_chime("app-user", "chime")
            .is_none());
        let mut doc = c("@chime", "u1");
        doc["data"].as_object_mut().unwrap().remove("issue");
        assert_eq!(parse(&doc).unwrap(), None);
    }

    #[test]
    fn created_mention_and_delegation() {
        let v = created_payload();
        let got = session(&v);
        let Event::Mention(m) = &got.event else {
            panic!("{got:?}")
        };
        assert_eq!(m.binding.to_string(), "linear:org-1/sess-1");
        assert_eq!(m.author.user.as_str(), "user-1");
        assert_eq!(m.text, "@chime please fix the flaky retry test");
        let t = got.thread.unwrap();
        assert_eq!(
            (t.identifier.as_str(), t.team_key.as_str()),
            ("ENG-123", "ENG")
        );
        assert_eq!(t.repo_hint.unwrap().as_str(), "acme/api");
        assert!(!t.delegated);

        let mut d = created_payload();
        d["agentSession"].as_object_mut().unwrap().remove("comment");
        let got = session(&d);
        let Event::Mention(m) = &got.event else {
            panic!()
        };
        assert_eq!(m.text, "Work on ENG-123: Retry test flakes");
        assert!(got.thread.unwrap().delegated);
    }

    #[test]
    fn prompted_and_stop() {
        let mut v = json!({"type": "AgentSessionEvent", "action": "prompted", "organizationId": "org-1",
            "agentSession": {"id": "sess-1"},
            "agentActivity": {"id": "act-2", "userId": "user-1", "content": {"type": "prompt", "body": "also the docs"}}});
        let Event::Mention(m) = session(&v).event else {
            panic!()
        };
        assert_eq!(
            (m.text.as_str(), m.message.as_str()),
            ("also the docs", "act-2")
        );
        v["agentActivity"]["signal"] = json!("stop");
        assert!(matches!(session(&v).event, Event::StopRequested(_)));
    }

    #[test]
    fn other_types_are_ignored_and_hostile_shapes_refused() {
        for v in [
            json!({"type": "Issue", "action": "create"}),
            json!({"type": "AgentSessionEvent", "action": "updated"}),
            json!({}),
            json!([1, 2]),
        ] {
            assert_eq!(parse(&v).unwrap(), None, "{v}");
        }
        let hostile = [
            ("/organizationId", json!("org/../x")),
            ("/organizationId", json!(7)),
            ("/agentSession/id", json!("a:b")),
            ("/agentSession/id", json!("x".repeat(65))),
            ("/agentSession/creatorId", json!("")),
            ("/agentSession/issue/identifier", json!("ENG 1\n")),
            ("/agentSession/issue/title", json!(null)),
            ("/agentSession/issue/id", json!({"x": 1})),
        ];
        for (pointer, bad) in hostile {
            let mut v = created_payload();
            *v.pointer_mut(pointer).unwrap() = bad;
            assert!(parse(&v).is_err(), "{pointer}: {v}");
        }
        let mut v = created_payload();
        v["agentSession"]["issue"]["url"] = json!("javascript:alert(1)");
        assert_eq!(session(&v).thread.unwrap().url, "");
        v["agentSession"]["comment"]["body"] = json!("x".repeat(50_000));
        let Event::Mention(m) = session(&v).event else {
            panic!()
        };
        assert_eq!(m.text.chars().count(), TEXT_CHARS);
    }

    #[test]
    fn repo_lines() {
        assert_eq!(repo_line("Repo: acme/web").unwrap().as_str(), "acme/web");
        assert_eq!(
            repo_line("- repo: `acme/web`").unwrap().as_str(),
            "acme/web"
        );
        assert!(repo_line("repo: ../etc").is_none());
        assert!(repo_line("the repo is acme/web").is_none());
    }
}
