//! The `devin` backend: Devin's sessions API. A Chime session's first turn creates a Devin session
//! (with `idempotent`, so a launch repeated after a crash finds the same one); each follow-up is a
//! message to it; a turn ends when the session is finished or blocked (waiting for someone) after
//! having worked on this turn. The session's URL is shown while it works.
//!
//! Remote runs take minutes to hours, so this is a resumable state machine rather than a held
//! call: the session id (and how many messages it had before this turn) is recorded on the task
//! before anything else is done with it, and a claim that finds one resumes polling. Stop ends the
//! Devin session; a shutdown leaves it running for the next claim.

use super::remote::Api;
use super::{valid_pr_url, AgentInput, Backend, BackendError, Outcome, Progress};
use crate::config::Config;
use async_trait::async_trait;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub struct DevinBackend {
    api: Api,
    timeout: Duration,
    poll: Duration,
    tags: Vec<String>,
}

/// Where this turn's work is: the session, and how many messages it held before the turn, so
/// that a resumed claim knows whether its message went out and which replies are this turn's.
/// Recorded on the task as `<session id>@<count>`.
#[derive(Debug, PartialEq)]
struct TurnRef {
    session: String,
    before: usize,
}

impl TurnRef {
    fn parse(s: &str) -> Option<Self> {
        let (session, before) = s.rsplit_once('@')?;
        valid_id(session).then_some(())?;
        Some(Self {
            session: session.to_string(),
            before: before.parse().ok()?,
        })
    }

