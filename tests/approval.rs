//! Plan approval (`approval = "plan"`): a request first makes a plan-only turn whose card has
//! Approve and Revise; nothing in the session's worktree changes and no work runs before the
//! requester approves; another member cannot approve; Revise and a reply make a new plan; the
//! decisions are recorded.

#[path = "support/block_kit.rs"]
mod block_kit;
mod common;

use chime::config::{Approval, RepoConfig};
use chime::slack::blocks::Rendered;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

const REPO: &str = "acme/api";
const WAIT: Duration = Duration::from_secs(20);

/// The agent logs each run (its mode and request) and, in every mode, tries to change a file: a
/// plan's change must never reach the session's branch.
const AGENT: &str = r#"input=$(cat)
echo "$CHIME_MODE $CHIME_TURN $(echo "$input" | grep -c 'Plan only')" >> "$LOG"
echo "changed by $CHIME_MODE" > touched.txt
if [ "$CHIME_MODE" = plan ]; then
  echo '{"type":"result","text":"1. Rename the flag in config.rs\n2. Update the <!channel> docs\n3. Run cargo test"}'
else
  echo '{"type":"result","text":"did the work"}'
fi"#;

/// A config whose channel CAPP asks for plans first, with the logging agent; and its log.
fn plan_config(db: &TestDb, slack: &FakeSlack, dir: &Path) -> (chime::config::Config, PathBuf) {
    let log = dir.join("runs.log");
    let agent = write_agent(dir, AGENT);
    let mut config = test_config(db, slack);
    config.agent.workdir = dir.join("work");
    command_backend(&mut config, "agent", vec![agent], 60);
    if let Some(chime::config::BackendConfig::Command { env, .. }) =
        config.backends.get_mut("agent")
    {
        env.insert("LOG".into(), log.display().to_string());
    }
    config
        .routing
        .approval
        .insert("CAPP".into(), Approval::Plan);
    (config, log)
}

fn rendered(card: &Value) -> Rendered {
    serde_json::from_value(serde_json::json!({ "text": card["text"], "blocks": card["blocks"] }))
        .unwrap()
}

async fn plan_first_then_approve(db: TestDb) {
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("upstream");
    init_repo(&upstream, "README.md", "# api\n");
    let (mut config, log) = plan_config(&db, &slack, tmp.path());
    let workdir = config.agent.workdir.clone();
    config.repos.insert(
        REPO.into(),
        RepoConfig {
            url: upstream.display().to_string(),
            default_branch: Some("main".into()),
            ..Default::default()
        },
    );
    config.routing.default_repo = Some(REPO.into());
    let app = TestApp::spawn(config).await;
    let runs = || std::fs::read_to_string(&log).unwrap_or_default();

    let root = "1700000000.008000";
    app.post_event(&mention(
        "EvAp1",
        "CAPP",
        "U1",
        root,
        None,
        "rename the flag",
    ))
    .await;
    let card = slack.card("CAPP", root, "chime_approve_plan").await;
    block_kit::check_card(&rendered(&card), &["U1"]).unwrap();
    let blocks = card["blocks"].to_string();
    assert!(blocks.contains("Rename the flag in config.rs"), "{blocks}");
    assert!(!blocks.contains("<!channel>"), "{blocks}");
    let plan = card["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "plan")
        .expect("a plan block")
        .clone();
    assert_eq!(plan["tasks"].as_array().unwrap().len(), 3, "{plan}");
    // One plan-only run; the session's worktree was never made and its branch does not exist.
    assert_eq!(runs(), "plan 1 1\n", "one plan-only run, told it is one");
    let session = app.text("SELECT session_id FROM tasks").await;
    assert!(!workdir.join("worktrees").join(&session).exists());
    let mirror = workdir.join("mirrors/acme/api.git");
    let branch = git(&mirror, &["branch", "--list", &format!("chime/{session}")]);
    assert_eq!(
        branch.trim(),
        "",
        "the session's branch exists before approval"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE mode = 'work'")
            .await,
        0
    );
    let plan_task = app.text("SELECT id FROM tasks WHERE mode = 'plan'").await;

    // Another member cannot approve it: told so, nothing runs.
    app.click(&button(
        "chime_approve_plan",
        &plan_task,
        "U2",
        "CAPP",
        root,
        "1.1",
    ))
    .await;
    slack
        .card("CAPP", root, "can approve the plan of this task")
        .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM plan_decisions").await, 0);

    // The requester approves: the work runs once, in the session's worktree; pressing again
    // changes nothing.
    app.click(&button(
        "chime_approve_plan",
        &plan_task,
        "U1",
        "CAPP",
        root,
        "1.2",
    ))
    .await;
    slack.card("CAPP", root, "did the work").await;
    app.click(&button(
        "chime_approve_plan",
        &plan_task,
        "U1",
        "CAPP",
        root,
        "1.3",
    ))
    .await;
    slack.card("CAPP", root, "already approved").await;
    assert_eq!(runs(), "plan 1 1\nwork 2 0\n");
    assert_eq!(
        app.text("SELECT decision || ' ' || decided_by FROM plan_decisions")
            .await,
        "approved U1"
    );
    let work = app.text("SELECT id FROM tasks WHERE mode = 'work'").await;
    assert_eq!(app.text("SELECT next_task FROM plan_decisions").await, work);
    let touched = workdir
        .join("worktrees")
        .join(&session)
        .join(REPO)
        .join("touched.txt");
    assert_eq!(
        std::fs::read_to_string(&touched).unwrap_or_default().trim(),
        "changed by work"
    );
    app.stop().await;
}
dual_db!(approve_test, plan_first_then_approve);

async fn revise_makes_a_new_plan(db: TestDb) {
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let (config, log) = plan_config(&db, &slack, tmp.path());
    let app = TestApp::spawn(config).await;
    let runs = || std::fs::read_to_string(&log).unwrap_or_default();

    let root = "1700000000.009000";
    app.post_event(&mention(
        "EvRv1",
        "CAPP",
        "U1",
        root,
        None,
        "rename the flag",
    ))
    .await;
    slack.card("CAPP", root, "chime_approve_plan").await;
    let first = app.text("SELECT id FROM tasks").await;
    app.click(&button(
        "chime_revise_plan",
        &first,
        "U1",
        "CAPP",
        root,
        "2.1",
    ))
    .await;
    slack.card("CAPP", root, "with what to change").await;
    // The reply is the new instruction: a second plan, still no work.
    app.post_event(&mention(
        "EvRv2",
        "CAPP",
        "U1",
        "1700000000.009100",
        Some(root),
        "keep the old name as an alias",
    ))
    .await;
    eventually(WAIT, "the second plan", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE mode = 'plan' AND state = 'succeeded'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    assert_eq!(runs(), "plan 1 1\nplan 2 1\n");
    // The first plan was sent back, and cannot be approved any more; "approve" as a reply
    // approves the second.
    app.click(&button(
        "chime_approve_plan",
        &first,
        "U1",
        "CAPP",
        root,
        "2.2",
    ))
    .await;
    slack.card("CAPP", root, "already sent back").await;
    app.post_event(&mention(
        "EvRv3",
        "CAPP",
        "U1",
        "1700000000.009200",
        Some(root),
        "approve",
    ))
    .await;
    slack.card("CAPP", root, "did the work").await;
    assert_eq!(runs(), "plan 1 1\nplan 2 1\nwork 3 0\n");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM plan_decisions WHERE decision = 'revise'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM plan_decisions WHERE decision = 'approved'")
            .await,
        1
    );
    app.stop().await;
}
dual_db!(revise_test, revise_makes_a_new_plan);
