//! The `command` backend end to end: Slack mentions in, a real agent process on a real git
//! worktree, final cards out, over several turns of one session.

mod common;

use chime::config::RepoConfig;
use common::*;
use serde_json::Value;
use sqlx::Row;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);
const REPO: &str = "acme/api";

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
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&upstream).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    git(&upstream, &["init", "--quiet", "--initial-branch=main"]);
    std::fs::write(upstream.join("README.md"), "# api\n").unwrap();
    git(&upstream, &["add", "-A"]);
    git(
        &upstream,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@t",
            "commit",
            "--quiet",
            "-m",
            "initial",
        ],
    );

    // The agent keeps its input, leaves a file per turn and reports what the worktree holds.
    let agent = tmp.path().join("agent.sh");
    std::fs::write(
        &agent,
        format!(
            r#"#!/bin/bash
set -eu
cat > "{out}/stdin$CHIME_TURN.txt"
echo "turn $CHIME_TURN" > "turn$CHIME_TURN.txt"
echo '{{"type":"progress","text":"wrote turn'"$CHIME_TURN"'.txt"}}'
# Turn 2 waits until the test has seen its progress in Slack.
if [ "$CHIME_TURN" = 2 ]; then
  for _ in $(seq 1200); do [ -f "{out}/go2" ] && break; sleep 0.1; done
fi
echo '{{"type":"result","text":"files: '"$(echo $(ls))"'"}}'
"#,
            out = out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut config = test_config(&db, &slack);
    let workdir = tmp.path().join("work");
    config.agent.workdir = workdir.clone();
    command_backend(&mut config, "agent", vec![agent.display().to_string()], 120);
    config.repos.insert(
        REPO.into(),
        RepoConfig {
            url: upstream.display().to_string(),
            default_branch: Some("main".into()),
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
            std::fs::write(out.join("go2"), "").unwrap();
        }
        cards.push(done_card(&slack, "C8", root, turn).await);
    }

    let session_id: String = sqlx::query("SELECT id FROM sessions")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
        .get(0);
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
    let input3 = std::fs::read_to_string(out.join("stdin3.txt")).unwrap();
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
    let input1 = std::fs::read_to_string(out.join("stdin1.txt")).unwrap();
    assert!(
        !input1.contains("Earlier turns"),
        "turn 1 has no history:\n{input1}"
    );

    // Three commits on the session's branch, on top of main, in the mirror the worktree uses.
    let mirror = workdir.join("mirrors").join("acme__api.git");
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
    let worktree = workdir.join("worktrees").join(&session_id);
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
    std::fs::write(
        &agent,
        "#!/bin/bash\ncat >/dev/null\nprintf 'core dumped\\0\\001\\377 here' >&2\nexit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
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
