//! Snapshots of every message Chime posts, rendered from templates/ exactly as the Slack reporter
//! renders them; Block Kit limit checks on hostile and oversized agent output; and a property
//! test that no agent output breaks a card's limits or markup.
//!
//! The property test runs 10,000 cases in a release build (`cargo test --release --test
//! templates`) and 200 in a debug build; `PROPTEST_CASES=N` overrides both.

#[path = "support/block_kit.rs"]
mod block_kit;
#[path = "support/hostile.rs"]
mod hostile;

use chime::backend::Outcome;
use chime::ids::{RepoName, SessionId, TaskId, UserId};
use chime::session::{Task, TaskState};
use chime::slack::blocks::{BlockKit as Templates, Rendered};
use chime::slack::cards::{
    fallback_card, mention_id as mentioned, notice_card, repo_picker_card, result_card, status_card,
};
use hostile::{any_outcome, any_user, hostile, maybe};
use proptest::prelude::*;

fn task(state: TaskState) -> Task {
    Task {
        id: TaskId::new("0123456789abcdef0123456789abcdef"),
        session_id: SessionId::new("feedc0de12345678"),
        turn_no: 2,
        prompt: "the retry client drops the last chunk on timeout".into(),
        requester: "U0ANA".into(),
        repo: Some(RepoName::new("acme/api")),
        backend: "codex".into(),
        binding: "slack:T1/C1/1700000000.000100".parse().unwrap(),
        message: Some("1700000000.000100".into()),
        state,
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

fn assert_within_limits(r: &Rendered) {
    if let Err(e) = block_kit::check_card(r, &["U0ANA", "U0BOB", "U1"]) {
        panic!("{e}\n{}", serde_json::to_string_pretty(r).unwrap());
    }
}

#[test]
fn status_card_snapshot() {
    let t = Templates::new().unwrap();
    let r = status_card(
        &t,
        &task(TaskState::Running),
        Some("Running the test suite"),
    )
    .unwrap();
    assert_within_limits(&r);
    insta::assert_json_snapshot!(r);
}

#[test]
fn result_card_snapshot() {
    let t = Templates::new().unwrap();
    let mut done = task(TaskState::Succeeded);
    done.outcome = Some(Outcome {
        summary: "Fixed the off-by-one in `RetryClient::read_chunk`; the last chunk is now flushed on timeout.".into(),
        branch: Some("chime/feedc0de12345678".into()),
        commit: Some("4b825dc642cb6eb9a060e54bf8d69288fbee4904".into()),
        diff_stat: Some(" src/retry.rs | 4 +++-\n 1 file changed, 3 insertions(+), 1 deletion(-)".into()),
        pr_url: Some("https://github.com/acme/api/pull/42".into()),
        dry_run: false,
        remote: None,
        attempts: vec![],
        usage: None,
        checks: vec![
            chime::backend::Check {
                command: "cargo test".into(),
                exit_code: Some(101),
                failed: true,
                failing: vec!["retry::tests::flushes_last_chunk".into()],
            },
            chime::backend::Check {
                command: "cargo clippy --all-targets".into(),
                exit_code: Some(0),
                failed: false,
                failing: vec![],
            },
        ],
    });
    let r = result_card(&t, &done).unwrap();
    assert_within_limits(&r);
    insta::assert_json_snapshot!(r);
}

#[test]
fn failed_stopped_picker_and_notice_snapshots() {
    let t = Templates::new().unwrap();
    let mut failed = task(TaskState::Failed);
    failed.error = Some("agent exited with status 2: fatal: not a git repository".into());
    let mut stopped = task(TaskState::Cancelled);
    stopped.cancelled_by = Some("U0BOB".into());
    let repos = [RepoName::new("acme/api"), RepoName::new("acme/web")];
    let cards = vec![
        ("failed", result_card(&t, &failed).unwrap()),
        ("stopped", result_card(&t, &stopped).unwrap()),
        (
            "picker",
            repo_picker_card(&t, &task(TaskState::AwaitingRepo), &repos).unwrap(),
        ),
        (
            "notice",
            notice_card(
                &t,
                Some(&chime::ids::UserId::new("U1")),
                "Sorry, guests cannot start or stop Chime tasks in this workspace.",
            )
            .unwrap(),
        ),
    ];
    for (_, c) in &cards {
        assert_within_limits(c);
    }
    insta::assert_json_snapshot!(cards);
}

#[test]
fn huge_and_hostile_agent_output_fits() {
    let t = Templates::new().unwrap();
    for dry_run in [false, true] {
        let mut done = task(TaskState::Succeeded);
        let mut summary = String::new();
        for i in 0..5000 {
            summary.push_str(&format!(
                "line {i} <!channel> & <https://evil.example|click> ``` \"quote\" \\ \u{1F600}\n"
            ));
        }
        done.outcome = Some(Outcome {
            summary,
            dry_run,
            diff_stat: Some("x".repeat(10_000)),
            ..Outcome::default()
        });
        let r = result_card(&t, &done).unwrap();
        assert_within_limits(&r);
        let text = r.blocks.to_string();
        assert!(text.contains("characters left out"), "the cut is visible");
        assert!(text.contains("line 0 "), "the head is kept");
        assert!(text.contains("line 4999 "), "the tail is kept");
    }
    let mut failed = task(TaskState::Failed);
    failed.error = Some("e".repeat(100_000));
    assert_within_limits(&result_card(&t, &failed).unwrap());
    // A plan of thousands of hostile steps: 20 steps in the block, the text cut visibly.
    let mut plan = task(TaskState::Succeeded);
    plan.mode = chime::session::TurnMode::Plan;
    let summary: String = (0..5000)
        .map(|i| {
            format!(
                "{i}. step <!channel> & <https://evil.example|click> \"q\" {}\n",
                "x".repeat(i % 300)
            )
        })
        .collect();
    plan.outcome = Some(Outcome {
        summary,
        ..Outcome::default()
    });
    let r = result_card(&t, &plan).unwrap();
    assert_within_limits(&r);
    let text = r.blocks.to_string();
    assert!(text.contains("chime_approve_plan") && text.contains("characters left out"));
    let blocks = r.blocks.as_array().unwrap();
    let block = blocks.iter().find(|b| b["type"] == "plan").unwrap();
    assert_eq!(block["tasks"].as_array().unwrap().len(), 20);
}

#[test]
fn fallback_card_snapshot() {
    let t = Templates::new().unwrap();
    let mut failed = task(TaskState::Failed);
    failed.error = Some("Vec<Option<Box<T>>>".repeat(500));
    let mut done = task(TaskState::Succeeded);
    done.outcome = Some(Outcome {
        summary: "<!channel> ".repeat(2000),
        ..Outcome::default()
    });
    let cards = vec![
        fallback_card(&t, &failed, "Slack refused the full card (invalid_blocks).").unwrap(),
        fallback_card(&t, &done, &"<!here> & ".repeat(1000)).unwrap(),
    ];
    for c in &cards {
        assert_within_limits(c);
    }
    assert!(cards[0].blocks.to_string().contains("chime_retry"));
    assert!(!cards[1].blocks.to_string().contains("chime_retry"));
    insta::assert_json_snapshot!(cards);
}

/// Issue 6, item 2: a 20,000-`&` pull request URL and ~500 characters of text panicked the
/// renderer ("range start index out of range") once the retry loop shrank the text budget.
#[test]
fn oversized_pr_url_neither_panics_nor_shows() {
    let t = Templates::new().unwrap();
    let mut done = task(TaskState::Succeeded);
    done.outcome = Some(Outcome {
        summary: "Fixed it. ".repeat(50),
        pr_url: Some(format!("https://x/{}", "&".repeat(20_000))),
        ..Outcome::default()
    });
    let r = result_card(&t, &done).unwrap();
    assert_within_limits(&r);
    assert!(!r.blocks.to_string().contains("https://x/"), "refused URL");
    assert!(r.blocks.to_string().contains("Fixed it. Fixed it."));
}

/// Issue 6, item 3: a rustc error of 2,500 characters came to 3,924 once `<`, `>` were escaped,
/// and Slack answered `invalid_blocks`.
#[test]
fn error_text_is_measured_after_escaping() {
    let t = Templates::new().unwrap();
    let mut failed = task(TaskState::Failed);
    failed.error = Some(format!(
        "error[E0308]: mismatched types\n{}",
        "expected `Vec<Option<Box<T>>>`, found `&&Vec<Box<T>>`\n".repeat(200)
    ));
    let r = result_card(&t, &failed).unwrap();
    assert_within_limits(&r);
    let mut done = task(TaskState::Succeeded);
    done.outcome = Some(Outcome {
        summary: "ok".into(),
        diff_stat: Some("<&>".repeat(2000)),
        ..Outcome::default()
    });
    assert_within_limits(&result_card(&t, &done).unwrap());
    let long = status_card(&t, &done, Some(&"<&>".repeat(2000))).unwrap();
    assert_within_limits(&long);
}

#[test]
fn compare_card_snapshot() {
    let t = Templates::new().unwrap();
    let mut done = task(TaskState::Succeeded);
    done.variants = 3;
    let attempt = |n: u32, error: Option<&str>| chime::backend::Attempt {
        n,
        summary: format!("Attempt {n}: cached the parsed header."),
        branch: error
            .is_none()
            .then(|| format!("chime/feedc0de12345678-{n}")),
        commit: error
            .is_none()
            .then(|| "4b825dc642cb6eb9a060e54bf8d69288fbee4904".into()),
        diff_stat: error
            .is_none()
            .then(|| " src/parse.rs | 12 +++++++-----".into()),
        checks: error.is_none().then(|| "cargo test: 41 passed".into()),
        error: error.map(str::to_string),
    };
    done.outcome = Some(Outcome {
        summary: "2 of 3 attempts finished.".into(),
        attempts: vec![
            attempt(1, None),
            attempt(2, Some("the agent exited with status 1")),
            attempt(3, None),
        ],
        ..Outcome::default()
    });
    let r = result_card(&t, &done).unwrap();
    assert_within_limits(&r);
    insta::assert_json_snapshot!(r);
}

#[derive(Debug, Clone)]
struct CardInput {
    requester: String,
    backend: String,
    repo: Option<String>,
    outcome: Outcome,
    error: Option<String>,
    cancelled_by: Option<String>,
    progress: String,
    notice: String,
    to: Option<String>,
    reason: String,
    repos: Vec<String>,
}

fn any_card_input() -> impl Strategy<Value = CardInput> {
    (
        (any_user(), hostile(), maybe(hostile()), any_outcome()),
        (maybe(hostile()), maybe(any_user()), hostile(), hostile()),
        (
            maybe(any_user()),
            hostile(),
            prop_oneof![
                prop::collection::vec(hostile(), 0..4),
                prop::collection::vec("[a-z]{1,20}/[a-z]{1,140}", 0..130),
            ],
        ),
    )
        .prop_map(
            |(
                (requester, backend, repo, outcome),
                (error, cancelled_by, progress, notice),
                (to, reason, repos),
            )| CardInput {
                requester,
                backend,
                repo,
                outcome,
                error,
                cancelled_by,
                progress,
                notice,
                to,
                reason,
                repos,
            },
        )
}

/// Checks a card within Block Kit's limits, and again as the outbox writes it: after the output
/// guard has redacted every string in it (a redaction must never push a card over a limit).
fn check(r: &Rendered, mentions: &[&str], what: &str) -> Result<(), TestCaseError> {
    block_kit::check_card(r, mentions).map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
    thread_local! {
        static GUARD: chime::guard::Guard = chime::guard::Guard::new(&[], vec![]).unwrap();
    }
    let mut redacted = serde_json::to_value(r).unwrap();
    GUARD.with(|g| g.redact_json(&mut redacted, "test"));
    let redacted: Rendered = serde_json::from_value(redacted).unwrap();
    // A mention whose id looks like a secret is redacted too (it then pings nobody).
    let also: Vec<String> = mentions
        .iter()
        .map(|m| GUARD.with(|g| g.scan(m).0.into_owned()))
        .collect();
    let mut allowed: Vec<&str> = mentions.to_vec();
    allowed.extend(also.iter().map(String::as_str));
    block_kit::check_card(&redacted, &allowed)
        .map_err(|e| TestCaseError::fail(format!("{what}, once redacted: {e}")))
}

/// Issue 6, items 2 and 3: whatever the agent prints, every card renders, fits Block Kit's limits
/// after escaping, and mentions nobody but the people Chime itself means.
fn every_card_renders_within_limits(input: CardInput) -> Result<(), TestCaseError> {
    let t = Templates::new().unwrap();
    let mut base = task(TaskState::Running);
    base.requester = input.requester.clone();
    base.backend = input.backend.clone();
    base.repo = input.repo.clone().map(RepoName::new);
    let requester = mentioned(&input.requester);

    check(
        &status_card(&t, &base, Some(&input.progress)).unwrap(),
        &[requester.as_str()],
        "status",
    )?;
    check(
        &status_card(&t, &base, None).unwrap(),
        &[requester.as_str()],
        "status",
    )?;

    let mut done = base.clone();
    done.state = TaskState::Succeeded;
    done.outcome = Some(input.outcome.clone());
    check(
        &result_card(&t, &done).unwrap(),
        &[requester.as_str()],
        "result",
    )?;

    // The same output as a plan for approval: each line a step of its plan block.
    let mut planned = done.clone();
    planned.mode = chime::session::TurnMode::Plan;
    let mut o = input.outcome.clone();
    o.dry_run = false;
    o.summary = o
        .summary
        .lines()
        .map(|l| format!("1. {l}"))
        .collect::<Vec<_>>()
        .join("\n");
    planned.outcome = Some(o);
    check(
        &result_card(&t, &planned).unwrap(),
        &[requester.as_str()],
        "plan",
    )?;

    // A best-of-N comparison with the most attempts the config allows, each as hostile.
    let mut compared = done.clone();
    let o = &input.outcome;
    compared.outcome = Some(Outcome {
        attempts: (1..=10)
            .map(|n| chime::backend::Attempt {
                n,
                summary: o.summary.clone(),
                branch: o.branch.clone(),
                commit: o.commit.clone(),
                diff_stat: o.diff_stat.clone(),
                checks: Some(input.notice.clone()),
                error: (n % 2 == 0).then(|| input.error.clone().unwrap_or_default()),
            })
            .collect(),
        ..o.clone()
    });
    compared.variants = 10;
    check(
        &result_card(&t, &compared).unwrap(),
        &[requester.as_str()],
        "compare",
    )?;

    let mut failed = base.clone();
    failed.state = TaskState::Failed;
    failed.error = input.error.clone();
    check(
        &result_card(&t, &failed).unwrap(),
        &[requester.as_str()],
        "failed",
    )?;

    let mut stopped = base.clone();
    stopped.state = TaskState::Cancelled;
    stopped.cancelled_by = input.cancelled_by.clone();
    let stopper = mentioned(input.cancelled_by.as_deref().unwrap_or(&input.requester));
    check(
        &result_card(&t, &stopped).unwrap(),
        &[stopper.as_str()],
        "stopped",
    )?;

    let repos: Vec<RepoName> = input.repos.iter().map(RepoName::new).collect();
    check(
        &repo_picker_card(&t, &base, &repos).unwrap(),
        &[requester.as_str()],
        "repo_picker",
    )?;

    let to = input.to.as_ref().map(UserId::new);
    check(
        &notice_card(&t, to.as_ref(), &input.notice).unwrap(),
        &[input
            .to
            .as_deref()
            .map(mentioned)
            .unwrap_or_default()
            .as_str()],
        "notice",
    )?;

    // A `/chime <request>` opens its thread with the request quoted: hostile text stays text.
    check(
        &chime::slack::cards::request_card(&t, &UserId::new(&input.requester), &input.notice)
            .unwrap(),
        &[requester.as_str()],
        "request",
    )?;

    for state in [
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::Cancelled,
        TaskState::Running,
    ] {
        let mut any = done.clone();
        any.state = state;
        check(
            &fallback_card(&t, &any, &input.reason).unwrap(),
            &[requester.as_str()],
            "fallback",
        )?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(hostile::config())]

    #[test]
    fn cards_fit_block_kit_whatever_the_agent_prints(input in any_card_input()) {
        every_card_renders_within_limits(input)?;
    }
}

/// A suggestion and its answered form: snapshots, and within Block Kit's limits whatever the
/// policy's reasons hold (they quote pattern text and can be long).
#[test]
fn suggestion_cards_snapshot_and_fit() {
    use chime::policy::live::{Offer, OfferAnswer};
    use chime::slack::cards::{suggestion_answered_card, suggestion_card};
    let t = Templates::new().unwrap();
    let offer = Offer {
        id: "0123456789abcdef0123456789abcdef".into(),
        binding: "slack:T1/C1/1700000000.000100".parse().unwrap(),
        message: "1700000000.000100".into(),
        private_to: None,
        action: "fix_ci".into(),
        button: "Fix the failing CI run".into(),
        reasons: vec!["a CI run failed".into(), "on the main branch".into()],
    };
    let cards = vec![
        suggestion_card(&t, &offer).unwrap(),
        suggestion_answered_card(
            &t,
            &offer,
            &OfferAnswer::Accepted {
                by: UserId::new("U0ANA"),
            },
        )
        .unwrap(),
    ];
    for c in &cards {
        assert_within_limits(c);
    }
    insta::assert_json_snapshot!(cards);
    let hostile = Offer {
        button: "<!channel> ".repeat(500),
        reasons: vec!["```<@U1>&".repeat(2000)],
        ..offer
    };
    assert_within_limits(&suggestion_card(&t, &hostile).unwrap());
}
