//! Plan approval (`approval = "plan"`): a plan turn's **Approve** makes the turn that does the
//! work; its **Revise** asks for what to change, and the next request in the thread makes a new
//! plan. Each plan is decided once, by its requester or an admin (checked by the caller), and the
//! decision is recorded in `plan_decisions`.

use crate::connector::Reporter;
use crate::context::Ctx;
use crate::ids::{now_ms, UserId};
use crate::session::{self, turns, Task, TaskState, TurnMode};
use sqlx::{AnyConnection, Row};

/// What a reply that approves a plan says (on surfaces without buttons, like Linear).
pub fn is_approval(text: &str) -> bool {
    let t = text.trim().trim_end_matches(['.', '!']);
    ["approve", "approved", "lgtm", "go ahead"]
        .iter()
        .any(|w| t.eq_ignore_ascii_case(w))
}

/// Whether `task` is a plan that still waits for its decision.
pub async fn is_waiting(conn: &mut AnyConnection, task: &Task) -> anyhow::Result<bool> {
    if task.mode != TurnMode::Plan || task.state != TaskState::Succeeded {
        return Ok(false);
    }
    Ok(decision(conn, task).await?.is_none())
}

async fn decision(conn: &mut AnyConnection, task: &Task) -> anyhow::Result<Option<String>> {
    Ok(
        sqlx::query("SELECT decision FROM plan_decisions WHERE task_id = $1")
            .bind(task.id.as_str())
            .fetch_optional(conn)
            .await?
            .map(|r| r.get("decision")),
    )
}

/// Approves (`approve`) or sends back `task`'s plan in the name of `by`; `key` names the press,
/// for what is said back.
#[tracing::instrument(skip_all, fields(task_id = %task.id, by = %by, approve))]
pub async fn decide(
    ctx: &Ctx,
    tx: &mut AnyConnection,
    reporter: &dyn Reporter,
    task: &Task,
    by: &UserId,
    approve: bool,
    key: &str,
) -> anyhow::Result<()> {
    if task.mode != TurnMode::Plan || task.state != TaskState::Succeeded {
        tracing::info!("no plan waits for a decision on this turn");
        return reporter
            .tell(
                tx,
                &task.binding,
                key,
                by,
                "This turn has no plan waiting for approval.",
            )
            .await;
    }
    if let Some(earlier) = decision(tx, task).await? {
        return already(tx, reporter, task, by, key, &earlier).await;
    }
    // Only the thread's latest plan can be decided: an older one was replaced by a revision.
    let latest = session::latest_task_at(tx, &task.binding).await?;
    if latest.as_ref().is_some_and(|l| l.id != task.id) {
        tracing::info!("a newer turn replaced this plan");
        let text = "This plan was replaced by a newer turn further down the thread.";
        return reporter.tell(tx, &task.binding, key, by, text).await;
    }
    let what = if approve { "approved" } else { "revise" };
    // The first decision stands, also against a press on another replica at the same moment.
    let recorded = sqlx::query(
        "INSERT INTO plan_decisions (task_id, decision, decided_by, decided_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (task_id) DO NOTHING",
    )
    .bind(task.id.as_str())
    .bind(what)
    .bind(by.as_str())
    .bind(now_ms())
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !recorded {
        let earlier = decision(tx, task).await?.unwrap_or_default();
        return already(tx, reporter, task, by, key, &earlier).await;
    }
    if !approve {
        tracing::info!("plan sent back for changes");
        let text = "Reply in this thread and mention me with what to change, and I'll make a new plan. Nothing was changed.";
        return reporter.tell(tx, &task.binding, key, by, text).await;
    }
    match turns::approve_plan(tx, &ctx.config, reporter, task, by).await? {
        Some(work) => {
            sqlx::query("UPDATE plan_decisions SET next_task = $1 WHERE task_id = $2")
                .bind(work.id.as_str())
                .bind(task.id.as_str())
                .execute(&mut *tx)
                .await?;
            tracing::info!(work_task = %work.id, "plan approved; its work is queued");
        }
        None => tracing::warn!("plan approved, but its work turn already existed"),
    }
    Ok(())
}

/// Tells `by` that the plan was decided before (`earlier`), and changes nothing.
async fn already(
    tx: &mut AnyConnection,
    reporter: &dyn Reporter,
    task: &Task,
    by: &UserId,
    key: &str,
    earlier: &str,
) -> anyhow::Result<()> {
    tracing::info!(earlier, "plan already decided; press ignored");
    let text = match earlier {
        "approved" => "This plan was already approved; its work is further down the thread.",
        _ => "This plan was already sent back for changes: reply in this thread and mention me with what to change.",
    };
    reporter.tell(tx, &task.binding, key, by, text).await
}

#[cfg(test)]
mod tests {
    use super::is_approval;

    #[test]
    fn only_a_plain_approval_approves() {
        for yes in ["approve", " Approve. ", "LGTM", "go ahead!"] {
            assert!(is_approval(yes), "{yes:?}");
        }
        for no in [
            "approve but rename it",
            "don't approve",
            "",
            "approver",
            "ok",
        ] {
            assert!(!is_approval(no), "{no:?}");
        }
    }
}