    fn text(&self) -> String {
        format!("{}@{}", self.session, self.before)
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// What one read of a session means for this turn.
#[derive(Debug, PartialEq)]
enum Seen {
    Working,
    /// Done (finished, or blocked waiting for someone), with its last reply since the turn began.
    Ended {
        reply: Option<String>,
        pr_url: Option<String>,
    },
    Failed(String),
}

/// Reads a session's status for a turn that began after `before` messages.
fn judge(session: &Value, before: usize, worked: bool) -> Seen {
    let messages = session["messages"].as_array().map_or(&[][..], |m| &m[..]);
    let reply = messages
        .iter()
        .skip(before)
        .filter(|m| m["type"] == "devin_message")
        .filter_map(|m| m["message"].as_str())
        .next_back()
        .map(|m| m.chars().take(20_000).collect::<String>());
    match status(session).as_str() {
        // Ended, but only if it is this turn's end: it worked on it, or replied to it.
        "finished" | "blocked" | "stopped" | "exit" if worked || reply.is_some() => Seen::Ended {
            reply,
            pr_url: session["pull_request"]["url"]
                .as_str()
                .and_then(valid_pr_url),
        },
        "expired" => Seen::Failed("the Devin session expired".into()),
        "error" => Seen::Failed("the Devin session stopped with an error".into()),
        s if s.starts_with("suspend") => {
            Seen::Failed("Devin suspended the session; resume it in Devin, then ask again".into())
        }
        // working, resumed, resume_requested… and states added later.
        _ => Seen::Working,
    }
}

impl DevinBackend {
    pub fn new(
        config: &Config,
        timeout_secs: u64,
        poll_ms: u64,
        tags: Vec<String>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            api: Api::new(
                "Devin",
                config.endpoints.devin(),
                config.secrets.devin_api_key.clone(),
                &crate::egress::Egress::from_config(config),
            )?,
            timeout: Duration::from_secs(timeout_secs),
            poll: Duration::from_millis(poll_ms),
            tags,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BackendError> {
        self.api.call(method, path, body).await
    }

    async fn session(&self, id: &str) -> Result<Value, BackendError> {
        self.call(reqwest::Method::GET, &format!("/v1/sessions/{id}"), None)
            .await
    }

    /// Starts this turn's work: a new session, or a message to the session's Devin session.
    async fn start(&self, input: &AgentInput) -> Result<TurnRef, BackendError> {
        let previous = input
            .history
            .iter()
            .rev()
            .find_map(|t| t.outcome.as_ref().and_then(|o| o.remote.clone()))
            .filter(|id| valid_id(id));
        let Some(session) = previous else {
            let created = self
                .call(
                    reqwest::Method::POST,
                    "/v1/sessions",
                    Some(json!({
                        "prompt": input.rendered,
                        // A launch repeated after a crash finds the session it made.
                        "idempotent": true,
                        "title": format!("Chime: {}", input.prompt.chars().take(80).collect::<String>()),
                        "tags": self.tags,
                    })),
                )
                .await?;
            let session = created["session_id"]
                .as_str()
                .filter(|id| valid_id(id))
                .ok_or_else(|| {
                    BackendError::Failed("Devin answered without a session id".into())
                })?;
            let turn = TurnRef {
                session: session.to_string(),
                before: 0,
            };
            input.checkpoint.record(&turn.text()).await?;
            return Ok(turn);
        };
        // Recorded before the message goes out: a resumed claim sends it if the session does
        // not have it yet, so it is sent once.
        let before = self.session(&session).await?["messages"]
            .as_array()
            .map_or(0, Vec::len);
        let turn = TurnRef { session, before };
        input.checkpoint.record(&turn.text()).await?;
        self.send_follow_up(&turn, input).await?;
        Ok(turn)
    }

    async fn send_follow_up(&self, turn: &TurnRef, input: &AgentInput) -> Result<(), BackendError> {
        let r = self
            .call(
                reqwest::Method::POST,
                &format!("/v1/sessions/{}/message", turn.session),
                Some(json!({ "message": input.rendered })),
            )
            .await?;
        match r["detail"].as_str() {
            Some(detail) => Err(BackendError::Failed(format!(
                "Devin did not take the follow-up: {}",
                detail.chars().take(300).collect::<String>()
            ))),
            None => Ok(()),
        }
    }

    async fn turn(
        &self,
        input: &AgentInput,
        progress: &mpsc::Sender<Progress>,
        cancel: &CancellationToken,
    ) -> Result<Outcome, BackendError> {
        let turn = match input.remote.as_deref().and_then(TurnRef::parse) {
            Some(turn) => {
                tracing::info!(session = %turn.session, "resuming a Devin session");
                let s = self.session(&turn.session).await?;
                if turn.before > 0 && s["messages"].as_array().map_or(0, Vec::len) <= turn.before {
                    // The claim that recorded it died before the follow-up went out.
                    self.send_follow_up(&turn, input).await?;
                }
                turn
            }
            None => self.start(input).await?,
        };
        let mut worked = false;
        let mut shown = false;
        // Reads of an ended session with nothing new: a turn Devin finished between two polls
        // without a word still ends, after a few.
        let mut quiet_ends = 0;
        loop {
            let s = self.session(&turn.session).await?;
            if !shown {
                if let Some(url) = s["url"].as_str().and_then(valid_pr_url) {
                    let text = format!("Devin is working on it: {url}");
                    let _ = progress.try_send(Progress::new(text));
                    shown = true;
                }
            }
            match judge(&s, turn.before, worked) {
                Seen::Working if is_working(&s) => worked = true,
                Seen::Working => {
                    quiet_ends += 1;
                    worked |= quiet_ends >= 3 && ended(&s);
                }
                Seen::Ended { reply, pr_url } => {
                    let url = s["url"].as_str().and_then(valid_pr_url);
                    let mut summary = reply.unwrap_or_else(|| "Devin finished.".into());
                    if let Some(url) = url {
                        summary.push_str(&format!("\n\nDevin session: {url}"));
                    }
                    return Ok(Outcome {
                        summary,
                        pr_url,
                        remote: Some(turn.session),
                        ..Outcome::default()
                    });
                }
                Seen::Failed(why) => return Err(BackendError::Failed(why)),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = cancel.cancelled() => {
                    if input.checkpoint.stop_requested() {
                        self.end_session(&turn.session).await;
                    }
                    return Err(BackendError::Cancelled);
                }
            }
        }
    }

    /// Stop: ends the Devin session (a later follow-up starts a new one).
    async fn end_session(&self, id: &str) {
        match self
            .call(reqwest::Method::DELETE, &format!("/v1/sessions/{id}"), None)
            .await
        {
            Ok(_) => tracing::info!(session = id, "ended the Devin session on Stop"),
            Err(e) => {
                tracing::warn!(session = id, error = %e, "could not end the Devin session on Stop")
            }
        }
    }
}

fn status(s: &Value) -> String {
    s["status_enum"]
        .as_str()
        .or_else(|| s["status"].as_str())
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn is_working(s: &Value) -> bool {
    matches!(status(s).as_str(), "working" | "running" | "resumed")
}

fn ended(s: &Value) -> bool {
    matches!(
        status(s).as_str(),
        "finished" | "blocked" | "stopped" | "exit"
    )
}

#[async_trait]
impl Backend for DevinBackend {
    async fn run(
        &self,
        input: &AgentInput,
        progress: mpsc::Sender<Progress>,
        cancel: CancellationToken,
    ) -> Result<Outcome, BackendError> {
        if input.plan_only {
            return Err(super::BackendError::Failed(super::PLAN_REFUSED.into()));
        }
        match tokio::time::timeout(self.timeout, self.turn(input, &progress, &cancel)).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::TimedOut(self.timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turn_refs_round_trip_and_hostile_ones_are_refused() {
        let t = TurnRef {
            session: "devin-abc123".into(),
            before: 4,
        };
        assert_eq!(TurnRef::parse(&t.text()), Some(t));
        for bad in ["", "@1", "x@", "x@-1", "../x@1", "a b@1", "x@1@", "x"] {
            assert_eq!(TurnRef::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_session_ends_a_turn_only_after_working_on_it() {
        let s = |status: &str, msgs: Value| json!({ "status_enum": status, "messages": msgs });
        let earlier = json!([
            { "type": "initial_user_message", "message": "fix it" },
            { "type": "devin_message", "message": "done before" },
        ]);
        // A follow-up just sent: the old "finished" is not this turn's end.
        assert_eq!(
            judge(&s("finished", earlier.clone()), 2, false),
            Seen::Working
        );
        let mut now = earlier.as_array().unwrap().clone();
        now.push(json!({ "type": "user_message", "message": "and the docs?" }));
        now.push(json!({ "type": "devin_message", "message": "docs fixed" }));
        assert_eq!(
            judge(&s("blocked", Value::Array(now)), 2, false),
            Seen::Ended {
                reply: Some("docs fixed".into()),
                pr_url: None
            }
        );
        assert_eq!(
            judge(
                &json!({ "status_enum": "finished", "pull_request": { "url": "https://github.com/a/b/pull/1" } }),
                0,
                true
            ),
            Seen::Ended {
                reply: None,
                pr_url: Some("https://github.com/a/b/pull/1".into())
            }
        );
        assert!(matches!(
            judge(&s("expired", json!([])), 0, true),
            Seen::Failed(_)
        ));
        assert!(matches!(
            judge(&s("suspend_requested", json!([])), 0, true),
            Seen::Failed(_)
        ));
        // Hostile or unknown shapes never end a turn by accident or panic.
        for v in [
            json!(null),
            json!([]),
            json!({ "status_enum": 7 }),
            json!({ "status_enum": "someday" }),
            json!({ "status_enum": "finished", "pull_request": { "url": "javascript:alert(1)" } }),
        ] {
            let _ = judge(&v, 0, false);
        }
        assert_eq!(
            judge(
                &json!({ "status_enum": "finished", "pull_request": { "url": "javascript:x" } }),
                0,
                true
            ),
            Seen::Ended {
                reply: None,
                pr_url: None
            }
        );
    }
}
