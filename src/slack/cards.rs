//! The task cards in Block Kit: status, repository picker, result, fallback and notice. Every
//! field from outside is measured after escaping, so a card fits whatever the agent printed.

use super::blocks::{
    chunk_for_blocks, fit, json_len, slack_len, BlockKit, Rendered, MESSAGE_CHARS, MIN_TEXT_BUDGET,
    SECTION_CHARS,
};
use crate::backend::valid_pr_url;
use crate::ids::{RepoName, UserId};
use crate::policy::live::{Offer, OfferAnswer};
use crate::session::{Task, TaskState, TurnMode};
use crate::templates::truncate_chars;
use serde_json::json;

pub fn status_key(task: &Task) -> String {
    format!("task:{}:status", task.id)
}

pub fn final_key(task: &Task) -> String {
    format!("task:{}:final", task.id)
}

/// The task id in a [`final_key`], when `key` is one.
pub fn final_key_task(key: &str) -> Option<&str> {
    key.strip_prefix("task:")
        .and_then(|k| k.strip_suffix(":final"))
}

/// Caps, in characters as Slack counts them after escaping, on the fields cards show. Together
/// they keep even the largest card far inside [`MESSAGE_CHARS`].
const REPO_LABEL_CHARS: usize = 200;
const BACKEND_CHARS: usize = 60;
const PROGRESS_CHARS: usize = 1500;
const HEADLINE_CHARS: usize = 150;
const BRANCH_CHARS: usize = 200;
const DIFF_STAT_CHARS: usize = 1500;
const REASON_CHARS: usize = 500;
/// Block Kit's limits on a static select's options.
const OPTION_TEXT_CHARS: usize = 75;
const OPTION_VALUE_CHARS: usize = 150;
/// How much of a message the repository picker's options may take.
const OPTIONS_CHARS: usize = 9000;

fn repo_label(task: &Task) -> String {
    fit(
        task.repo.as_ref().map_or("none", |r| r.as_str()),
        REPO_LABEL_CHARS,
    )
}

/// A user id as it goes into Chime's own `<@…>` mention: Slack ids are short and alphanumeric, so
/// anything else in a stored id is dropped rather than left to bend the markup.
pub fn mention_id(id: &str) -> String {
    let id: String = id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    if id.is_empty() {
        "unknown".into()
    } else {
        id
    }
}

/// An id as buttons carry it (and as `ButtonAction::from_parts` accepts it back).
fn button_id(id: &str) -> String {
    id.chars()
        .filter(char::is_ascii_alphanumeric)
        .take(64)
        .collect()
}

fn button_task_id(task: &Task) -> String {
    button_id(task.id.as_str())
}

/// The fields every task card starts with.
fn task_view(task: &Task) -> serde_json::Map<String, serde_json::Value> {
    let view = json!({
        "task_id": button_task_id(task),
        "requester": mention_id(&task.requester),
        "repo_label": repo_label(task),
        "backend": fit(&task.backend, BACKEND_CHARS),
        "turn_no": task.turn_no,
    });
    view.as_object().cloned().unwrap_or_default()
}

/// The status card: who asked, where, which backend, the latest milestone, and Stop.
pub fn status_card(t: &BlockKit, task: &Task, progress: Option<&str>) -> anyhow::Result<Rendered> {
    let mut view = task_view(task);
    view.insert(
        "progress".into(),
        json!(progress
            .map(|p| fit(p.trim(), PROGRESS_CHARS))
            .filter(|p| !p.trim().is_empty())),
    );
    t.message("status", &view)
}

pub fn repo_picker_card(t: &BlockKit, task: &Task, repos: &[RepoName]) -> anyhow::Result<Rendered> {
    let task_id = button_task_id(task);
    // A static select holds at most 100 options; an option's value (task id and repo) is at most
    // 150 characters; and all of them must leave the message inside its size. A repository left
    // out can still be named as `repo=owner/name`.
    let mut room = OPTIONS_CHARS;
    let repos: Vec<_> = repos
        .iter()
        // Only what the button handler will take back.
        .filter(|r| RepoName::parse(r.as_str()).is_some())
        .filter(|r| task_id.len() + 1 + slack_len(r.as_str()) <= OPTION_VALUE_CHARS)
        .take(100)
        .map(|r| (fit(r.as_str(), OPTION_TEXT_CHARS), r.as_str()))
        .take_while(|(label, name)| {
            // Each option's JSON: its two strings (escaped at most twice over) and ~80 of markup.
            let size = 2 * (slack_len(label) + task_id.len() + 1 + slack_len(name)) + 80;
            room = room.saturating_sub(size);
            room > 0
        })
        .map(|(label, name)| json!({ "label": label, "name": name }))
        .collect();
    t.message(
        "repo_picker",
        &json!({ "task_id": task_id, "requester": mention_id(&task.requester), "repos": repos }),
    )
}

