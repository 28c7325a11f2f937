//! What an agent is given for one turn: the request, the session's earlier turns and the thread
//! around it, every untrusted part quoted (`templates/agent/input.md.hbs`), within a budget.

use super::Task;
use crate::backend::{AgentInput, QuotedMessage, TurnRecord};
use crate::guard::Guard;
use crate::templates::{truncate_chars, Templates};
use serde_json::json;

/// Earlier results are cut to this size inside the agent input (the last two turns)...
const HISTORY_RESULT_CHARS: usize = 6000;
/// ...and older turns' results to these, step by step, while the input is over budget.
const OLDER_RESULT_CHARS: [usize; 4] = [6000, 2000, 500, 120];
/// An earlier request is kept up to this size.
const HISTORY_PROMPT_CHARS: usize = 4000;

/// Builds the agent input, dropping the oldest turns when the whole would exceed the budget.
///
/// A pure function of its arguments: `name` is how the task's connector names a person, and
/// `max_chars` the budget (`agent.max_history_chars`).
///
/// This is the output guard's second choke point: the request, the thread and the earlier turns
/// go through `guard` before anything is cut or rendered, so a secret pasted into a thread (or
/// printed by an earlier turn) reaches neither the agent nor a cloud backend.
pub fn build_input(
    templates: &Templates,
    guard: &Guard,
    max_chars: usize,
    task: &Task,
    history: Vec<TurnRecord>,
    context: Vec<QuotedMessage>,
    name: &dyn Fn(&str) -> String,
) -> anyhow::Result<AgentInput> {
    let clean = |s: &str| guard.redact(s, "agent input").into_owned();
    let requester = name(&task.requester);
    let prompt = clean(&task.prompt);
    let plan_only = task.mode == super::TurnMode::Plan;
    let history: Vec<TurnRecord> = history
        .into_iter()
        .map(|mut t| {
            t.requester = name(&t.requester);
            t.prompt = clean(&t.prompt);
            t.error = t.error.as_deref().map(clean);
            if let Some(o) = &mut t.outcome {
                o.summary = clean(&o.summary);
            }
            t
        })
        .collect();
    let context: Vec<QuotedMessage> = context
        .into_iter()
        .map(|mut m| {
            m.text = clean(&m.text);
            m
        })
        .collect();
    // Every earlier turn stays in the input. When the whole is over budget, older turns' results
    // (never their requests, branches or diffs) are cut harder; only past the last level are the
    // oldest turns left out, and the input says so.
    let recent = history.len().saturating_sub(2);
    let mut omitted = 0;
    let mut level = 0;
    loop {
        let kept: Vec<TurnRecord> = history[omitted..]
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let cap = if i + omitted >= recent {
                    HISTORY_RESULT_CHARS
                } else {
                    OLDER_RESULT_CHARS[level]
                };
                shorten(t, cap)
            })
            .collect();
        let rendered = templates.agent_input(&json!({
            "requester": requester,
            "repo": task.repo,
            "turn_no": task.turn_no,
            "session_id": task.session_id,
            "history": kept,
            "omitted_turns": omitted,
            "thread_context": context,
            "prompt": prompt,
            "plan_only": plan_only,
        }))?;
        if rendered.chars().count() <= max_chars || kept.is_empty() {
            let rendered_turn = templates.agent_input(&json!({
                "requester": requester,
                "repo": task.repo,
                "turn_no": task.turn_no,
                "session_id": task.session_id,
                "continues": !history.is_empty(),
                "thread_context": context,
                "prompt": prompt,
                "plan_only": plan_only,
            }))?;
            return Ok(AgentInput {
                session_id: task.session_id.clone(),
                task_id: task.id.clone(),
                turn_no: task.turn_no,
                prompt: prompt.clone(),
                requester: requester.clone(),
                repo: task.repo.clone(),
                backend: task.backend.clone(),
                history: kept,
                thread_context: context,
                rendered,
                rendered_turn,
                variants: task.variants,
                plan_only,
                remote: None,
                checkpoint: Default::default(),
                base: None,
            });
        }
        if level + 1 < OLDER_RESULT_CHARS.len() {
            level += 1;
        } else {
            omitted += 1;
        }
    }
}

fn shorten(t: &TurnRecord, result_cap: usize) -> TurnRecord {
    let mut t = t.clone();
    t.prompt = truncate_chars(&t.prompt, HISTORY_PROMPT_CHARS);
    if let Some(o) = t.outcome.as_mut() {
        o.summary = truncate_chars(&o.summary, result_cap);
        o.diff_stat = o.diff_stat.as_deref().map(|d| truncate_chars(d, 2000));
    }
    t.error = t.error.as_deref().map(|e| truncate_chars(e, 1000));
    t
}
