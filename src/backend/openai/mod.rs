//! The `openai` backend: a turn is one streamed call to an OpenAI-compatible model, for
//! questions, plans and reviews. It speaks the Responses API (a follow-up continues the remote
//! conversation with `previous_response_id`, sending only the new turn) or, for servers without
//! it, Chat Completions (a follow-up sends the whole history again, which Chime's input carries). The base URL
//! is `OPENAI_BASE_URL`, so a model server on the team's own network (vLLM, Ollama, llama.cpp)
//! works where there is no outside network.
//!
//! A call is short-lived, so unlike the remote coding agents it is a held future: a restart
//! mid-answer asks again, as the worker's lease recovery does for any turn.

mod stream;

use super::{AgentInput, Backend, BackendError, Outcome, Progress};
use crate::config::{Config, OpenaiApi};
use async_trait::async_trait;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use std::time::Duration;
use stream::{Answer, Step};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Tries per call: the first and two retries on 408, 409, 429, 5xx and failed connections, as
/// OpenAI's own clients do.
const ATTEMPTS: u32 = 3;
/// The longest a `retry-after` is honoured for.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

pub struct OpenaiBackend {
    name: String,
    http: reqwest::Client,
    base: String,
    key: Option<SecretString>,
    model: String,
    api: OpenaiApi,
    timeout: Duration,
    instructions: Option<String>,
    max_output_tokens: Option<u32>,
    egress: crate::egress::Egress,
}