/// The final card, chosen by how the task ended.
/// One line of a result's **Checks** list, at most.
const CHECK_CHARS: usize = 300;

pub fn result_card(t: &BlockKit, task: &Task) -> anyhow::Result<Rendered> {
    // JSON escaping (`\"`, `\n`) makes the blocks longer than the text Slack shows, so the budget
    // for the agent's text shrinks until the whole message fits. Every other field is capped, so
    // the message fits long before the budget reaches its floor.
    let mut budget = MESSAGE_CHARS - 2500;
    loop {
        let rendered = render_result(t, task, budget)?;
        let size = json_len(&rendered.blocks);
        if size <= MESSAGE_CHARS || budget <= MIN_TEXT_BUDGET {
            return Ok(rendered);
        }
        budget = (budget.saturating_mul(MESSAGE_CHARS) / size * 9 / 10).min(budget - 1);
    }
}

fn render_result(t: &BlockKit, task: &Task, budget: usize) -> anyhow::Result<Rendered> {
    let mut view = task_view(task);
    let name = match task.state {
        TaskState::Succeeded
            if task
                .outcome
                .as_ref()
                .is_some_and(|o| !o.attempts.is_empty()) =>
        {
            compare_view(&mut view, task, budget);
            "compare"
        }
        // A dry run shows what the planner would be given, like any dry run: nothing to approve.
        TaskState::Succeeded
            if task.mode == TurnMode::Plan && !task.outcome.as_ref().is_some_and(|o| o.dry_run) =>
        {
            let outcome = task.outcome.clone().unwrap_or_default();
            summary_view(&mut view, &outcome.summary, budget);
            view.insert("steps".into(), json!(plan_steps(&outcome.summary)));
            "plan"
        }
        TaskState::Succeeded => {
            let outcome = task.outcome.clone().unwrap_or_default();
            // A change to a repository can be tried again as several attempts side by side.
            let try_ways = task.repo.is_some()
                && outcome.commit.is_some()
                && !outcome.dry_run
                && task.variants <= 1;
            view.insert("try_ways".into(), json!(try_ways.then_some(3)));
            summary_view(&mut view, &outcome.summary, budget);
            view.insert(
                "branch".into(),
                json!(outcome.branch.map(|b| fit(&b, BRANCH_CHARS))),
            );
            view.insert(
                "commit".into(),
                json!(outcome
                    .commit
                    .map(|c| fit(&c.chars().take(12).collect::<String>(), 12))),
            );
            view.insert(
                "diff_stat".into(),
                json!(outcome
                    .diff_stat
                    .map(|d| fit(&d.replace("```", "ʼʼʼ"), DIFF_STAT_CHARS))),
            );
            // The agent's own transcript, not its claims: each check with its outcome.
            let checks: Vec<String> = outcome
                .checks
                .iter()
                .take(8)
                .map(|c| fit(&c.line(), CHECK_CHARS))
                .collect();
            view.insert("checks".into(), json!(checks));
            // Checked again here: a stored outcome may come from before the backend checked it.
            view.insert(
                "pr_url".into(),
                json!(outcome.pr_url.as_deref().and_then(valid_pr_url)),
            );
            if outcome.dry_run {
                "dry_run"
            } else {
                "result"
            }
        }
        TaskState::Cancelled => {
            view.insert(
                "stopped_by".into(),
                json!(mention_id(
                    task.cancelled_by.as_deref().unwrap_or(&task.requester)
                )),
            );
            "stopped"
        }
        _ => {
            let error = task.error.as_deref().unwrap_or("unknown error");
            let error = error.replace("```", "ʼʼʼ");
            view.insert(
                "error_headline".into(),
                json!(fit(
                    error.trim().lines().next().unwrap_or(""),
                    HEADLINE_CHARS
                )),
            );
            view.insert("error".into(), json!(fit(&error, SECTION_CHARS)));
            "failed"
        }
    };
    t.message(name, &view)
}

