//! What the remote coding-agent backends (`devin`, `cursor`) share: a JSON API behind a bearer
//! key, whose refusals become the turn's error with the service's reason.

use super::BackendError;
use crate::egress::Egress;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use std::time::Duration;

pub struct Api {
    /// The service's name in errors ("Devin", "Cursor").
    pub service: &'static str,
    http: reqwest::Client,
    egress: Egress,
    pub base: String,
    key: Option<SecretString>,
}

impl Api {
    pub fn new(
        service: &'static str,
        base: &str,
        key: Option<SecretString>,
        egress: &Egress,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            service,
            http: egress.http_client(Duration::from_secs(10), Duration::from_secs(60))?,
            egress: egress.clone(),
            base: base.to_string(),
            key,
        })
    }

    /// Opens a server-sent event stream (`Last-Event-ID` resumes after an event seen before). The
    /// answer is returned whatever its status: the caller decides what a refusal means.
    pub async fn open_stream(
        &self,
        path: &str,
        last_event_id: Option<&str>,
        limit: Duration,
    ) -> Result<reqwest::Response, String> {
        let url = format!("{}{path}", self.base);
        self.egress.check(&url).map_err(|e| e.to_string())?;
        let mut req = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            // A stream lasts as long as the run, not the client's per-call timeout.
            .timeout(limit);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key.expose_secret());
        }
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        req.send().await.map_err(|e| crate::egress::why(&e))
    }

    /// One call; a refusal is an error naming the status and the service's reason.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BackendError> {
        let service = self.service;
        let url = format!("{}{path}", self.base);
        self.egress
            .check(&url)
            .map_err(|e| BackendError::Failed(format!("{service}: {e}")))?;
        let mut req = self.http.request(method, url);
        if let Some(key) = &self.key {
            req = req.bearer_auth(key.expose_secret());
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.map_err(|e| {
            let why = crate::egress::why(&e);
            BackendError::Failed(format!("cannot reach {service} at {}: {why}", self.base))
        })?;
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(serde_json::from_str(&text).unwrap_or(Value::Null));
        }
        let v = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
        let reason: String = v["detail"]
            .as_str()
            .or_else(|| v["error"]["message"].as_str())
            .or_else(|| v["message"].as_str())
            .or_else(|| v["error"].as_str())
            .unwrap_or(&text)
            .chars()
            .take(300)
            .collect();
        let what = if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            "is unavailable"
        } else {
            "refused the request"
        };
        Err(BackendError::Failed(format!(
            "{service} {what} ({status}): {reason}"
        )))
    }
}
