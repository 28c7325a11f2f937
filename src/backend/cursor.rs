//! The `cursor` backend: Cursor's Cloud Agents API (v1). A Chime session's first turn creates an
//! agent on the session's repository with a first run; each follow-up is a new run of that agent;
//! Stop cancels the run, and so does the turn's timeout. Milestones come from the run's event
//! stream (`cursor_stream.rs`); its end from its status, polled; Cursor opens the pull request
//! itself (`auto_create_pr`) and its URL is the result's.
//!
//! As with `devin`, the run (`<agent id>/<run id>`) is recorded on the task before anything else
//! is done with it, and a claim that finds one resumes polling instead of launching.

use super::cursor_stream;
use super::remote::Api;
use super::{valid_pr_url, AgentInput, Backend, BackendError, Outcome, Progress};
use crate::config::{Config, RepoConfig};
use async_trait::async_trait;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub struct CursorBackend {
    api: Api,
    model: Option<String>,
    auto_create_pr: bool,
    repos: BTreeMap<String, RepoConfig>,
    timeout: Duration,
    poll: Duration,
}

/// An agent and one of its runs, as recorded on the task: `<agent>/<run>`.
#[derive(Debug, PartialEq)]
struct RunRef {
    agent: String,
    run: String,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl RunRef {
    fn parse(s: &str) -> Option<Self> {
        let (agent, run) = s.split_once('/')?;
        (valid_id(agent) && valid_id(run)).then(|| Self {
            agent: agent.into(),
            run: run.into(),
        })
    }

    fn text(&self) -> String {
        format!("{}/{}", self.agent, self.run)
    }
}

/// A run's status, as far as a turn cares.
#[derive(Debug, PartialEq)]
enum RunState {
    Working,
    Finished(Outcome),
    Failed(String),
}

fn judge(run: &Value, agent: &str) -> RunState {
    let status = run["status"].as_str().unwrap_or("").to_ascii_uppercase();
    match status.as_str() {
        "FINISHED" => {
            let branches = run["git"]["branches"]
                .as_array()
                .map_or(&[][..], |b| &b[..]);
            let first = branches.first();
            RunState::Finished(Outcome {
                summary: run["result"]
                    .as_str()
                    .or_else(|| run["summary"].as_str())
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or("Cursor's agent finished.")
                    .chars()
                    .take(20_000)
                    .collect(),
                branch: first
                    .and_then(|b| b["branch"].as_str())
                    .map(|b| b.chars().take(200).collect()),
                pr_url: branches
                    .iter()
                    .find_map(|b| b["prUrl"].as_str().and_then(valid_pr_url)),
                remote: Some(agent.to_string()),
                ..Outcome::default()
            })
        }
        "ERROR" => RunState::Failed(format!(
            "Cursor's agent stopped with an error{}",
            run["error"]["message"]
                .as_str()
                .or_else(|| run["error"].as_str())
                .map(|m| format!(": {}", m.chars().take(300).collect::<String>()))
                .unwrap_or_default()
        )),
        "EXPIRED" => RunState::Failed("Cursor's agent run expired".into()),
        "CANCELLED" | "STOPPED" => RunState::Failed("the run was cancelled in Cursor".into()),
        // CREATING, RUNNING, and statuses added later.
        _ => RunState::Working,
    }
}

impl CursorBackend {
    pub fn new(
        config: &Config,
        model: Option<String>,
        auto_create_pr: bool,
        timeout_secs: u64,
        poll_ms: u64,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            api: Api::new(
                "Cursor",
                config.endpoints.cursor(),
                config.secrets.cursor_api_key.clone(),
                &crate::egress::Egress::from_config(config),
            )?,
            model,
            auto_create_pr,
            repos: config.repos.clone(),
            timeout: Duration::from_secs(timeout_secs),
            poll: Duration::from_millis(poll_ms),
        })
    }

    /// Starts this turn: a new agent with its first run, or a new run of the session's agent.
    async fn start(&self, input: &AgentInput) -> Result<RunRef, BackendError> {
        let previous = input
            .history
            .iter()
            .rev()
            .find_map(|t| t.outcome.as_ref().and_then(|o| o.remote.clone()))
            .filter(|id| valid_id(id));
        let prompt = json!({ "text": input.rendered });
        let (agent, r) = match previous {
            Some(agent) => {
                let r = self
                    .api
                    .call(
                        Method::POST,
                        &format!("/v1/agents/{agent}/runs"),
                        Some(json!({ "prompt": prompt })),
                    )
                    .await?;
                (agent, r)
            }
            None => {
                let repo = input.repo.as_ref().ok_or_else(|| {
                    BackendError::Failed(
                        "the cursor backend works on a repository, and this session has none"
                            .into(),
                    )
                })?;
                let config = self.repos.get(repo.as_str()).ok_or_else(|| {
                    BackendError::Failed(format!("repository {repo} is not configured"))
                })?;
                let mut repo_spec = json!({ "url": config.url });
                if let Some(b) = &config.default_branch {
                    repo_spec["startingRef"] = json!(b);
                }
                let mut body = json!({
                    "prompt": prompt,
                    "repos": [repo_spec],
                    "autoCreatePR": self.auto_create_pr,
                });
                if let Some(m) = &self.model {
                    body["model"] = json!({ "id": m });
                }
                let r = self
                    .api
                    .call(Method::POST, "/v1/agents", Some(body))
                    .await?;
                let agent = r["agent"]["id"]
                    .as_str()
                    .filter(|id| valid_id(id))
                    .ok_or_else(|| {
                        BackendError::Failed("Cursor answered without an agent id".into())
                    })?
                    .to_string();
                (agent, r)
            }
        };
        let run = r["run"]["id"]
            .as_str()
            .or_else(|| r["id"].as_str())
            .filter(|id| valid_id(id))
            .ok_or_else(|| BackendError::Failed("Cursor answered without a run id".into()))?;
        let turn = RunRef {
            agent,
            run: run.to_string(),
        };
        input.checkpoint.record(&turn.text()).await?;
        Ok(turn)
    }

    async fn turn(
        &self,
        input: &AgentInput,
        progress: &mpsc::Sender<Progress>,
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Result<Outcome, BackendError> {
        let turn = match input.remote.as_deref().and_then(RunRef::parse) {
            Some(turn) => {
                tracing::info!(agent = %turn.agent, run = %turn.run, "resuming a Cursor run");
                turn
            }
            None => self.start(input).await?,
        };
        let path = format!("/v1/agents/{}/runs/{}", turn.agent, turn.run);
        let text = "Cursor's agent is working on it".to_string();
        let _ = progress.try_send(Progress::new(text));
        // Milestones come from the run's event stream, followed beside the polling below.
        let ended = Notify::new();
        let stream =
            cursor_stream::follow(&self.api, &path, progress, &ended, self.timeout, self.poll);
        tokio::pin!(stream);
        let mut streaming = true;
        let mut seen = 0;
        loop {
            // A status webhook (Cursor's v0 `statusChange`) ends the turn without another poll.
            for r in input.checkpoint.reports(seen).await? {
                seen = r.seq;
                match r.kind.as_str() {
                    "result" => {
                        return Ok(Outcome {
                            summary: r.text,
                            pr_url: r.pr_url.as_deref().and_then(valid_pr_url),
                            branch: r.branch,
                            remote: Some(turn.agent.clone()),
                            ..Outcome::default()
                        })
                    }
                    "error" => return Err(BackendError::Failed(r.text)),
                    _ => {}
                }
            }
            let run = self.api.call(Method::GET, &path, None).await?;
            match judge(&run, &turn.agent) {
                RunState::Working => {}
                RunState::Finished(outcome) => return Ok(outcome),
                RunState::Failed(why) => return Err(BackendError::Failed(why)),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = ended.notified() => {}
                () = &mut stream, if streaming => streaming = false,
                _ = tokio::time::sleep_until(deadline) => {
                    // The run would go on costing in Cursor for a turn that has ended here.
                    self.cancel_run(&path, &turn).await;
                    return Err(BackendError::TimedOut(self.timeout));
                }
                _ = cancel.cancelled() => {
                    if input.checkpoint.stop_requested() {
                        self.cancel_run(&path, &turn).await;
                    }
                    return Err(BackendError::Cancelled);
                }
            }
        }
    }

    async fn cancel_run(&self, path: &str, turn: &RunRef) {
        match self
            .api
            .call(Method::POST, &format!("{path}/cancel"), None)
            .await
        {
            Ok(_) => tracing::info!(run = %turn.run, "cancelled the Cursor run"),
            Err(e) => {
                tracing::warn!(run = %turn.run, error = %e, "could not cancel the Cursor run")
            }
        }
    }
}

