//! How Chime's answers reach a person's editors: protocol messages (`session_update`, `result`,
//! `suggestion`, `error`) written as outbox rows; the sender appends them to the person's
//! `ide_outbound` queue, which every connection of theirs streams in order.

use crate::binding::Binding;
use crate::connector::Reporter;
use crate::guard::Guard;
use crate::ids::{RepoName, UserId};
use crate::policy::live::{Offer, OfferAnswer};
use crate::queue::outbox::{self, NewRow};
use crate::session::{Task, TaskState};
use async_trait::async_trait;
use serde_json::{json, Value};
use sqlx::AnyConnection;
use std::sync::Arc;

/// Text an editor shows is cut to this many characters (the full result stays in Chime).
const TEXT_CHARS: usize = 20_000;

pub struct IdeReporter {
    pub guard: Arc<Guard>,
}

/// The session a binding's messages are about (the hand-off that opened it).
fn session_of(b: &Binding) -> String {
    match b {
        Binding::Ide { handoff, .. } => handoff.clone(),
        other => other.to_string(),
    }
}

fn cut(s: &str) -> String {
    crate::templates::truncate_chars(s, TEXT_CHARS)
}

impl IdeReporter {
    async fn write(
        &self,
        conn: &mut AnyConnection,
        target: &Binding,
        key: &str,
        message: Value,
    ) -> anyhow::Result<()> {
        let kind = message["type"].as_str().unwrap_or("message").to_string();
        let row = NewRow {
            target,
            kind: &kind,
            op: &message,
            key,
            ref_key: None,
            last: false,
        };
        outbox::enqueue(conn, &self.guard, row).await?;
        Ok(())
    }

    async fn update(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        key: &str,
        text: &str,
    ) -> anyhow::Result<()> {
        let message = json!({ "v": 1, "type": "session_update", "session": session_of(&task.binding),
            "state": task.state.as_str(), "text": cut(text) });
        self.write(conn, &task.binding, key, message).await
    }
}

#[async_trait]
impl Reporter for IdeReporter {
    async fn ack(&self, _conn: &mut AnyConnection, _b: &Binding, _m: &str) -> anyhow::Result<()> {
        // The editor already had its `ack` when the hand-off was stored.
        Ok(())
    }

    async fn show_status(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()> {
        let text = format!(
            "Queued for {} ({})",
            task.backend,
            task.repo.as_ref().map_or("no repository", |r| r.as_str())
        );
        self.update(conn, task, &format!("task:{}:status", task.id), &text)
            .await
    }

    async fn update_status(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        progress: &str,
    ) -> anyhow::Result<()> {
        let key = format!(
            "task:{}:progress:{}",
            task.id,
            uuid::Uuid::new_v4().simple()
        );
        self.update(conn, task, &key, progress).await
    }

    async fn show_result(&self, conn: &mut AnyConnection, task: &Task) -> anyhow::Result<()> {
        let (text, pr) = match (&task.state, &task.outcome, &task.error) {
            (TaskState::Succeeded, Some(o), _) => (o.summary.clone(), o.pr_url.clone()),
            (TaskState::Cancelled, _, _) => ("Stopped.".to_string(), None),
            (_, _, Some(e)) => (e.clone(), None),
            _ => (String::new(), None),
        };
        let message = json!({ "v": 1, "type": "result", "session": session_of(&task.binding),
            "state": task.state.as_str(), "text": cut(&self.guard.redact(&text, "result")),
            "pr_url": pr.as_deref().and_then(crate::backend::valid_pr_url) });
        self.write(
            conn,
            &task.binding,
            &format!("task:{}:final", task.id),
            message,
        )
        .await
    }

    async fn ask_repo(
        &self,
        conn: &mut AnyConnection,
        task: &Task,
        repos: &[RepoName],
    ) -> anyhow::Result<()> {
        let names: Vec<&str> = repos.iter().map(|r| r.as_str()).collect();
        let message = json!({ "v": 1, "type": "error", "session": session_of(&task.binding),
            "reason": format!("Chime does not know this workspace's repository (its hello's remote is not one of Chime's [repos]: {}). Hand off again with `repo=owner/name` in the instruction.", names.join(", ")) });
        self.write(
            conn,
            &task.binding,
            &format!("task:{}:status", task.id),
            message,
        )
        .await
    }

    async fn tell(
        &self,
        conn: &mut AnyConnection,
        binding: &Binding,
        key: &str,
        _to: &UserId,
        text: &str,
    ) -> anyhow::Result<()> {
        let message =
            json!({ "v": 1, "type": "error", "session": session_of(binding), "reason": cut(text) });
        self.write(conn, binding, key, message).await
    }

    async fn show_mirrored(
        &self,
        conn: &mut AnyConnection,
        at: &Binding,
        task: &Task,
        origin: &str,
        _result: bool,
    ) -> anyhow::Result<()> {
        let text = format!("A turn asked in {origin} ended: {}", task.state.as_str());
        let message = json!({ "v": 1, "type": "session_update", "session": session_of(at),
            "state": task.state.as_str(), "text": text });
        self.write(conn, at, &format!("task:{}:mirror:{at}", task.id), message)
            .await
    }

    async fn offer(&self, conn: &mut AnyConnection, offer: &Offer) -> anyhow::Result<()> {
        // `session`: what the session_update and result messages will name, once accepted.
        let message = json!({ "v": 1, "type": "suggestion", "id": offer.id, "text": offer.button,
            "why": cut(&offer.reasons.join("; ")), "session": session_of(&offer.binding),
            "actions": ["accept", "dismiss"] });
        self.write(
            conn,
            &offer.binding,
            &format!("offer:{}", offer.id),
            message,
        )
        .await
    }

    async fn offer_answered(
        &self,
        _conn: &mut AnyConnection,
        _offer: &Offer,
        _answer: &OfferAnswer,
    ) -> anyhow::Result<()> {
        // The editor's notification is gone once answered there.
        Ok(())
    }
}