/// The agent's text of a result or a plan: its chunks within `budget`, whether it was cut, its
/// length, and its first line as the headline.
fn summary_view(
    view: &mut serde_json::Map<String, serde_json::Value>,
    summary: &str,
    budget: usize,
) {
    let (chunks, truncated) = chunk_for_blocks(summary, budget);
    view.insert("summary_chunks".into(), json!(chunks));
    view.insert("truncated".into(), json!(truncated));
    view.insert("total_chars".into(), json!(summary.chars().count()));
    view.insert(
        "headline".into(),
        json!(fit(
            summary.trim().lines().next().unwrap_or(""),
            HEADLINE_CHARS
        )),
    );
}

/// A plan block holds at most this many steps here (Slack allows 50), each title this long.
const PLAN_STEPS: usize = 20;
const STEP_CHARS: usize = 150;

/// The steps of a proposed plan: its numbered or bulleted lines (`1.`, `2)`, `-`, `*`), as the
/// plan block's tasks `p1`, `p2`, …; none when the text has no such lines (the text itself is
/// shown either way).
fn plan_steps(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter_map(|line| {
            let l = line.trim();
            let digits = l.chars().take_while(char::is_ascii_digit).count();
            let rest = if digits > 0 {
                l[digits..].strip_prefix(['.', ')'])?
            } else {
                l.strip_prefix(['-', '*', '•'])?
            };
            // Normalised first (control characters become spaces or line breaks), then one line.
            let title = fit(&rest.replace(['*', '`'], ""), STEP_CHARS);
            let title = title.split_whitespace().collect::<Vec<_>>().join(" ");
            (!title.is_empty()).then_some(title)
        })
        .take(PLAN_STEPS)
        .enumerate()
        .map(|(i, title)| json!({ "id": format!("p{}", i + 1), "title": title }))
        .collect()
}

/// A best-of-N turn's comparison: per attempt one section (its summary, diff stat, checks, and
/// **Use this one** for attempts that produced work), so even `agent.best_of_max` = 10 attempts
/// stay inside Block Kit's 50 blocks. The attempts share the text budget evenly.
fn compare_view(view: &mut serde_json::Map<String, serde_json::Value>, task: &Task, budget: usize) {
    let outcome = task.outcome.clone().unwrap_or_default();
    let share = (budget / outcome.attempts.len().max(1)).min(SECTION_CHARS - 200);
    let cap = |part: usize| (share / part).max(20);
    let attempts: Vec<_> = outcome
        .attempts
        .iter()
        .map(|a| {
            let usable = a.error.is_none() && a.branch.is_some();
            json!({
                "n": a.n,
                "summary": match fit(a.summary.trim(), cap(2)) {
                    s if s.trim().is_empty() => "(no message)".to_string(),
                    s => s,
                },
                "branch": a.branch.as_deref().map(|b| fit(b, cap(8).min(100))),
                "diff_stat": a.diff_stat.as_deref().map(|d| fit(&d.replace("```", "ʼʼʼ"), cap(4))),
                "checks": a.checks.as_deref().map(|c| fit(c, cap(8))),
                "error": a.error.as_deref().map(|e| fit(e, cap(8))),
                "usable": usable && task.chosen_attempt.is_none(),
            })
        })
        .collect();
    let finished = outcome
        .attempts
        .iter()
        .filter(|a| a.error.is_none())
        .count();
    view.insert("finished".into(), json!(finished));
    view.insert("total".into(), json!(outcome.attempts.len()));
    view.insert("attempts".into(), json!(attempts));
}

