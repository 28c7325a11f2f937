//! A turn's plan as Slack's streamed reply shows it: `plan_update` and `task_update` chunks for
//! `chat.startStream` / `chat.appendStream` / `chat.stopStream`. Every chunk list carries the
//! whole plan, so the sender may skip an intermediate append (coalescing under Slack's tiers)
//! and the last one still leaves every step right.

use super::blocks::slack_escape;
use crate::guard::Guard;
use crate::session::plan::{Plan, StepStatus};
use crate::session::{Task, TaskState};
use slack_morphism::prelude::{SlackStreamChunk, SlackTaskCardStatus};

/// Slack's bounds on a task card (kept below what the API takes).
const TITLE_CHARS: usize = 150;
const OUTPUT_CHARS: usize = 700;

/// What the plan is called while the turn runs, and once it ended.
fn plan_title(task: &Task) -> &'static str {
    match task.state {
        TaskState::Succeeded => "Done",
        TaskState::Failed => "Failed",
        TaskState::Cancelled => "Stopped",
        _ => "Working on it",
    }
}

fn status(s: StepStatus) -> SlackTaskCardStatus {
    match s {
        StepStatus::Pending => SlackTaskCardStatus::Pending,
        StepStatus::InProgress => SlackTaskCardStatus::InProgress,
        StepStatus::Complete => SlackTaskCardStatus::Complete,
        StepStatus::Error => SlackTaskCardStatus::Error,
    }
}

/// The task's plan as it stands (a finished task's plan as it ended), as chunks: the plan's title,
/// then one task update per step. Step text is the agent's: scanned by the guard and escaped, so
/// it can neither leak a secret nor mention anyone.
pub fn plan_chunks(task: &Task, guard: &Guard) -> Vec<SlackStreamChunk> {
    let plan = Plan::shown(task);
    let clean = |s: &str, max: usize| {
        let s = guard.redact(s, "progress");
        super::blocks::fit(&slack_escape(&s), max)
    };
    let mut chunks = vec![SlackStreamChunk::PlanUpdate {
        title: plan_title(task).to_string(),
    }];
    chunks.extend(plan.steps.iter().map(|s| SlackStreamChunk::TaskUpdate {
        id: s.id.clone().into(),
        title: clean(&s.title, TITLE_CHARS),
        hide_title: None,
        icon: None,
        status: status(s.status),
        details: None,
        output: s.output.as_deref().map(|o| clean(o, OUTPUT_CHARS)),
        sources: None,
    }));
    chunks
}

/// How long a workspace's refusal of streams is remembered: Slack said no (the app has no agent
/// features, an older workspace) for a day; a rate limit, which would have delayed the final
/// result, for ten minutes.
pub const REFUSAL_MS: i64 = 24 * 3600 * 1000;
pub const RATE_LIMITED_MS: i64 = 10 * 60 * 1000;

/// Whether `team` refused streamed replies recently: its turns show an edited card instead.
pub async fn refused(db: &crate::db::Db, team: &str) -> anyhow::Result<bool> {
    let until: Option<i64> =
        sqlx::query_scalar("SELECT retry_at FROM slack_stream_fallbacks WHERE team = $1")
            .bind(team)
            .fetch_optional(&db.pool)
            .await?;
    Ok(until.is_some_and(|t| t > crate::ids::now_ms()))
}

/// Remembers that `team` refused a stream, for `for_ms`; a longer refusal already remembered
/// stands (a rate limit after Slack's "no" must not shorten the day).
pub async fn remember_refusal(
    db: &crate::db::Db,
    team: &str,
    reason: &str,
    for_ms: i64,
) -> anyhow::Result<()> {
    let now = crate::ids::now_ms();
    sqlx::query(
        "INSERT INTO slack_stream_fallbacks (team, reason, retry_at, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (team) DO UPDATE SET reason = $2, retry_at = $3 \
         WHERE slack_stream_fallbacks.retry_at < $3",
    )
    .bind(team)
    .bind(reason)
    .bind(now + for_ms)
    .bind(now)
    .execute(&db.pool)
    .await?;
    Ok(())
}

/// Slack's answer to an append or stop on a message that is no longer streaming.
pub fn not_streaming(code: &str) -> bool {
    matches!(
        code,
        "message_not_in_streaming_state" | "message_not_found" | "cant_update_message"
    )
}