#[async_trait]
impl Backend for CursorBackend {
    async fn run(
        &self,
        input: &AgentInput,
        progress: mpsc::Sender<Progress>,
        cancel: CancellationToken,
    ) -> Result<Outcome, BackendError> {
        if input.plan_only {
            return Err(super::BackendError::Failed(super::PLAN_REFUSED.into()));
        }
        let deadline = Instant::now() + self.timeout;
        // The turn checks the deadline itself (and cancels the run); this bounds a launch or a
        // poll that hangs past it.
        let limit = self.timeout + Duration::from_secs(30);
        match tokio::time::timeout(limit, self.turn(input, &progress, &cancel, deadline)).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::TimedOut(self.timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_refs_round_trip_and_hostile_ones_are_refused() {
        let r = RunRef {
            agent: "bc_abc".into(),
            run: "run-1".into(),
        };
        assert_eq!(RunRef::parse(&r.text()), Some(r));
        for bad in ["", "a", "a/", "/b", "a/b/c", "../a/b", "a b/c", "a/b\n"] {
            assert_eq!(RunRef::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn run_statuses_map_to_a_turn() {
        let done = json!({ "status": "FINISHED", "result": "Fixed it.",
            "git": { "branches": [{ "branch": "cursor/fix", "prUrl": "https://github.com/a/b/pull/3" }] } });
        let RunState::Finished(o) = judge(&done, "bc_1") else {
            panic!()
        };
        assert_eq!(o.summary, "Fixed it.");
        assert_eq!(o.pr_url.as_deref(), Some("https://github.com/a/b/pull/3"));
        assert_eq!(o.remote.as_deref(), Some("bc_1"));
        assert_eq!(
            judge(&json!({ "status": "RUNNING" }), "a"),
            RunState::Working
        );
        assert_eq!(
            judge(&json!({ "status": "SOMETHING_NEW" }), "a"),
            RunState::Working
        );
        assert!(
            matches!(judge(&json!({ "status": "ERROR", "error": { "message": "boom" } }), "a"), RunState::Failed(m) if m.contains("boom"))
        );
        assert!(matches!(
            judge(&json!({ "status": "EXPIRED" }), "a"),
            RunState::Failed(_)
        ));
        // A hostile PR URL is dropped, never shown.
        let RunState::Finished(o) = judge(
            &json!({ "status": "FINISHED", "git": { "branches": [{ "prUrl": "<!channel>" }] } }),
            "a",
        ) else {
            panic!()
        };
        assert_eq!(o.pr_url, None);
        assert_eq!(o.summary, "Cursor's agent finished.");
        for v in [json!(null), json!([]), json!({ "status": 5 })] {
            assert_eq!(judge(&v, "a"), RunState::Working);
        }
    }
}
