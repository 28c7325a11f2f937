//! The `webhook` backend, for teams that run their own agent service. Chime POSTs the service a
//! signed task envelope (`integrations/webhook/task.schema.json`, version 1) with an
//! `Idempotency-Key`, and the service reports back with signed callbacks to
//! `POST /backends/webhook/callback` (`callback.schema.json`): progress, then a result or an
//! error. Both directions are signed with `CHIME_WEBHOOK_BACKEND_SECRET` in Slack's scheme
//! (HMAC-SHA256 over `v0:{timestamp}:{body}`, a five-minute replay window), in the headers
//! `X-Chime-Request-Timestamp` and `X-Chime-Signature`.
//!
//! Callbacks go through the inbox like any event and are stored per task; the worker running the
//! turn reads them in order. The envelope's delivery is recorded on the task, so a restart waits
//! for the callbacks instead of sending it again. Stop, and the turn's timeout, send a signed
//! `cancel` envelope.

pub mod callback;

use super::{valid_pr_url, AgentInput, Backend, BackendError, Outcome, Progress};
use crate::config::Config;
use crate::ids::now_ms;
use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The envelope and callback schema version this Chime speaks.
pub const VERSION: u64 = 1;

pub struct WebhookBackend {
    http: reqwest::Client,
    egress: crate::egress::Egress,
    url: String,
    secret: Option<SecretString>,
    callback_url: String,
    timeout: Duration,
    poll: Duration,
}

impl WebhookBackend {
    pub fn new(
        config: &Config,
        url: &str,
        timeout_secs: u64,
        poll_ms: u64,
    ) -> anyhow::Result<Self> {
        let egress = crate::egress::Egress::from_config(config);
        let public = config
            .server
            .public_url
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('/');
        Ok(Self {
            http: egress.http_client(Duration::from_secs(10), Duration::from_secs(30))?,
            egress,
            url: url.to_string(),
            secret: config.secrets.webhook_backend_secret.clone(),
            callback_url: format!("{public}/backends/webhook/callback"),
            timeout: Duration::from_secs(timeout_secs),
            poll: Duration::from_millis(poll_ms),
        })
    }

    /// POSTs a signed envelope, trying again twice when the service cannot be reached or
    /// answers 5xx (the Idempotency-Key makes a repeat safe); any 2xx is taken.
    async fn post(&self, task: &str, body: &Value) -> Result<(), BackendError> {
        let mut last = BackendError::Failed(String::new());
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            match self.post_once(task, body).await {
                Ok(()) => return Ok(()),
                Err((retry, e)) if retry => last = e,
                Err((_, e)) => return Err(e),
            }
        }
        Err(last)
    }

    /// One POST; the error says whether it is worth another try.
    async fn post_once(&self, task: &str, body: &Value) -> Result<(), (bool, BackendError)> {
        let fail = |retry: bool, text: String| (retry, BackendError::Failed(text));
        self.egress
            .check(&self.url)
            .map_err(|e| fail(false, format!("the agent service: {e}")))?;
        let secret = self
            .secret
            .as_ref()
            .ok_or_else(|| fail(false, "CHIME_WEBHOOK_BACKEND_SECRET is not set".into()))?;
        let body = body.to_string();
        let ts = (now_ms() / 1000).to_string();
        let r = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", task)
            .header("x-chime-request-timestamp", &ts)
            .header(
                "x-chime-signature",
                crate::signing::sign(secret, &ts, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let why = crate::egress::why(&e);
                fail(true, format!("cannot reach the agent service: {why}"))
            })?;
        if !r.status().is_success() {
            let status = r.status();
            let text: String = r
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            return Err(fail(
                status.is_server_error(),
                format!("the agent service refused the task ({status}): {text}"),
            ));
        }
        Ok(())
    }

    async fn turn(
        &self,
        input: &AgentInput,
        progress: &mpsc::Sender<Progress>,
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Result<Outcome, BackendError> {
        let task = input.task_id.as_str();
        if input.remote.is_none() {
            let previous = input
                .history
                .iter()
                .rev()
                .find_map(|t| t.outcome.as_ref().and_then(|o| o.remote.clone()));
            let envelope = json!({
                "version": VERSION,
                "type": "task",
                "task_id": task,
                "session_id": input.session_id.as_str(),
                "turn": input.turn_no,
                "requester": input.requester,
                "repo": input.repo.as_ref().map(|r| r.as_str()),
                "prompt": input.prompt,
                "input": input.rendered,
                "previous": previous,
                "callback_url": self.callback_url,
            });
            self.post(task, &envelope).await?;
            input.checkpoint.record("sent").await?;
        }
        let mut seen = 0;
        loop {
            for r in input.checkpoint.reports(seen).await? {
                seen = r.seq;
                match r.kind.as_str() {
                    "progress" => {
                        let text: String = r.text.chars().take(500).collect();
                        let _ = progress.try_send(Progress::new(text));
                    }
                    "result" => {
                        return Ok(Outcome {
                            summary: r.text,
                            pr_url: r.pr_url.as_deref().and_then(valid_pr_url),
                            branch: r.branch,
                            remote: r.remote,
                            ..Outcome::default()
                        })
                    }
                    _ => {
                        return Err(BackendError::Failed(format!(
                            "the agent service failed: {}",
                            r.text.chars().take(500).collect::<String>()
                        )))
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.poll) => {}
                _ = tokio::time::sleep_until(deadline) => {
                    // The service would go on working for a turn that has ended here.
                    self.cancel(task).await;
                    return Err(BackendError::TimedOut(self.timeout));
                }
                _ = cancel.cancelled() => {
                    if input.checkpoint.stop_requested() {
                        self.cancel(task).await;
                    }
                    return Err(BackendError::Cancelled);
                }
            }
        }
    }
}

impl WebhookBackend {
    /// Asks the service to end the work for `task` (a signed `cancel` envelope), best effort.
    async fn cancel(&self, task: &str) {
        let stop = json!({ "version": VERSION, "type": "cancel", "task_id": task });
        if let Err(e) = self.post(task, &stop).await {
            tracing::warn!(error = %e, "could not ask the agent service to stop");
        }
    }
}

#[async_trait]
impl Backend for WebhookBackend {
    async fn run(
        &self,
        input: &AgentInput,
        progress: mpsc::Sender<Progress>,
        cancel: CancellationToken,
    ) -> Result<Outcome, BackendError> {
        let deadline = Instant::now() + self.timeout;
        // The turn checks the deadline itself (and sends `cancel`); this bounds a delivery that
        // hangs past it.
        let limit = self.timeout + Duration::from_secs(30);
        match tokio::time::timeout(limit, self.turn(input, &progress, &cancel, deadline)).await {
            Ok(r) => r,
            Err(_) => Err(BackendError::TimedOut(self.timeout)),
        }
    }
}
