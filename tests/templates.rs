//! Snapshots of every message Chime posts, rendered from templates/ exactly as the Slack reporter
//! renders them, plus Block Kit limit checks on hostile and oversized agent output.

use chime::backend::Outcome;
use chime::event::Surface;
use chime::ids::{RepoName, SessionId, TaskId};
use chime::reporter::{notice_card, repo_picker_card, result_card, status_card};
use chime::session::{Task, TaskState};
use chime::templates::{Rendered, Templates};

fn task(state: TaskState) -> Task {
    Task {
        id: TaskId::new("0123456789abcdef0123456789abcdef"),
        session_id: SessionId::new("feedc0de12345678"),
        turn_no: 2,
        prompt: "the retry client drops the last chunk on timeout".into(),
        requester: "U0ANA".into(),
        repo: Some(RepoName::new("acme/api")),
        backend: "codex".into(),
        surface: Surface::Slack,
        thread_key: "T1/C1/1700000000.000100".into(),
        message_ts: Some("1700000000.000100".into()),
        state,
        attempts: 1,
        cancel_requested: false,
        cancelled_by: None,
        outcome: None,
        error: None,
        created_at: 0,
        started_at: None,
        finished_at: None,
    }
}

/// Block Kit's limits, as Slack enforces them.
fn assert_within_limits(r: &Rendered) {
    let blocks = r.blocks.as_array().expect("blocks is an array");
    assert!(blocks.len() <= 50, "at most 50 blocks");
    assert!(
        r.blocks.to_string().chars().count() <= 11_000,
        "total size under msg_blocks_too_long"
    );
    for b in blocks {
        if let Some(t) = b["text"]["text"].as_str() {
            assert!(
                t.chars().count() <= 3000,
                "section text ≤ 3000: {}",
                t.chars().count()
            );
        }
        for e in b["elements"].as_array().into_iter().flatten() {
            if let Some(v) = e["value"].as_str() {
                assert!(v.len() <= 2000);
            }
            if let Some(t) = e["text"]["text"].as_str() {
                assert!(t.chars().count() <= 75);
            }
            if let Some(a) = e["action_id"].as_str() {
                assert!(a.len() <= 255);
            }
        }
    }
    assert!(
        !r.blocks.to_string().contains("<!channel>"),
        "agent text never pings"
    );
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
}

