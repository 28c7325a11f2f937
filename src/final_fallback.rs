//! The last word on a task: when the platform refuses its final card for good (`invalid_blocks`,
//! `msg_too_long`, or transient errors past the attempt cap), a minimal card takes its place, so
//! whoever asked always learns how the task ended.

use crate::backend::valid_pr_url;
use crate::db::Db;
use crate::ids::TaskId;
use crate::outbox::{self, Op, OutboxRow};
use crate::reporter::{self, parse_key};
use crate::session::{self, Task, TaskState};
use crate::templates::{truncate_chars, Rendered, Templates};

/// Queues the fallback for `row` if it was a task's final card; returns whether it queued one.
/// A fallback's own key does not end in `:final`, so a refused fallback is not followed by another.
pub async fn enqueue(
    db: &Db,
    templates: &Templates,
    row: &OutboxRow,
    refusal: &str,
) -> anyhow::Result<bool> {
    let Ok(Op::Update {
        channel,
        last: true,
        ..
    }) = &row.op
    else {
        return Ok(false);
    };
    let Some(task_id) = reporter::final_key_task(&row.idempotency_key) else {
        return Ok(false);
    };
    let mut conn = db.pool.acquire().await?;
    let Some(task) = session::get_task(&mut conn, &TaskId::new(task_id)).await? else {
        return Ok(false);
    };
    let card = card(templates, &task, refusal)?;
    // Edit the status message in place when it exists; when it was never posted, post instead.
    let posted = match &row.ref_key {
        Some(k) => outbox::external_ref(db, k).await?,
        None => None,
    };
    let (op, ref_key) = match posted {
        Some((state, Some(_))) if state == "done" => (
            Op::Update {
                channel: channel.clone(),
                text: card.text,
                blocks: card.blocks,
                last: true,
            },
            row.ref_key.as_deref(),
        ),
        _ => (
            Op::Post {
                channel: channel.clone(),
                thread_ts: parse_key(&row.target).map(|(_, _, ts)| ts),
                text: card.text,
                blocks: card.blocks,
            },
            None,
        ),
    };
    let key = format!("{}:fallback", row.idempotency_key);
    outbox::enqueue(&mut conn, row.surface, &row.target, &key, ref_key, &op).await
}

/// State, a one-line reason and (for a turn that did not succeed) Retry: small enough that no
/// agent output can push it past any limit (rendered by [`reporter::fallback_card`]).
pub fn card(t: &Templates, task: &Task, refusal: &str) -> anyhow::Result<Rendered> {
    let first_line = |s: &str| truncate_chars(s.lines().next().unwrap_or("").trim(), 300);
    let detail = match task.state {
        TaskState::Succeeded => {
            let o = task.outcome.clone().unwrap_or_default();
            let pr = o
                .pr_url
                .as_deref()
                .and_then(valid_pr_url)
                .map(|u| format!(" Pull request: {u}"))
                .unwrap_or_default();
            format!("{}{pr}", first_line(&o.summary))
        }
        TaskState::Cancelled => String::new(),
        _ => first_line(task.error.as_deref().unwrap_or("unknown error")),
    };
    let reason = format!(
        "{detail} (The full card could not be shown: {}.)",
        truncate_chars(refusal, 200)
    );
    reporter::fallback_card(t, task, reason.trim())
}
