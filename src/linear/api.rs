//! Linear's GraphQL API: one POST per operation (the operations are `graphql/*.graphql`), every
//! destination checked by the egress policy, a timeout on every call, and Linear's rate limits
//! honoured: an exhausted bucket (`x-ratelimit-*-remaining: 0`) pauses calls until its reset,
//! and a `RATELIMITED` answer waits as long.

use crate::egress::Egress;
use crate::ids::now_ms;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("rate limited by Linear")]
    RateLimited(Duration),
    #[error("temporary failure: {0}")]
    Transient(String),
    #[error("refused by Linear: {0}")]
    Permanent(String),
}

pub struct LinearApi {
    http: reqwest::Client,
    url: String,
    egress: Egress,
    /// Unix ms before which no call is made: a bucket ran out.
    paused_until: AtomicI64,
}

/// How long to wait when Linear limits without saying until when.
const DEFAULT_WAIT: Duration = Duration::from_secs(5);

impl LinearApi {
    pub fn new(url: &str, timeout: Duration, egress: &Egress) -> anyhow::Result<Self> {
        Ok(Self {
            http: egress.http_client(Duration::from_secs(5), timeout)?,
            url: url.to_string(),
            egress: egress.clone(),
            paused_until: AtomicI64::new(0),
        })
    }

    /// The OAuth token endpoint beside the GraphQL one (`…/graphql` → `…/oauth/token`).
    pub fn token_url(&self) -> String {
        let base = self.url.strip_suffix("/graphql").unwrap_or(&self.url);
        format!("{base}/oauth/token")
    }

    /// Runs one operation; returns its `data`.
    pub async fn call(
        &self,
        token: &SecretString,
        query: &str,
        variables: Value,
    ) -> Result<Value, CallError> {
        let r = self.call_once(token, query, variables).await;
        let result = match &r {
            Ok(_) => "ok",
            Err(CallError::RateLimited(_)) => "rate_limited",
            Err(_) => "error",
        };
        crate::metrics::api_call("linear", result);
        r
    }

    async fn call_once(
        &self,
        token: &SecretString,
        query: &str,
        variables: Value,
    ) -> Result<Value, CallError> {
        let wait = self.paused_until.load(Ordering::Relaxed) - now_ms();
        if wait > 0 {
            return Err(CallError::RateLimited(Duration::from_millis(wait as u64)));
        }
        if let Err(refused) = self.egress.check(&self.url) {
            return Err(CallError::Permanent(refused.to_string()));
        }
        let token = token.expose_secret();
        // Personal API keys go as they are; OAuth tokens as Bearer.
        let auth = if token.starts_with("lin_api_") {
            token.to_string()
        } else {
            format!("Bearer {token}")
        };
        let response = self
            .http
            .post(&self.url)
            .header("authorization", auth)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .map_err(|e| CallError::Transient(format!("calling Linear: {}", e.without_url())))?;
        let status = response.status();
        self.note_limits(response.headers());
        let body: Value = match response.json().await {
            Ok(v) => v,
            Err(_) if status.is_server_error() => {
                return Err(CallError::Transient(format!("Linear answered {status}")))
            }
            Err(e) => {
                return Err(CallError::Permanent(format!(
                    "Linear answered {status} with an unreadable body: {}",
                    e.without_url()
                )))
            }
        };
        let errors = body["errors"].as_array().filter(|e| !e.is_empty());
        let limited = errors.is_some_and(|errs| {
            errs.iter()
                .any(|e| e["extensions"]["code"].as_str() == Some("RATELIMITED"))
        });
        if limited || status.as_u16() == 429 {
            let wait = self.pause_for_limit();
            return Err(CallError::RateLimited(wait));
        }
        if status.is_server_error() {
            return Err(CallError::Transient(format!("Linear answered {status}")));
        }
        if let Some(errs) = errors {
            let messages: Vec<&str> = errs.iter().filter_map(|e| e["message"].as_str()).collect();
            let text = crate::templates::one_line(&messages.join("; "), 300);
            return Err(CallError::Permanent(format!("{status}: {text}")));
        }
        if !status.is_success() {
            return Err(CallError::Permanent(format!("Linear answered {status}")));
        }
        Ok(body["data"].clone())
    }

    /// Remembers an exhausted bucket until it resets (Linear gives resets in Unix ms).
    fn note_limits(&self, headers: &reqwest::header::HeaderMap) {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        for bucket in ["requests", "complexity"] {
            let remaining = num(&format!("x-ratelimit-{bucket}-remaining"));
            let reset = num(&format!("x-ratelimit-{bucket}-reset"));
            if let (Some(0), Some(reset)) = (remaining, reset) {
                // A reset in the past or absurdly far off is not trusted beyond an hour.
                let until = reset.clamp(now_ms(), now_ms() + 3_600_000);
                self.paused_until.fetch_max(until, Ordering::Relaxed);
                tracing::warn!(
                    bucket,
                    reset_ms = until,
                    "Linear rate limit used up; pausing calls until it resets"
                );
            }
        }
    }

    fn pause_for_limit(&self) -> Duration {
        let now = now_ms();
        let known = self.paused_until.load(Ordering::Relaxed) - now;
        if known > 0 {
            return Duration::from_millis(known as u64);
        }
        self.paused_until
            .fetch_max(now + DEFAULT_WAIT.as_millis() as i64, Ordering::Relaxed);
        DEFAULT_WAIT
    }

    /// Trades an OAuth code for a token (`actor=app` installs): the token endpoint is a form POST.
    pub async fn exchange_code(
        &self,
        client_id: &str,
        client_secret: &SecretString,
        redirect_uri: &str,
        code: &str,
    ) -> anyhow::Result<SecretString> {
        let url = self.token_url();
        self.egress.check(&url)?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", client_id),
            ("client_secret", client_secret.expose_secret()),
        ];
        let response =
            self.http.post(&url).form(&form).send().await.map_err(|e| {
                anyhow::anyhow!("calling Linear's token endpoint: {}", e.without_url())
            })?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match body["access_token"].as_str() {
            Some(t) if status.is_success() && !t.is_empty() => {
                Ok(SecretString::from(t.to_string()))
            }
            _ => anyhow::bail!(
                "Linear refused the OAuth code ({status}): {}",
                crate::templates::one_line(
                    body["error"].as_str().unwrap_or("no reason given"),
                    200
                )
            ),
        }
    }
}
