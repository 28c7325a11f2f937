//! `session::input::build_input`, the pure function that turns a task, its session's history and
//! its thread into what the agent is given: snapshots of the whole input, people named the way
//! the task's connector names them, and the budget that cuts older turns first.

use chime::backend::{Outcome, QuotedMessage, TurnRecord};
use chime::ids::{RepoName, SessionId, TaskId};
use chime::session::input::build_input;
use chime::session::{Task, TaskState};
use chime::templates::Templates;

fn task(turn_no: i64) -> Task {
    Task {
        id: TaskId::new("0123456789abcdef0123456789abcdef"),
        session_id: SessionId::new("feedc0de12345678"),
        turn_no,
        prompt: "now add a test for the retry\n## pretend heading".into(),
        requester: "U0ANA".into(),
        repo: Some(RepoName::new("acme/api")),
        backend: "codex".into(),
        binding: "local:CGENERAL/1700000000.000100".parse().unwrap(),
        message: Some("1700000000.000300".into()),
        state: TaskState::Running,
        attempts: 1,
        cancel_requested: false,
        cancelled_by: None,
        outcome: None,
        error: None,
        created_at: 0,
        started_at: None,
        finished_at: None,
        variants: 1,
        chosen_attempt: None,
        plan: None,
        mode: chime::session::TurnMode::Work,
    }
}

fn turn(n: i64, summary: &str) -> TurnRecord {
    TurnRecord {
        turn_no: n,
        requester: "U0BEN".into(),
        prompt: format!("request {n}"),
        state: "succeeded".into(),
        outcome: Some(Outcome {
            summary: summary.into(),
            branch: Some("chime/feedc0de12345678".into()),
            ..Outcome::default()
        }),
        error: None,
    }
}

/// How the playground and Slack name people; another connector would name them its own way.
fn mention(user: &str) -> String {
    format!("<@{user}>")
}

fn guard() -> chime::guard::Guard {
    chime::guard::Guard::new(&[], vec![]).unwrap()
}

#[test]
fn a_second_turn_snapshot() {
    let t = Templates::new().unwrap();
    let context = vec![QuotedMessage {
        author: "<@U0BEN>".into(),
        is_bot: false,
        text: "the retry drops the last chunk".into(),
    }];
    let input = build_input(
        &t,
        &guard(),
        100_000,
        &task(2),
        vec![turn(1, "Fixed the retry loop.")],
        context,
        &mention,
    )
    .unwrap();
    assert_eq!(input.requester, "<@U0ANA>");
    assert_eq!(input.history[0].requester, "<@U0BEN>");
    insta::assert_snapshot!(input.rendered);
}

#[test]
fn the_connector_names_people() {
    let t = Templates::new().unwrap();
    let input = build_input(
        &t,
        &guard(),
        100_000,
        &task(2),
        vec![turn(1, "done")],
        vec![],
        &|u| format!("{u} (Linear)"),
    )
    .unwrap();
    assert!(
        input.rendered.contains("U0ANA (Linear)"),
        "{}",
        input.rendered
    );
    assert!(
        input.rendered.contains("U0BEN (Linear)"),
        "{}",
        input.rendered
    );
    assert!(!input.rendered.contains("<@"), "{}", input.rendered);
}

/// Over budget, older results are cut first; the newest request is always whole.
#[test]
fn the_budget_cuts_older_turns_first() {
    let t = Templates::new().unwrap();
    let history: Vec<TurnRecord> = (1..=6).map(|n| turn(n, &"x".repeat(5000))).collect();
    let whole = build_input(
        &t,
        &guard(),
        1_000_000,
        &task(7),
        history.clone(),
        vec![],
        &mention,
    )
    .unwrap();
    let cut = build_input(&t, &guard(), 12_000, &task(7), history, vec![], &mention).unwrap();
    assert!(
        cut.rendered.chars().count() <= 12_000,
        "{}",
        cut.rendered.len()
    );
    assert!(cut.rendered.chars().count() < whole.rendered.chars().count());
    assert!(cut.rendered.contains("now add a test for the retry"));
    let last = cut.history.last().unwrap().outcome.as_ref().unwrap();
    let first = cut.history.first().unwrap().outcome.as_ref().unwrap();
    assert!(last.summary.chars().count() > first.summary.chars().count());
}
