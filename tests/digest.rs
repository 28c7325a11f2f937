//! `chime digest preview`: a week seeded through the real ingestion paths (signed Slack mentions,
//! a real `command` agent that reports pull requests, signed GitHub webhooks for their fates)
//! shows the expected counts, merge rate and medians; an insta snapshot covers the layout.

mod common;

use common::{command_backend, mention, test_config, write_agent, FakeSlack, TestApp, TestDb};
use serde_json::json;
use std::time::Duration;

const HOOK_SECRET: &str = "github-hook-secret-for-tests";

async fn github(app: &TestApp, guid: &str, number: i64, merged: bool) {
    let body = json!({"action": "closed", "number": number,
        "pull_request": {"number": number, "merged": merged},
        "repository": {"full_name": "acme/api"}})
    .to_string();
    let r = app
        .http
        .post(app.url("/github/webhook"))
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", guid)
        .header(
            "x-hub-signature-256",
            chime::github::sign(HOOK_SECRET, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn preview(db: &TestDb, args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chime"))
        .args(["digest", "preview"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn seeded_week(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    // "please fail" fails the turn; the retry fix reports pull request 1, the docs fix 2 (turns
    // run side by side, so the number comes from the request, not from a counter).
    let agent = write_agent(
        dir.path(),
        r#"input=$(cat); if echo "$input" | grep -q "please fail"; then echo "it broke" >&2; exit 3; fi
n=1; if echo "$input" | grep -q "the docs"; then n=2; fi
echo "{\"type\":\"pr\",\"url\":\"https://github.com/acme/api/pull/$n\"}"
echo '{"type":"result","text":"done"}'"#,
    );
    let mut config = test_config(&db, &slack);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = dir.path().join("work");
    config.secrets.github_webhook_secret = Some(HOOK_SECRET.to_string().into());
    let app = TestApp::spawn(config).await;
    for (i, (user, channel, text)) in [
        ("U1", "C1", "fix the retry"),
        ("U1", "C2", "fix the docs"),
        ("U2", "C1", "please fail"),
    ]
    .iter()
    .enumerate()
    {
        let ts = format!("1700000000.00010{i}");
        app.post_event(&mention(&format!("Ev{i}"), channel, user, &ts, None, text))
            .await;
    }
    common::eventually(Duration::from_secs(30), "three turns ended", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE state IN ('succeeded', 'failed')")
            .await
            == 3)
            .then_some(())
    })
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM pull_requests").await, 2);
    // Feedback on the first result, through its card's own buttons: U1 thumbs up; U2 thumbs
    // up, then changes to thumbs down (one vote each); a forged vote for that result pressed in
    // another thread counts for nothing.
    let root = "1700000000.000100";
    let card = slack.card("C1", root, "chime_feedback").await;
    let values: Vec<String> = card["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "context_actions")
        .flat_map(|b| {
            let e = &b["elements"][0];
            assert_eq!(e["type"], "feedback_buttons");
            [
                e["positive_button"]["value"].as_str().unwrap().to_string(),
                e["negative_button"]["value"].as_str().unwrap().to_string(),
            ]
        })
        .collect();
    let (up, down) = (&values[0], &values[1]);
    assert!(
        up.starts_with("up ") && down.starts_with("down "),
        "{values:?}"
    );
    let vote = |value: &str, user: &str, channel: &str, thread: &str, n: u32| {
        let mut click = common::button(
            "chime_feedback",
            value,
            user,
            channel,
            thread,
            &format!("1700000003.{n:06}"),
        );
        click["actions"][0]["type"] = json!("feedback_buttons");
        click
    };
    for (i, (value, user, channel, thread)) in [
        (up, "U1", "C1", root),
        (up, "U2", "C1", root),
        (down, "U2", "C1", root),
        (down, "U3", "C2", "1700000000.000101"),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            app.click(&vote(value, user, channel, thread, i as u32))
                .await
                .status(),
            200
        );
    }
    common::eventually(Duration::from_secs(10), "the votes handled", || async {
        (app.count("SELECT COUNT(*) FROM inbox WHERE state <> 'done'")
            .await
            == 0)
            .then_some(())
    })
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM task_feedback").await, 2);
    assert_eq!(
        app.text("SELECT user_id FROM task_feedback WHERE positive = 0")
            .await,
        "U2"
    );
    github(&app, "g-1", 1, true).await;
    github(&app, "g-2", 2, false).await;
    common::eventually(Duration::from_secs(10), "the fates recorded", || async {
        (app.count("SELECT COUNT(*) FROM pull_requests WHERE state <> 'open'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    app.stop().await;

    let text = preview(&db, &[]);
    for expected in [
        "Sessions started: 3 (+3)",
        "Turns: 3 (+3): mentions 3 (+3), suggestions 0 (±0), Linear 0 (±0)",
        "completed 2 (+2), failed 1 (+1), stopped 0 (±0)",
        "Opened 2 (+2), merged 1 (+1), closed unmerged 1 (+1)",
        "Merge rate: 50% (—)",
        "- U1: 2",
        "- U2: 1",
        "- slack:C1: 2",
        "Thumbs up 1 (+1), thumbs down 1 (+1)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("request to result: —"), "{text}");
    assert!(!text.contains("opened to merged: —"), "{text}");
    // The week before had nothing: no rate, not 0%.
    let before = preview(
        &db,
        &[
            "--week",
            &chime::digest::Week::of(chime::ids::now_ms())
                .previous()
                .to_string(),
        ],
    );
    assert!(before.contains("Merge rate: — (—)"), "{before}");
    assert!(before.contains("Nobody asked this week."), "{before}");
    insta::with_settings!({filters => vec![
        (r"\d{4}-W\d{2}", "[week]"),
        (r"\d+(\.\d)? (s|min|h|days)\b", "[duration]"),
    ]}, {
        insta::assert_snapshot!("digest_preview", text);
    });
    // The Slack rendering is valid Block Kit JSON with the same numbers.
    let blocks: serde_json::Value =
        serde_json::from_str(&preview(&db, &["--format", "blocks"])).unwrap();
    assert!(
        blocks["blocks"].to_string().contains("Merge rate: 50%"),
        "{blocks}"
    );
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_chime"))
        .args(["digest", "preview", "--week", "2026-W99"])
        .env_clear()
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("2026-W47"));
}
dual_db!(seeded_week_on, seeded_week);

async fn chime_digest_post(db: &TestDb, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_chime"))
        .args(["digest", "post"])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .output()
        .await
        .unwrap()
}

/// `chime digest post` has the running Chime post the digest now, where it is told, and says
/// when it was sent; with nowhere to post, or a place it cannot parse, it says why.
async fn post_now(db: TestDb) {
    let slack = FakeSlack::start().await;
    let app = TestApp::spawn(test_config(&db, &slack)).await;
    let week = chime::digest::Week::of(chime::ids::now_ms()).to_string();
    let out = chime_digest_post(&db, &["--to", "slack:T1/CDIGEST", "--week", &week]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("posted the {week} digest to slack:T1/CDIGEST")),
        "{stdout}"
    );
    let posts: Vec<_> = slack
        .calls("chat.postMessage")
        .into_iter()
        .filter(|p| p["channel"] == "CDIGEST")
        .collect();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(
        posts[0]["blocks"]
            .to_string()
            .contains("Nobody asked this week"),
        "{posts:?}"
    );

    for (args, says) in [
        (vec![], "nowhere to post"),
        (vec!["--to", "slack:T1"], "not slack:TEAM/CHANNEL"),
        (
            vec!["--to", "irc:#ops"],
            "not slack:TEAM/CHANNEL or local:CHANNEL",
        ),
        (vec!["--to", "local:C1", "--week", "2026-W99"], "2026-W47"),
    ] {
        let out = chime_digest_post(&db, &args).await;
        assert!(!out.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(says),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    app.stop().await;
    // No Chime running: the digest is queued (durably), and the command says it is not sent yet.
    let out = chime_digest_post(&db, &["--to", "slack:T1/CDIGEST", "--wait", "1"]).await;
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no running Chime has sent it yet"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        slack
            .calls("chat.postMessage")
            .iter()
            .filter(|p| p["channel"] == "CDIGEST")
            .count(),
        1
    );
}
dual_db!(post_now_on, post_now);