/// A minimal final card for when the full one is refused for good: the task's state, a short
/// reason, and Retry when the task failed or was stopped. Every field is small and capped, so
/// Slack accepts it whatever the task holds.
pub fn fallback_card(t: &BlockKit, task: &Task, reason: &str) -> anyhow::Result<Rendered> {
    let (emoji, label, retry) = match task.state {
        TaskState::Succeeded => (":white_check_mark:", "Done", false),
        TaskState::Failed => (":x:", "Failed", true),
        TaskState::Cancelled => (":octagonal_sign:", "Stopped", true),
        TaskState::Running | TaskState::Queued => {
            (":hourglass_flowing_sand:", "Working on it", false)
        }
        TaskState::AwaitingRepo => (":card_index_dividers:", "Waiting for a repository", false),
    };
    let mut view = task_view(task);
    view.insert("emoji".into(), json!(emoji));
    view.insert("label".into(), json!(label));
    view.insert("retry".into(), json!(retry));
    view.insert("reason".into(), json!(fit(reason, REASON_CHARS)));
    t.message("fallback", &view)
}

/// A notice, optionally addressed to someone: the mention is Chime's own markup, the text is
/// escaped like everything else.
pub fn notice_card(t: &BlockKit, to: Option<&UserId>, text: &str) -> anyhow::Result<Rendered> {
    t.message(
        "notice",
        &json!({
            "to": to.map(|u| mention_id(u.as_str())),
            "text": match fit(text.trim(), SECTION_CHARS) {
                // Slack refuses a section without text.
                t if t.trim().is_empty() => "(no text)".to_string(),
                t => t,
            },
        }),
    )
}

/// State, a one-line reason and (for a turn that did not succeed) Retry: small enough that no
/// agent output can push it past any limit (rendered by [`fallback_card`]).
pub fn fallback_for(t: &BlockKit, task: &Task, refusal: &str) -> anyhow::Result<Rendered> {
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
    fallback_card(t, task, reason.trim())
}

/// A request asked with `/chime <request>`, posted to open its thread: who asked, and what, quoted.
pub fn request_card(t: &BlockKit, by: &UserId, text: &str) -> anyhow::Result<Rendered> {
    t.message(
        "request",
        &json!({
            "by": mention_id(by.as_str()),
            "text": match fit(text.trim(), SECTION_CHARS - 200) {
                t if t.trim().is_empty() => "(no text)".to_string(),
                t => t,
            },
        }),
    )
}

/// A suggestion: the action's button text as the headline, why (short), and the three buttons.
pub fn suggestion_card(t: &BlockKit, offer: &Offer) -> anyhow::Result<Rendered> {
    t.message(
        "suggestion",
        &json!({
            "id": button_id(&offer.id),
            "button": fit(&offer.button, 75),
            "why": fit(&offer.reasons.join("; "), 300),
        }),
    )
}

/// A suggestion once answered: who took it, or put it off, and no buttons.
pub fn suggestion_answered_card(
    t: &BlockKit,
    offer: &Offer,
    answer: &OfferAnswer,
) -> anyhow::Result<Rendered> {
    let (emoji, outcome, by) = match answer {
        OfferAnswer::Accepted { by } => (":white_check_mark:", "accepted", by),
        OfferAnswer::NotNow { by } => (":zzz:", "not now, said", by),
        OfferAnswer::Muted { by } => (":mute:", "not suggested here any more, muted", by),
    };
    t.message(
        "suggestion_answered",
        &json!({
            "emoji": emoji,
            "button": fit(&offer.button, 75),
            "outcome": outcome,
            "by": mention_id(by.as_str()),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_steps_are_numbered_or_bulleted_lines() {
        let steps = plan_steps(
            "Here is the plan:\n1. Rename `flag`\n2) Update docs\n- Run **tests**\nDone.",
        );
        let titles: Vec<&str> = steps.iter().map(|s| s["title"].as_str().unwrap()).collect();
        assert_eq!(titles, ["Rename flag", "Update docs", "Run tests"]);
        assert_eq!(steps[2]["id"], "p3");
        // Hostile shapes: no steps, bare markers, a flood, a huge line.
        assert!(plan_steps("no list here").is_empty());
        assert!(plan_steps("1.\n-\n*  \n12345").is_empty());
        assert_eq!(plan_steps(&"- x\n".repeat(500)).len(), PLAN_STEPS);
        let long = plan_steps(&format!("1. {}", "<&".repeat(5000)));
        assert!(long[0]["title"].as_str().unwrap().chars().count() <= STEP_CHARS * 5);
    }
}
