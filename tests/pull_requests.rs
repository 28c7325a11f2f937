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
echo '{"type":"result","text":"Added turn'"$CHIME_TURN"'.txt for @acme/security; token=['"${GITHUB_TOKEN:-}"']"}'"#,
    );
    let mut config = test_config(db, slack);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = tmp.join("work");
    config.repos.insert(
        "acme/api".into(),
        RepoConfig {
            url: bare_origin(tmp).display().to_string(),
            default_branch: Some("main".into()),
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
    assert!(body.contains("app_redirect?team=T1&channel=C9"), "{body}");
    assert!(
        !body.contains("@acme/") && body.contains("> add the changelog"),
        "{body}"
    );
    assert!(!pr["title"].as_str().unwrap().contains("@acme"), "{pr}");
    // The agent never held the token.
    assert!(!body.contains(TOKEN) && body.contains("token=[]"), "{body}");
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
