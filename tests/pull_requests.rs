//! Pull requests Chime opens itself: a `command` turn that changed files in a repository has its
//! branch pushed to the repository (a local bare one here) and a pull request opened on a fake
//! GitHub, as an outbox step after the turn; the thread hears of it, a later turn pushes to the
//! same pull request, and GitHub's merge webhook comes back to the thread.

mod common;

use chime::config::{Config, RepoConfig};
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const TOKEN: &str = "ghp_test_token_0123456789abcdef";
const HOOK_SECRET: &str = "github-hook-secret-0123456789";
const WAIT: Duration = Duration::from_secs(60);

/// GitHub's `POST /repos/{owner}/{repo}/pulls`, refusing what the documented API would refuse.
#[derive(Clone, Default)]
struct FakeGithub {
    created: Arc<Mutex<Vec<Value>>>,
    /// Answer every request with this status instead (a token without access, say).
    refuse: Option<u16>,
}

impl Respond for FakeGithub {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let auth = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !auth.ends_with(TOKEN) {
            return ResponseTemplate::new(401).set_body_json(json!({"message": "Bad credentials"}));
        }
        if req
            .headers
            .get("x-github-api-version")
            .and_then(|v| v.to_str().ok())
            != Some("2022-11-28")
            || !req.headers.contains_key("user-agent")
        {
            return ResponseTemplate::new(400)
                .set_body_json(json!({"message": "missing API version or User-Agent"}));
        }
        if let Some(status) = self.refuse {
            return ResponseTemplate::new(status)
                .set_body_json(json!({"message": "Resource not accessible by integration"}));
        }
        let Ok(body) = serde_json::from_slice::<Value>(&req.body) else {
            return ResponseTemplate::new(400)
                .set_body_json(json!({"message": "Problems parsing JSON"}));
        };
        let shape_ok = ["title", "head", "base", "body"]
            .iter()
            .all(|k| body[k].as_str().is_some_and(|s| !s.is_empty()));
        if !shape_ok {
            return ResponseTemplate::new(422)
                .set_body_json(json!({"message": "Validation Failed"}));
        }
        let mut created = self.created.lock().unwrap();
        created.push(body.clone());
        let number = created.len() as u64 + 6;
        ResponseTemplate::new(201).set_body_json(json!({
            "id": 1000 + number, "number": number, "locked": false, "state": "open",
            "url": format!("http://fake/repos/acme/api/pulls/{number}"),
            "html_url": format!("https://github.com/acme/api/pull/{number}"),
            "title": body["title"], "body": body["body"], "draft": body["draft"],
            "head": { "ref": body["head"], "sha": "0".repeat(40), "label": format!("acme:{}", body["head"].as_str().unwrap()) },
            "base": { "ref": body["base"], "sha": "1".repeat(40), "label": "acme:main" },
        }))
    }
}

async fn fake_github(fake: &FakeGithub) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/acme/api/pulls"))
        .respond_with(fake.clone())
        .mount(&server)
        .await;
    server
}

/// A bare repository on `main`, as a team's origin would be.
fn bare_origin(tmp: &Path) -> std::path::PathBuf {
    let upstream = tmp.join("upstream");
    init_repo(&upstream, "README.md", "# api\n");
    let origin = tmp.join("origin.git");
    git(
        tmp,
        &[
            "clone",
            "--quiet",
            "--bare",
            upstream.to_str().unwrap(),
            origin.to_str().unwrap(),
        ],
    );
    origin
}

fn config_for(db: &TestDb, slack: &FakeSlack, tmp: &Path, github: &MockServer) -> Config {
    // Each turn adds a file; the prompt's `@` and the agent's summary are untrusted text.
    let agent = write_agent(
        tmp,
        r#"cat >/dev/null
echo "turn $CHIME_TURN" > "turn$CHIME_TURN.txt"
echo '{"type":"result","text":"Added turn'"$CHIME_TURN"'.txt for @acme/security; token=['"${GITHUB_TOKEN:-}"'] key sk_live_Zq8vN3xK5pR2mW7tY4bJzq8v"}'"#,
    );
    let mut config = test_config(db, slack);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = tmp.join("work");
    config.repos.insert(
        "acme/api".into(),
        RepoConfig {
            url: bare_origin(tmp).display().to_string(),
            default_branch: Some("main".into()),
            ..Default::default()
        },
    );
    config.routing.default_repo = Some("acme/api".into());
    config.secrets.github_token = Some(TOKEN.to_string().into());
    config.secrets.github_webhook_secret = Some(HOOK_SECRET.to_string().into());
    config.endpoints.github = Some(github.uri());
    config
}

