//! The `command` backend end to end: Slack mentions in, a real agent process on a real git
//! worktree, final cards out, over several turns of one session.

mod common;

use chime::backend::command::find_bwrap;
use chime::config::{BackendConfig, Config, RepoConfig, SandboxMode};
use common::*;
use serde_json::Value;
use sqlx::Row;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const REPO: &str = "acme/api";

/// Runs backend `name` in the bubblewrap sandbox (or, on a machine without bubblewrap, without
/// one and with a printed note; under CI=true that is a failure).
fn sandboxed(config: &mut Config, name: &str) {
    let mode = match find_bwrap() {
        Some(_) => SandboxMode::Bwrap,
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("bubblewrap (bwrap) is not installed, and CI=true: install it (apt install bubblewrap)")
        }
        None => {
            eprintln!("note: bubblewrap (bwrap) is not installed: running the agent unsandboxed");
            SandboxMode::None
        }
    };
    if let Some(BackendConfig::Command { sandbox, .. }) = config.backends.get_mut(name) {
        *sandbox = mode;
    }
}

async fn session_id(app: &TestApp) -> String {
    sqlx::query("SELECT id FROM sessions")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
        .get(0)
}

/// The final card of turn `turn` in a thread, once it is there.
async fn done_card(slack: &FakeSlack, channel: &str, root: &str, turn: i64) -> Value {
    let marker = format!(", turn {turn}");
    eventually(WAIT, &format!("the final card of turn {turn}"), || async {
        slack.thread(channel, root).into_iter().find(|m| {
            m["blocks"].as_array().is_some_and(|blocks| {
                blocks
                    .first()
                    .and_then(|b| b["text"]["text"].as_str())
                    .is_some_and(|head| head.contains("*Done*") && head.ends_with(&marker))
            })
        })
    })
    .await
}

async fn three_turns_build_on_each_other(db: TestDb) {
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("upstream");
    init_repo(&upstream, "README.md", "# api\n");

    // The agent keeps its input in its home, leaves a file per turn and reports what the
    // worktree holds; it runs in the sandbox.
    let agent = tmp.path().join("agent.sh");
    write_script(
        &agent,
        r#"#!/bin/bash
set -eu
cat > "$HOME/stdin$CHIME_TURN.txt"
echo "turn $CHIME_TURN" > "turn$CHIME_TURN.txt"
echo '{"type":"progress","text":"wrote turn'"$CHIME_TURN"'.txt"}'
# Turn 2 waits until the test has seen its progress in Slack.
if [ "$CHIME_TURN" = 2 ]; then
  for _ in $(seq 1200); do [ -f "$HOME/go2" ] && break; sleep 0.1; done
fi
echo '{"type":"result","text":"files: '"$(echo $(ls))"'"}'
"#,
    );

    let mut config = test_config(&db, &slack);
    let workdir = tmp.path().join("work");
    config.agent.workdir = workdir.clone();
    command_backend(&mut config, "agent", vec![agent.display().to_string()], 120);
    sandboxed(&mut config, "agent");
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

    let root = "1700000000.007000";
    let prompts = [
        "start the changelog",
        "add the release notes",
        "list what we have so far",
    ];
    let mut cards = vec![];
    for (i, prompt) in prompts.iter().enumerate() {
        let turn = i as i64 + 1;
        let ts = format!("1700000000.00710{turn}");
        let (msg_ts, thread) = if turn == 1 {
            (root, None)
        } else {
            (ts.as_str(), Some(root))
        };
        let r = app
            .post_event(&mention(
                &format!("EvCmd{turn}"),
                "C8",
                "U1",
                msg_ts,
                thread,
                prompt,
            ))
            .await;
        assert_eq!(r.status(), 200);
        if turn == 2 {
            // The milestone shows in the status message while the agent still runs.
            eventually(WAIT, "turn 2's progress in its status message", || async {
                slack
                    .calls("chat.update")
                    .iter()
                    .any(|u| u["blocks"].to_string().contains("wrote turn2.txt"))
                    .then_some(())
            })
            .await;
            let home = workdir.join("homes").join(session_id(&app).await);
            std::fs::write(home.join("go2"), "").unwrap();
        }
        cards.push(done_card(&slack, "C8", root, turn).await);
    }

    let session_id = session_id(&app).await;
    let home = workdir.join("homes").join(&session_id);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'")
            .await,
        3
    );
    let branch = format!("chime/{session_id}");

    // Turn 3's card: every file of the three turns, the branch, and the diff stat of the turn.
    let last = cards[2]["blocks"].to_string();
    assert!(
        last.contains("files: README.md turn1.txt turn2.txt turn3.txt"),
        "{last}"
    );
    assert!(last.contains(&format!("Branch `{branch}`")), "{last}");
    assert!(last.contains("turn3.txt"), "{last}");
    assert!(last.contains("1 file changed"), "diff stat: {last}");
    let first = cards[0]["blocks"].to_string();
    assert!(first.contains("files: README.md turn1.txt"), "{first}");
    assert!(!first.contains("turn2.txt"), "{first}");

    // The agent's input on turn 3 carries turns 1 and 2: their requests and their results.
    let input3 = std::fs::read_to_string(home.join("stdin3.txt")).unwrap();
    for needle in [
        "This is turn 3",
        "Turn 1, requested by",
        "Turn 2, requested by",
        "> start the changelog",
        "> add the release notes",
        "> files: README.md turn1.txt",
        "> files: README.md turn1.txt turn2.txt",
        "> list what we have so far",
    ] {
        assert!(
            input3.contains(needle),
            "{needle:?} missing from:\n{input3}"
        );
    }
    let input1 = std::fs::read_to_string(home.join("stdin1.txt")).unwrap();
    assert!(
        !input1.contains("Earlier turns"),
        "turn 1 has no history:\n{input1}"
    );

    // Three commits on the session's branch, on top of main, in the mirror the worktree uses.
    let mirror = workdir.join("mirrors").join("acme").join("api.git");
    assert_eq!(
        git(
            &mirror,
            &["rev-list", "--count", &format!("refs/heads/main..{branch}")]
        ),
        "3"
    );
    assert_eq!(
        git(
            &mirror,
            &[
                "merge-base",
                "refs/heads/main",
                &format!("refs/heads/{branch}")
            ]
        ),
        git(&mirror, &["rev-parse", "refs/heads/main"]),
        "the branch starts from main"
    );
    let worktree = workdir.join("worktrees").join(&session_id).join(REPO);
    assert_eq!(git(&worktree, &["branch", "--show-current"]), branch);
    assert_eq!(
        git(&worktree, &["status", "--porcelain"]),
        "",
        "all committed"
    );
    let subjects = git(
        &mirror,
        &["log", "--format=%s", &format!("refs/heads/{branch}")],
    );
    assert_eq!(
        subjects,
        "chime: turn 3: list what we have so far\nchime: turn 2: add the release notes\nchime: turn 1: start the changelog\ninitial"
    );
    app.stop().await;
}
dual_db!(three_turns_test, three_turns_build_on_each_other);

