//! Delivers Linear outbox rows through the GraphQL API, with the token of the row's workspace.
//! Activities and comments carry an id derived from the row's key, so a send retried after a
//! lost answer lands once.

use super::api::{CallError, LinearApi};
use super::graphql;
use super::reporter::LinearOp;
use crate::binding::{Binding, Surface};
use crate::db::Db;
use crate::queue::outbox::{self, backoff, Deliver, Delivery, OutboxRow};
use async_trait::async_trait;
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

pub struct LinearSender {
    pub api: Arc<LinearApi>,
    /// `LINEAR_ACCESS_TOKEN`, for a workspace without an OAuth install.
    pub fallback_token: Option<SecretString>,
}

/// A UUID v4 (as Linear asks for) that is the same for every attempt of one row.
pub fn stable_id(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

impl From<CallError> for Delivery {
    fn from(e: CallError) -> Self {
        match e {
            CallError::RateLimited(d) => Delivery::Wait(d, "rate limited by Linear".into()),
            CallError::Transient(why) => Delivery::RetryIn(backoff(1), why),
            CallError::Permanent(why) => Delivery::Failed(why),
        }
    }
}

#[async_trait]
impl Deliver for LinearSender {
    fn lane(&self) -> &'static str {
        Surface::Linear.as_str()
    }

    async fn deliver(&self, db: &Db, row: &OutboxRow) -> Delivery {
        let op: LinearOp = match row.op() {
            Ok(op) => op,
            Err(refused) => return refused,
        };
        let org = match row.binding() {
            Ok(Binding::Linear { org, .. }) => org,
            Ok(other) => {
                return Delivery::Failed(format!("a Linear row for another surface: {other}"))
            }
            Err(refused) => return refused,
        };
        let token = match super::store::token(db, &org, self.fallback_token.as_ref()).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Delivery::Failed(format!(
                    "no Linear token for workspace {org}: install Chime there with OAuth, or set LINEAR_ACCESS_TOKEN"
                ))
            }
            Err(e) => return Delivery::RetryIn(backoff(row.attempts), format!("{e:#}")),
        };
        if row.ref_key.is_some() {
            // A milestone a later one (or the answer) has already replaced.
            match outbox::is_superseded(db, row).await {
                Ok(true) => return Delivery::Superseded,
                Ok(false) => {}
                Err(e) => return Delivery::RetryIn(backoff(row.attempts), format!("{e:#}")),
            }
        }
        let id = stable_id(&row.idempotency_key);
        let result = match &op {
            LinearOp::Activity {
                session,
                content,
                signal,
                signal_metadata,
            } => {
                let mut input = json!({"id": id, "agentSessionId": session, "content": content});
                if let Some(s) = signal {
                    input["signal"] = json!(s);
                }
                if let Some(m) = signal_metadata {
                    input["signalMetadata"] = m.clone();
                }
                self.create(
                    &token,
                    graphql::AGENT_ACTIVITY_CREATE,
                    input,
                    row,
                    "agentActivityCreate",
                )
                .await
            }
            LinearOp::Comment { issue, body } => {
                let input = json!({"id": id, "issueId": issue, "body": body});
                self.create(&token, graphql::COMMENT_CREATE, input, row, "commentCreate")
                    .await
            }
            LinearOp::SessionUrls { session, urls } => self
                .api
                .call(
                    &token,
                    graphql::AGENT_SESSION_UPDATE,
                    json!({"id": session, "input": {"externalUrls": urls}}),
                )
                .await
                .map(|_| None),
            LinearOp::SessionPlan { session, plan } => self
                .api
                .call(
                    &token,
                    graphql::AGENT_SESSION_UPDATE,
                    json!({"id": session, "input": {"plan": plan}}),
                )
                .await
                .map(|_| None),
            LinearOp::Delegate {
                issue,
                set_delegate,
            } => self.delegate(&token, issue, *set_delegate).await,
        };
        match result {
            Ok(r) => Delivery::Sent(r),
            Err(CallError::Transient(why)) => Delivery::RetryIn(backoff(row.attempts), why),
            Err(e) => e.into(),
        }
    }
}

impl LinearSender {
    /// A create mutation with Chime's own id: a retry whose first attempt landed is told the id
    /// is taken, which means it is sent.
    async fn create(
        &self,
        token: &SecretString,
        query: &str,
        input: Value,
        row: &OutboxRow,
        field: &str,
    ) -> Result<Option<String>, CallError> {
        let id = input["id"].as_str().map(str::to_string);
        match self.api.call(token, query, json!({ "input": input })).await {
            Ok(data) if data[field]["success"] == false => Err(CallError::Permanent(format!(
                "{field} answered success: false"
            ))),
            Ok(_) => Ok(id),
            Err(CallError::Permanent(why))
                if row.attempts > 1 && why.to_ascii_lowercase().contains("already exists") =>
            {
                tracing::info!("an earlier attempt already created it");
                Ok(id)
            }
            Err(e) => Err(e),
        }
    }

    /// Moves a delegated issue to its team's first started state when it is not started yet, and
    /// makes Chime its delegate when it has none (Linear's guidance for agents).
    async fn delegate(
        &self,
        token: &SecretString,
        issue: &str,
        set_delegate: bool,
    ) -> Result<Option<String>, CallError> {
        let data = self
            .api
            .call(token, graphql::ISSUE_CONTEXT, json!({ "id": issue }))
            .await?;
        let issue_v = &data["issue"];
        let mut input = serde_json::Map::new();
        let state_type = issue_v["state"]["type"].as_str().unwrap_or_default();
        if !matches!(state_type, "started" | "completed" | "canceled") {
            let first_started = issue_v["team"]["states"]["nodes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["type"] == "started")
                .min_by(|a, b| {
                    let p = |s: &Value| s["position"].as_f64().unwrap_or(f64::MAX);
                    p(a).total_cmp(&p(b))
                });
            if let Some(id) = first_started.and_then(|s| s["id"].as_str()) {
                input.insert("stateId".into(), json!(id));
            }
        }
        if set_delegate && issue_v["delegate"].is_null() {
            let viewer = self.api.call(token, graphql::VIEWER, json!({})).await?;
            if let Some(me) = viewer["viewer"]["id"].as_str() {
                input.insert("delegateId".into(), json!(me));
            }
        }
        if input.is_empty() {
            return Ok(None);
        }
        self.api
            .call(
                token,
                graphql::ISSUE_UPDATE,
                json!({ "id": issue, "input": input }),
            )
            .await?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn stable_ids_are_uuid_v4_and_stable() {
        let a = super::stable_id("task:1:final");
        assert_eq!(a, super::stable_id("task:1:final"));
        assert_ne!(a, super::stable_id("task:2:final"));
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 4);
    }
}