/// The thread's replies that say something about a pull request.
fn pr_news(slack: &FakeSlack, root: &str) -> Vec<String> {
    slack
        .thread("C9", root)
        .into_iter()
        .map(|m| m["blocks"].to_string())
        .filter(|b| b.to_lowercase().contains("pull request"))
        .collect()
}

async fn a_changed_turn_opens_one_pull_request(db: TestDb) {
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeGithub::default();
    let github = fake_github(&fake).await;
    let app = TestApp::spawn(config_for(&db, &slack, tmp.path(), &github)).await;
    // U1's Linear account is linked (as `/chime link` would): the body names both.
    let mut conn = app.db.pool.acquire().await.unwrap();
    chime::identity::link(&mut conn, ("slack", "U1"), ("linear", "lin-ada"), "code")
        .await
        .unwrap();
    drop(conn);
    let root = "1700000950.000100";
    app.post_event(&mention(
        "EvPr1",
        "C9",
        "U1",
        root,
        None,
        "add the changelog @acme/admins",
    ))
    .await;
    slack.card("C9", root, "Added turn1.txt").await;
    let opened = eventually(WAIT, "the pull request opened", || async {
        pr_news(&slack, root).into_iter().next()
    })
    .await;
    assert!(
        opened.contains("https://github.com/acme/api/pull/7") && opened.contains("<@U1>"),
        "{opened}"
    );

    // The branch is in the team's repository, with the turn's work.
    let origin = tmp.path().join("origin.git");
    let sid = app.text("SELECT id FROM sessions").await;
    let branch = format!("chime/{sid}");
    let files = git(&origin, &["ls-tree", "--name-only", &branch]);
    assert!(files.contains("turn1.txt"), "{files}");

    // One pull request, into main from the branch, naming the requester and linking the thread,
    // with untrusted text quoted and unable to ping anyone.
    let created = fake.created.lock().unwrap().clone();
    assert_eq!(created.len(), 1, "{created:?}");
    let pr = &created[0];
    assert_eq!(pr["head"], branch.as_str());
    assert_eq!(pr["base"], "main");
    let body = pr["body"].as_str().unwrap();
    assert!(body.contains("`U1`"), "{body}");
    assert!(body.contains("(linear user `lin-ada`)"), "{body}");
    assert!(body.contains("app_redirect?team=T1&channel=C9"), "{body}");
    assert!(
        !body.contains("@acme/") && body.contains("> add the changelog"),
        "{body}"
    );
    assert!(!pr["title"].as_str().unwrap().contains("@acme"), "{pr}");
    // The agent never held the token, and what it printed is guarded on its way out.
    assert!(!body.contains(TOKEN) && body.contains("token=[]"), "{body}");
    assert!(
        !body.contains("sk_live_Zq8vN3xK5pR2mW7tY4bJzq8v")
            && body.contains("[redacted: stripe_key]"),
        "{body}"
    );
    let card = slack.card("C9", root, "Added turn1.txt").await.to_string();
    assert!(!card.contains("sk_live_Zq8vN3xK5pR2mW7tY4bJzq8v"), "{card}");
    assert_eq!(
        app.text("SELECT branch FROM pull_requests").await,
        branch.as_str()
    );

    // A follow-up pushes to the same pull request; no second one is opened.
    app.post_event(&mention(
        "EvPr2",
        "C9",
        "U1",
        "1700000950.000200",
        Some(root),
        "also the release notes",
    ))
    .await;
    slack.card("C9", root, "Added turn2.txt").await;
    eventually(WAIT, "turn 2 pushed", || async {
        let files = git(&origin, &["ls-tree", "--name-only", &branch]);
        files.contains("turn2.txt").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.created.lock().unwrap().len(), 1);
    assert_eq!(
        pr_news(&slack, root).len(),
        1,
        "{:?}",
        pr_news(&slack, root)
    );

    // GitHub says it was merged: the thread hears it and the stored state has the time.
    let merged = json!({ "action": "closed", "number": 7, "repository": { "full_name": "acme/api" },
        "pull_request": { "number": 7, "merged": true, "html_url": "https://github.com/acme/api/pull/7" } })
    .to_string();
    let r = app
        .http
        .post(app.url("/github/webhook"))
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", "guid-merge-1")
        .header(
            "x-hub-signature-256",
            chime::github::sign(HOOK_SECRET, merged.as_bytes()),
        )
        .body(merged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(WAIT, "the merge told", || async {
        pr_news(&slack, root)
            .into_iter()
            .find(|m| m.contains("was merged"))
    })
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM pull_requests WHERE state = 'merged' AND merged_at > 0")
            .await,
        1
    );
    app.stop().await;
}
dual_db!(a_changed_turn, a_changed_turn_opens_one_pull_request);

/// GitHub refuses the pull request (the token has no access): the thread is told once, with
/// where the work is, and the row is parked rather than retried forever.
async fn a_refused_pull_request_is_told(db: TestDb) {
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeGithub {
        refuse: Some(403),
        ..FakeGithub::default()
    };
    let github = fake_github(&fake).await;
    let app = TestApp::spawn(config_for(&db, &slack, tmp.path(), &github)).await;
    let root = "1700000951.000100";
    app.post_event(&mention(
        "EvPr9",
        "C9",
        "U1",
        root,
        None,
        "add the changelog",
    ))
    .await;
    let told = eventually(WAIT, "the refusal told", || async {
        pr_news(&slack, root).into_iter().next()
    })
    .await;
    assert!(
        told.contains("could not open a pull request") && told.contains("403"),
        "{told}"
    );
    assert!(!told.contains(TOKEN));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE surface = 'code_host' AND state = 'failed'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM pull_requests").await, 0);
    app.stop().await;
}
dual_db!(refused, a_refused_pull_request_is_told);

/// The branches of `repo` (a bare repository or a mirror) under `chime/`.
fn chime_branches(repo: &Path) -> Vec<String> {
    let out = git(
        repo,
        &[
            "for-each-ref",
            "--format=%(refname:short)",
            "refs/heads/chime/",
        ],
    );
    out.lines().map(str::to_string).collect()
}

fn best_of_config(db: &TestDb, slack: &FakeSlack, tmp: &Path, github: &MockServer) -> Config {
    let mut config = config_for(db, slack, tmp, github);
    // Each attempt leaves its own file and reports its checks.
    let agent = write_agent(
        tmp,
        r#"cat >/dev/null
echo "$CHIME_BRANCH" > "approach.txt"
echo '{"type":"checks","text":"tests: 12 passed"}'
echo '{"type":"result","text":"Tried the approach of '"$CHIME_BRANCH"'"}'"#,
    );
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.best_of_max = 3;
    config
}

/// The buttons of Chime's messages in a thread with this action id, as (value, message blocks).
fn buttons(slack: &FakeSlack, root: &str, action_id: &str) -> Vec<String> {
    slack
        .thread("C9", root)
        .iter()
        .flat_map(|m| {
            m["blocks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .flat_map(|b| {
                    let mut found = b["elements"].as_array().cloned().unwrap_or_default();
                    found.extend(b.get("accessory").cloned());
                    found
                })
                .filter(|e| e["action_id"] == action_id)
                .filter_map(|e| e["value"].as_str().map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

async fn three_attempts_then_one_pull_request(db: TestDb) {
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeGithub::default();
    let github = fake_github(&fake).await;
    let app = TestApp::spawn(best_of_config(&db, &slack, tmp.path(), &github)).await;
    let origin = tmp.path().join("origin.git");
    let mirror = tmp.path().join("work/mirrors/acme/api.git");

    // More than the cap is refused, with the cap named.
    let root0 = "1700000960.000100";
    app.post_event(&mention(
        "EvBo0",
        "C9",
        "U1",
        root0,
        None,
        "attempts=5 speed it up",
    ))
    .await;
    slack.card("C9", root0, "At most 3 attempts").await;

    let root = "1700000961.000100";
    app.post_event(&mention(
        "EvBo1",
        "C9",
        "U1",
        root,
        None,
        "attempts=3 speed up the parser",
    ))
    .await;
    let card = slack.card("C9", root, "3 of 3 attempts finished").await;
    let blocks = card["blocks"].to_string();
    assert!(blocks.contains("tests: 12 passed"), "{blocks}");
    let sid = app.text("SELECT id FROM sessions").await;
    let expected: Vec<String> = (1..=3).map(|k| format!("chime/{sid}-{k}")).collect();
    assert_eq!(chime_branches(&mirror), expected);
    eventually(WAIT, "the attempts pushed", || async {
        (chime_branches(&origin) == expected).then_some(())
    })
    .await;
    let choices = buttons(&slack, root, "chime_choose");
    assert_eq!(choices.len(), 3, "{choices:?}");
    assert!(
        fake.created.lock().unwrap().is_empty(),
        "no pull request before a choice"
    );

    // Another member's press changes nothing.
    app.click(&button(
        "chime_choose",
        &choices[1],
        "U2",
        "C9",
        root,
        "1.1",
    ))
    .await;
    slack.card("C9", root, "Only the person who asked").await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE chosen_attempt IS NOT NULL")
            .await,
        0
    );

    // The requester uses attempt 2: one pull request from its branch, the others deleted.
    app.click(&button(
        "chime_choose",
        &choices[1],
        "U1",
        "C9",
        root,
        "1.2",
    ))
    .await;
    eventually(WAIT, "the pull request opened", || async {
        pr_news(&slack, root)
            .into_iter()
            .find(|m| m.contains("Opened a pull request"))
    })
    .await;
    let keep = vec![expected[1].clone()];
    eventually(WAIT, "the other branches deleted", || async {
        (chime_branches(&origin) == keep && chime_branches(&mirror) == keep).then_some(())
    })
    .await;
    let created = fake.created.lock().unwrap().clone();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["head"], expected[1].as_str());
    assert!(created[0]["body"].as_str().unwrap().contains("-2"));
    let files = git(&origin, &["show", &format!("{}:approach.txt", expected[1])]);
    assert_eq!(files, expected[1]);

    // A second choice does nothing but say so.
    app.click(&button(
        "chime_choose",
        &choices[2],
        "U1",
        "C9",
        root,
        "1.3",
    ))
    .await;
    slack.card("C9", root, "Attempt 2 was already chosen").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.created.lock().unwrap().len(), 1);
    app.stop().await;
}
dual_db!(best_of_three, three_attempts_then_one_pull_request);

/// **Try 3 ways** on an ordinary result asks the same request again as three attempts.
async fn try_three_ways_from_a_result(db: TestDb) {
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let fake = FakeGithub::default();
    let github = fake_github(&fake).await;
    let mut config = best_of_config(&db, &slack, tmp.path(), &github);
    config.secrets.github_token = None; // branches stay local; nothing is pushed
    let app = TestApp::spawn(config).await;
    let root = "1700000962.000100";
    app.post_event(&mention("EvTw1", "C9", "U1", root, None, "tidy the parser"))
        .await;
    slack.card("C9", root, "Tried the approach").await;
    let ways = buttons(&slack, root, "chime_try_ways");
    assert_eq!(ways.len(), 1);
    app.click(&button("chime_try_ways", &ways[0], "U1", "C9", root, "2.1"))
        .await;
    app.click(&button("chime_try_ways", &ways[0], "U1", "C9", root, "2.2"))
        .await;
    slack.card("C9", root, "3 of 3 attempts finished").await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE variants = 3")
            .await,
        1
    );
    let choices = buttons(&slack, root, "chime_choose");
    app.click(&button(
        "chime_choose",
        &choices[0],
        "U1",
        "C9",
        root,
        "2.3",
    ))
    .await;
    slack.card("C9", root, "set GITHUB_TOKEN").await;
    let sid = app.text("SELECT id FROM sessions").await;
    let mirror = tmp.path().join("work/mirrors/acme/api.git");
    eventually(WAIT, "the unchosen branches deleted", || async {
        let left = chime_branches(&mirror);
        (left == vec![format!("chime/{sid}"), format!("chime/{sid}-1")]).then_some(())
    })
    .await;
    assert!(fake.created.lock().unwrap().is_empty());
    app.stop().await;
}
dual_db!(try_ways, try_three_ways_from_a_result);