/// An agent that fails with binary garbage (U+0000 included) on stderr gets a failed card with
/// its exit status, once, and the task ends as failed rather than being retried.
async fn binary_stderr_fails_cleanly(db: TestDb) {
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let agent = tmp.path().join("agent.sh");
    write_script(
        &agent,
        "#!/bin/bash\ncat >/dev/null\nprintf 'core dumped\\0\\001\\377 here' >&2\nexit 3\n",
    );
    let mut config = test_config(&db, &slack);
    config.agent.workdir = tmp.path().join("work");
    command_backend(&mut config, "agent", vec![agent.display().to_string()], 60);
    let app = TestApp::spawn(config).await;
    let root = "1700000000.008000";
    app.post_event(&mention("EvBin", "C9", "U1", root, None, "crash please"))
        .await;
    let card = eventually(WAIT, "a failed card", || async {
        slack
            .thread("C9", root)
            .into_iter()
            .find(|m| m["blocks"].to_string().contains("*Failed*"))
    })
    .await;
    let text = card["blocks"].to_string();
    assert!(text.contains("agent exited with status 3"), "{text}");
    assert!(text.contains("core dumped"), "{text}");
    assert!(text.contains("here"), "{text}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE state = 'failed' AND attempts = 1")
            .await,
        1
    );
    app.stop().await;
}
dual_db!(binary_stderr_test, binary_stderr_fails_cleanly);

/// Two repository pickers in one thread, answered with different repositories: each turn runs in
/// a checkout of the repository picked for it (turn 2 once ran in turn 1's checkout).
async fn each_picked_repository_gets_its_own_worktree(db: TestDb) {
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut config = test_config(&db, &slack);
    config.agent.workdir = tmp.path().join("work");
    for name in ["api", "web"] {
        let upstream = tmp.path().join(name);
        init_repo(&upstream, "which.txt", name);
        config.repos.insert(
            format!("acme/{name}"),
            RepoConfig {
                url: upstream.display().to_string(),
                default_branch: Some("main".into()),
                ..Default::default()
            },
        );
    }
    let agent = tmp.path().join("agent.sh");
    write_script(
        &agent,
        "#!/bin/bash\ncat >/dev/null\necho \"{\\\"type\\\":\\\"result\\\",\\\"text\\\":\\\"checkout of $(cat which.txt) for $CHIME_REPO\\\"}\"\n",
    );
    command_backend(&mut config, "agent", vec![agent.display().to_string()], 60);
    sandboxed(&mut config, "agent");
    let app = TestApp::spawn(config).await;

    let root = "1700000000.009000";
    app.post_event(&mention("EvPick1", "C10", "U1", root, None, "first"))
        .await;
    app.post_event(&mention(
        "EvPick2",
        "C10",
        "U1",
        "1700000000.009100",
        Some(root),
        "second",
    ))
    .await;
    let task = |turn: i64| {
        let app = &app;
        async move {
            eventually(WAIT, "a task waiting for its repository", || async {
                sqlx::query("SELECT id FROM tasks WHERE turn_no = $1 AND state = 'awaiting_repo'")
                    .bind(turn)
                    .fetch_optional(&app.db.pool)
                    .await
                    .unwrap()
                    .map(|r| r.get::<String, _>(0))
            })
            .await
        }
    };
    let pick = |task: String, repo: &'static str, ts: &'static str| {
        let mut click = button("chime_pick_repo", "", "U1", "C10", root, ts);
        click["actions"][0] = serde_json::json!({ "action_id": "chime_pick_repo", "type": "static_select",
            "selected_option": { "value": format!("{task} {repo}") }, "action_ts": ts });
        click
    };
    let first = task(1).await;
    let second = task(2).await;
    assert_eq!(
        app.click(&pick(first, "acme/api", "1700000001.000001"))
            .await
            .status(),
        200
    );
    let one = done_card(&slack, "C10", root, 1).await["blocks"].to_string();
    assert!(one.contains("checkout of api for acme/api"), "{one}");
    assert_eq!(
        app.click(&pick(second, "acme/web", "1700000002.000001"))
            .await
            .status(),
        200
    );
    let two = done_card(&slack, "C10", root, 2).await["blocks"].to_string();
    assert!(two.contains("checkout of web for acme/web"), "{two}");
    app.stop().await;
}
dual_db!(
    two_pickers_test,
    each_picked_repository_gets_its_own_worktree
);