impl OpenaiBackend {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        config: &Config,
        model: &str,
        api: OpenaiApi,
        timeout_secs: u64,
        instructions: Option<String>,
        max_output_tokens: Option<u32>,
    ) -> anyhow::Result<Self> {
        let egress = crate::egress::Egress::from_config(config);
        // The turn's own timeout bounds a streamed answer; this only keeps a client from hanging.
        let http = egress.http_client(
            Duration::from_secs(10),
            Duration::from_secs(timeout_secs.saturating_add(60)),
        )?;
        Ok(Self {
            name: name.to_string(),
            http,
            egress,
            base: config.endpoints.openai().to_string(),
            key: config.secrets.openai_api_key.clone(),
            model: model.to_string(),
            api,
            timeout: Duration::from_secs(timeout_secs),
            instructions,
            max_output_tokens,
        })
    }

    /// The request body for this turn.
    fn body(&self, input: &AgentInput) -> (String, Value) {
        match self.api {
            OpenaiApi::Responses => {
                // The remote conversation holds the earlier turns: a follow-up sends only its own.
                let previous = previous_response(input);
                let text = match previous {
                    Some(_) => &input.rendered_turn,
                    None => &input.rendered,
                };
                let mut body = json!({
                    "model": self.model,
                    "input": text,
                    "stream": true,
                    // Stored remotely, so that the next turn can continue from it.
                    "store": true,
                });
                if let Some(i) = &self.instructions {
                    body["instructions"] = json!(i);
                }
                if let Some(n) = self.max_output_tokens {
                    body["max_output_tokens"] = json!(n);
                }
                if let Some(id) = previous {
                    body["previous_response_id"] = json!(id);
                }
                (format!("{}/responses", self.base), body)
            }
            OpenaiApi::Chat => {
                let mut messages = vec![];
                if let Some(i) = &self.instructions {
                    messages.push(json!({ "role": "system", "content": i }));
                }
                // Chime's input holds the earlier turns of the session, quoted.
                messages.push(json!({ "role": "user", "content": input.rendered }));
                let mut body = json!({
                    "model": self.model,
                    "messages": messages,
                    "stream": true,
                    // A last chunk with the turn's token usage, for spend and budgets.
                    "stream_options": { "include_usage": true },
                });
                if let Some(n) = self.max_output_tokens {
                    body["max_tokens"] = json!(n);
                }
                (format!("{}/chat/completions", self.base), body)
            }
        }
    }

    /// Sends the request, retrying what is worth retrying; returns the streaming response.
    async fn send(&self, url: &str, body: &Value) -> Result<reqwest::Response, BackendError> {
        self.egress
            .check(url)
            .map_err(|e| BackendError::Failed(format!("the model server: {e}")))?;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let mut req = self
                .http
                .post(url)
                .header("accept", "text/event-stream")
                .json(body);
            if let Some(key) = &self.key {
                req = req.bearer_auth(key.expose_secret());
            }
            let wait = match req.send().await {
                Ok(r) if r.status().is_success() => return Ok(r),
                Ok(r) => {
                    let status = r.status();
                    let retry_after = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<f64>().ok())
                        .map(|s| Duration::from_secs_f64(s.clamp(0.0, 60.0)));
                    last = self.refusal(status, r.text().await.unwrap_or_default());
                    if !retryable(status) {
                        return Err(BackendError::Failed(last));
                    }
                    retry_after
                }
                Err(e) => {
                    last = format!(
                        "cannot reach the model server at {}: {}",
                        self.base,
                        crate::egress::why(&e)
                    );
                    None
                }
            };
            if attempt < ATTEMPTS {
                let backoff = Duration::from_millis(500 << (attempt - 1));
                tokio::time::sleep(wait.unwrap_or(backoff).min(MAX_BACKOFF)).await;
            }
        }
        Err(BackendError::Failed(last))
    }

    /// What a refusal says, without the key if the server echoed it.
    fn refusal(&self, status: StatusCode, body: String) -> String {
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.chars().take(300).collect());
        let mut text = format!(
            "the model server answered {status}: {}",
            message.chars().take(300).collect::<String>()
        );
        if let Some(key) = &self.key {
            let key = key.expose_secret();
            if key.len() >= 8 {
                text = text.replace(key, "[redacted]");
            }
        }
        if status == StatusCode::NOT_FOUND && self.api == OpenaiApi::Responses {
            text.push_str(&format!(
                " (a server without the Responses API needs api = \"chat\" in [backends.{}])",
                self.name
            ));
        }
        text
    }

    async fn turn(
        &self,
        input: &AgentInput,
        progress: &mpsc::Sender<Progress>,
    ) -> Result<Outcome, BackendError> {
        let (url, body) = self.body(input);
        let response = self.send(&url, &body).await?;
        let mut events = response.bytes_stream().eventsource();
        let mut answer = Answer::default();
        let mut finished = false;
        while let Some(event) = events.next().await {
            let event = event.map_err(|e| {
                BackendError::Failed(format!("the model's answer stream broke off: {e}"))
            })?;
            match answer.feed(self.api, &event.data)? {
                Step::Continue => {}
                Step::Milestone(text) => {
                    let _ = progress.try_send(Progress::new(text));
                }
                Step::Done => {
                    finished = true;
                    break;
                }
            }
            if answer.truncated {
                break;
            }
        }
        if !finished && !answer.truncated {
            return Err(BackendError::Failed(
                "the model's answer stream ended before the answer was complete".into(),
            ));
        }
        let mut summary = answer.text;
        if answer.truncated {
            summary.push_str("\n\n(The answer was longer; Chime kept the first part.)");
        }
        if let Some(why) = answer.cut_short {
            summary.push_str(&format!("\n\n(The model stopped early: {why}.)"));
        }
        if summary.trim().is_empty() {
            return Err(BackendError::Failed(
                "the model returned an empty answer".into(),
            ));
        }
        Ok(Outcome {
            summary,
            remote: answer.response_id,
            usage: answer.usage,
            ..Outcome::default()
        })
    }
}

/// The Responses id the last answered turn of this session ended with, to continue from.
fn previous_response(input: &AgentInput) -> Option<&str> {
    input
        .history
        .iter()
        .rev()
        .find_map(|t| t.outcome.as_ref().and_then(|o| o.remote.as_deref()))
}

fn retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 409 | 429) || status.is_server_error()
}

#[async_trait]
impl Backend for OpenaiBackend {
    async fn run(
        &self,
        input: &AgentInput,
        progress: mpsc::Sender<Progress>,
        cancel: CancellationToken,
    ) -> Result<Outcome, BackendError> {
        tokio::select! {
            r = tokio::time::timeout(self.timeout, self.turn(input, &progress)) => {
                r.unwrap_or(Err(BackendError::TimedOut(self.timeout)))
            }
            // Dropping the request closes the connection: the server stops generating.
            _ = cancel.cancelled() => Err(BackendError::Cancelled),
        }
    }
}
