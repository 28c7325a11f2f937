//! Linear end to end: signed webhooks in (`POST /linear/webhook`), GraphQL calls out to a fake
//! Linear, through the same pipeline as Slack (inbox, sessions, a real `command` agent, outbox).

mod common;

use common::fake_linear::FakeLinear;
use common::{command_backend, eventually, test_config, write_agent, FakeSlack, TestApp, TestDb};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WEBHOOK_SECRET: &str = "lin_wh_test_secret";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An `AgentSessionEvent` `created` for session `session` on ENG-123: a mention when `comment`
/// is given, a delegation otherwise.
fn created(session: &str, comment: Option<&str>, description: &str) -> Value {
    let mut v = json!({
        "type": "AgentSessionEvent", "action": "created", "organizationId": "org-1",
        "appUserId": "app-user", "oauthClientId": "client", "webhookId": "wh-1",
        "webhookTimestamp": now_ms(), "createdAt": "2026-11-30T09:00:00.000Z",
        "promptContext": "<issue identifier=\"ENG-123\"><title>Retry test flakes</title></issue>",
        "agentSession": {
            "id": session, "creatorId": "lin-user-1", "status": "pending", "type": "commentThread",
            "creator": {"id": "lin-user-1", "name": "Ada", "email": "ada@acme.dev",
                "url": "https://linear.app/acme/profiles/ada"},
            "appUserId": "app-user", "organizationId": "org-1", "createdAt": "", "updatedAt": "",
            "issue": {"id": "iss-1", "identifier": "ENG-123", "title": "Retry test flakes",
                "url": "https://linear.app/acme/issue/ENG-123", "teamId": "t1",
                "team": {"id": "t1", "key": "ENG", "name": "Engineering"},
                "description": description}
        }
    });
    if let Some(c) = comment {
        v["agentSession"]["comment"] = json!({"id": "cm-0", "body": c});
    }
    v
}

fn prompted(session: &str, activity: &str, user: &str, body: &str, signal: Option<&str>) -> Value {
    let mut v = json!({
        "type": "AgentSessionEvent", "action": "prompted", "organizationId": "org-1",
        "appUserId": "app-user", "oauthClientId": "client", "webhookId": "wh-1",
        "webhookTimestamp": now_ms(), "createdAt": "2026-11-30T09:05:00.000Z",
        "agentSession": {"id": session, "organizationId": "org-1", "status": "active"},
        "agentActivity": {"id": activity, "agentSessionId": session, "userId": user,
            "content": {"type": "prompt", "body": body}}
    });
    if let Some(s) = signal {
        v["agentActivity"]["signal"] = json!(s);
    }
    v
}

async fn deliver(app: &TestApp, body: &Value, delivery: &str) -> reqwest::Response {
    deliver_signed(app, serde_json::to_vec(body).unwrap(), delivery, None).await
}

async fn deliver_signed(
    app: &TestApp,
    body: Vec<u8>,
    delivery: &str,
    signature: Option<&str>,
) -> reqwest::Response {
    let sig = signature
        .map(str::to_string)
        .unwrap_or_else(|| chime::linear::verify::sign(WEBHOOK_SECRET, &body));
    app.http
        .post(app.url("/linear/webhook"))
        .header("content-type", "application/json")
        .header("linear-signature", sig)
        .header("linear-delivery", delivery)
        .header("linear-event", "AgentSessionEvent")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn linear_config(db: &TestDb, slack: &FakeSlack, linear: &FakeLinear) -> chime::config::Config {
    let mut c = test_config(db, slack);
    c.secrets.linear_webhook_secret = Some(WEBHOOK_SECRET.into());
    c.secrets.linear_access_token = Some("lin_api_single_workspace".into());
    c.endpoints.linear = Some(linear.api_url());
    c
}

/// Waits until an activity of `kind` has been sent; returns every activity so far.
async fn until_activity(
    linear: &FakeLinear,
    kind: &str,
    limit: Duration,
) -> Vec<(String, String, Option<String>)> {
    eventually(limit, &format!("a Linear {kind} activity"), || async {
        let all = linear.activities();
        all.iter().any(|a| a.0 == kind).then_some(all)
    })
    .await
}

/// The signing acceptance: a mention's `created` gets a `thought` within 10 s of receipt, then
/// milestones as `action`s, then a `response` with the pull request (also set as the session's
/// link), all from a real agent run. A forged, stale or duplicate delivery produces nothing.
async fn mention_runs_and_answers(db: TestDb) {
    let (slack, linear) = (FakeSlack::start().await, FakeLinear::start().await);
    let dir = tempfile::tempdir().unwrap();
    let agent = write_agent(
        dir.path(),
        r#"cat > /dev/null
echo '{"type":"progress","text":"Reading the retry client"}'
sleep 0.5
echo '{"type":"progress","text":"Running the tests"}'
sleep 0.5
echo '{"type":"pr","url":"https://github.com/acme/api/pull/42"}'
echo '{"type":"result","text":"Fixed the flaky retry test: the timeout now covers the last chunk."}'"#,
    );
    let mut config = linear_config(&db, &slack, &linear);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = dir.path().join("work");
    let app = TestApp::spawn(config).await;

    let body = created(
        "sess-1",
        Some("@chime fix the flaky retry test"),
        "No repo line.",
    );
    let sent = Instant::now();
    let r = deliver(&app, &body, "d-1").await;
    assert_eq!(r.status(), 200);
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "the webhook must be acked at once"
    );

    let first = eventually(Duration::from_secs(10), "the first activity", || async {
        linear.ops("AgentActivityCreate").first().cloned()
    })
    .await;
    let took = first.at.duration_since(sent);
    assert!(
        took < Duration::from_secs(10),
        "first activity after {took:?}"
    );
    assert_eq!(first.variables["input"]["content"]["type"], "thought");
    assert_eq!(first.variables["input"]["agentSessionId"], "sess-1");
    assert_eq!(first.authorization, "lin_api_single_workspace");

    let all = until_activity(&linear, "response", Duration::from_secs(30)).await;
    let kinds: Vec<&str> = all.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"thought"), "{all:?}");
    assert_eq!(kinds.last(), Some(&"response"), "{all:?}");
    assert!(kinds.contains(&"action"), "{all:?}");
    assert!(
        kinds
            .iter()
            .all(|k| ["thought", "action", "response"].contains(k)),
        "{all:?}"
    );
    let response = &all.last().unwrap().1;
    assert!(
        response.contains("Fixed the flaky retry test"),
        "{response}"
    );
    assert!(
        response.contains("https://github.com/acme/api/pull/42"),
        "{response}"
    );
    let updates = linear.ops("AgentSessionUpdate");
    let urls: Vec<_> = updates
        .iter()
        .filter(|o| o.variables["input"].get("externalUrls").is_some())
        .collect();
    assert_eq!(urls.len(), 1);
    assert_eq!(
        urls[0].variables["input"]["externalUrls"][0]["url"],
        "https://github.com/acme/api/pull/42"
    );
    // The session's plan (checked by the fake against Linear's schema), the whole list each time:
    // the last has every milestone, completed.
    let plans: Vec<&Value> = updates
        .iter()
        .filter_map(|o| o.variables["input"].get("plan"))
        .collect();
    assert!(!plans.is_empty(), "no plan update reached Linear");
    let last = plans.last().unwrap().as_array().unwrap();
    let steps: Vec<(&str, &str)> = last
        .iter()
        .map(|s| {
            (
                s["content"].as_str().unwrap(),
                s["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        steps.contains(&("Reading the retry client", "completed"))
            && steps.contains(&("Running the tests", "completed")),
        "{steps:?}"
    );
    assert!(steps.iter().all(|(_, s)| *s == "completed"), "{steps:?}");
    // Activities carry Chime's own ids (so a retried send lands once).
    let ids: std::collections::HashSet<String> = linear
        .ops("AgentActivityCreate")
        .iter()
        .map(|o| o.variables["input"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), all.len());
    // The agent was given the issue as quoted data, with its comment attributed.
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);

    // A replay of the same delivery, a forged signature, and a stale timestamp: nothing new.
    let before = linear.ops("AgentActivityCreate").len();
    assert_eq!(deliver(&app, &body, "d-1").await.status(), 200);
    let forged = serde_json::to_vec(&created("sess-2", Some("@chime x"), "")).unwrap();
    let r = deliver_signed(&app, forged.clone(), "d-2", Some(&"0".repeat(64))).await;
    assert_eq!(r.status(), 401);
    let mut stale = created("sess-3", Some("@chime x"), "");
    stale["webhookTimestamp"] = json!(now_ms() - 120_000);
    let r = deliver(&app, &stale, "d-3").await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.unwrap().contains("60 s"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(linear.ops("AgentActivityCreate").len(), before);
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM inbox WHERE source = 'linear'")
            .await,
        1
    );
    app.stop().await;
}
dual_db!(mention_runs_and_answers_on, mention_runs_and_answers);

/// `prompted` continues the session (turn 2's input holds turn 1), and a `stop` signal cancels
/// the running agent and ends with a `response` saying so.
async fn follow_up_and_stop(db: TestDb) {
    let (slack, linear) = (FakeSlack::start().await, FakeLinear::start().await);
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    let agent = write_agent(
        dir.path(),
        &format!(
            r#"n=$(ls {d} | wc -l); cat > {d}/input-$n.txt
if grep -q "take your time" {d}/input-$n.txt; then echo '{{"type":"progress","text":"Thinking hard"}}'; sleep 60; fi
echo '{{"type":"result","text":"Done with turn '$n'"}}'"#,
            d = inputs.display()
        ),
    );
    let mut config = linear_config(&db, &slack, &linear);
    command_backend(&mut config, "agent", vec![agent], 120);
    config.agent.workdir = dir.path().join("work");
    config.linear.heartbeat_secs = 2;
    let app = TestApp::spawn(config).await;

    deliver(
        &app,
        &created("sess-f", Some("@chime summarise the flaky test"), ""),
        "f-1",
    )
    .await;
    until_activity(&linear, "response", Duration::from_secs(30)).await;
    let r = deliver(
        &app,
        &prompted(
            "sess-f",
            "act-2",
            "lin-user-1",
            "now also check the docs",
            None,
        ),
        "f-2",
    )
    .await;
    assert_eq!(r.status(), 200);
    eventually(Duration::from_secs(30), "two responses", || async {
        (linear
            .activities()
            .iter()
            .filter(|a| a.0 == "response")
            .count()
            == 2)
            .then_some(())
    })
    .await;
    let turn2 = std::fs::read_to_string(inputs.join("input-1.txt")).unwrap();
    assert!(
        turn2.contains("summarise the flaky test"),
        "turn 2 must carry turn 1:\n{turn2}"
    );
    assert!(turn2.contains("now also check the docs"));
    // The issue's comments and Linear's context are quoted data, attributed.
    assert!(turn2.contains("Seen on CI twice today."), "{turn2}");
    assert!(turn2.contains("Grace"), "{turn2}");
    assert_eq!(
        app.count("SELECT COUNT(DISTINCT session_id) FROM tasks")
            .await,
        1
    );

    // A long turn, stopped from Linear.
    deliver(
        &app,
        &prompted(
            "sess-f",
            "act-3",
            "lin-user-1",
            "take your time on the retry code",
            None,
        ),
        "f-3",
    )
    .await;
    eventually(Duration::from_secs(20), "the long turn running", || async {
        (app.count("SELECT COUNT(*) FROM tasks WHERE state = 'running'")
            .await
            == 1)
            .then_some(())
    })
    .await;
    // A quiet run gets a heartbeat thought before Linear would call the session stale.
    eventually(Duration::from_secs(20), "a heartbeat", || async {
        let all = linear.activities();
        all.iter()
            .any(|a| a.0 == "thought" && a.1.starts_with("Still working"))
            .then_some(())
    })
    .await;
    // Someone else's stop is refused with a reason, and the run goes on.
    deliver(
        &app,
        &prompted("sess-f", "act-3b", "lin-user-2", "", Some("stop")),
        "f-3b",
    )
    .await;
    eventually(Duration::from_secs(10), "the refusal", || async {
        let all = linear.activities();
        all.iter()
            .any(|a| a.0 == "response" && a.1.contains("Only the person who asked"))
            .then_some(())
    })
    .await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE state = 'running'")
            .await,
        1
    );
    let r = deliver(
        &app,
        &prompted("sess-f", "act-4", "lin-user-1", "", Some("stop")),
        "f-4",
    )
    .await;
    assert_eq!(r.status(), 200);
    let all = eventually(Duration::from_secs(20), "the stop's response", || async {
        let all = linear.activities();
        all.iter()
            .any(|a| a.0 == "response" && a.1.starts_with("Stopped"))
            .then_some(all)
    })
    .await;
    let last = all.last().unwrap();
    assert_eq!(last.0, "response");
    assert!(last.1.starts_with("Stopped"), "{last:?}");
    assert_eq!(
        app.text("SELECT state FROM tasks ORDER BY turn_no DESC LIMIT 1")
            .await,
        "cancelled"
    );
    app.stop().await;
}
dual_db!(follow_up_and_stop_on, follow_up_and_stop);

/// Delegation moves the unstarted issue to the team's first started state (by position) and makes
/// Chime its delegate; an unknown repository is asked for with a `select` elicitation, and the
/// answer starts the run in the chosen repository.
async fn delegation_and_unknown_repo(db: TestDb) {
    let (slack, linear) = (FakeSlack::start().await, FakeLinear::start().await);
    let dir = tempfile::tempdir().unwrap();
    for name in ["api", "web"] {
        common::init_repo(&dir.path().join(name), "README.md", name);
    }
    let agent = write_agent(
        dir.path(),
        r#"cat > /dev/null; echo "{\"type\":\"result\",\"text\":\"worked in $(cat README.md)\"}""#,
    );
    let mut config = linear_config(&db, &slack, &linear);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = dir.path().join("work");
    for name in ["api", "web"] {
        config.repos.insert(
            format!("acme/{name}"),
            chime::config::RepoConfig {
                url: dir.path().join(name).display().to_string(),
                default_branch: None,
                ..Default::default()
            },
        );
    }
    config.github.pull_requests = false;
    let app = TestApp::spawn(config).await;

    deliver(
        &app,
        &created("sess-d", None, "No repository named here."),
        "g-1",
    )
    .await;
    let update = eventually(Duration::from_secs(10), "the issue update", || async {
        linear.ops("IssueUpdate").first().cloned()
    })
    .await;
    assert_eq!(update.variables["id"], "iss-1");
    assert_eq!(update.variables["input"]["stateId"], "st-progress");
    assert_eq!(update.variables["input"]["delegateId"], "app-user");

    let all = until_activity(&linear, "elicitation", Duration::from_secs(10)).await;
    let ask = linear
        .ops("AgentActivityCreate")
        .into_iter()
        .find(|o| o.variables["input"]["content"]["type"] == "elicitation")
        .unwrap();
    assert_eq!(ask.variables["input"]["signal"], "select", "{all:?}");
    let options: Vec<&str> = ask.variables["input"]["signalMetadata"]["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["value"].as_str().unwrap())
        .collect();
    assert_eq!(options, ["acme/api", "acme/web"]);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE state = 'awaiting_repo'")
            .await,
        1
    );

    // The requester answers with the option's value.
    deliver(
        &app,
        &prompted("sess-d", "act-9", "lin-user-1", "acme/web", None),
        "g-2",
    )
    .await;
    let all = until_activity(&linear, "response", Duration::from_secs(30)).await;
    assert!(all.last().unwrap().1.contains("worked in web"), "{all:?}");
    assert_eq!(app.text("SELECT repo FROM sessions").await, "acme/web");
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
    app.stop().await;
}
dual_db!(delegation_and_unknown_repo_on, delegation_and_unknown_repo);

/// The output guard covers Linear: a secret in the agent's answer leaves redacted.
async fn secrets_never_reach_linear(db: TestDb) {
    let (slack, linear) = (FakeSlack::start().await, FakeLinear::start().await);
    let dir = tempfile::tempdir().unwrap();
    let leaked = format!("ghp_{}", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8");
    let agent = write_agent(
        dir.path(),
        &format!(
            r#"cat > /dev/null; echo '{{"type":"progress","text":"using token {leaked}"}}'; echo '{{"type":"result","text":"The token is {leaked} and the webhook secret is {WEBHOOK_SECRET} ![x](https://evil.example/p.png?d=1) <img src=x>"}}'"#
        ),
    );
    let mut config = linear_config(&db, &slack, &linear);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = dir.path().join("work");
    let app = TestApp::spawn(config).await;
    deliver(
        &app,
        &created("sess-s", Some("@chime what is the token"), ""),
        "s-1",
    )
    .await;
    let all = until_activity(&linear, "response", Duration::from_secs(30)).await;
    let sent = serde_json::to_string(
        &linear
            .ops("AgentActivityCreate")
            .iter()
            .map(|o| o.variables.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!sent.contains(&leaked), "{sent}");
    assert!(!sent.contains(WEBHOOK_SECRET), "{sent}");
    assert!(all.last().unwrap().1.contains("[redacted:"), "{all:?}");
    // Agent output cannot embed an image (fetched by every reader: a way out) or raw HTML.
    let body = &all.last().unwrap().1;
    assert!(!body.contains("![") && !body.contains(" <img"), "{body}");
    app.stop().await;
}
dual_db!(secrets_never_reach_linear_on, secrets_never_reach_linear);

/// OAuth with `actor=app`: the install link carries a state Chime made; the callback trades the
/// code for the workspace's token, stores it, and later calls there use it. A forged state, a
/// refused code and a callback without a state install nothing.
async fn oauth_install(db: TestDb) {
    let (slack, linear) = (FakeSlack::start().await, FakeLinear::start().await);
    let mut config = linear_config(&db, &slack, &linear);
    config.secrets.linear_access_token = None;
    config.secrets.linear_client_secret = Some("lin_client_secret".into());
    config.linear.client_id = "client-1".into();
    config.linear.redirect_url = "https://chime.example.com/linear/oauth/callback".into();
    let app = TestApp::spawn(config).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(app.url("/linear/install")).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(
        to.starts_with("https://linear.app/oauth/authorize?"),
        "{to}"
    );
    assert!(
        to.contains("actor=app") && to.contains("client_id=client-1"),
        "{to}"
    );
    let url = reqwest::Url::parse(&to).unwrap();
    let state = url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();

    let callback = |code: &str, state: &str| {
        let u = format!(
            "{}?{}",
            app.url("/linear/oauth/callback"),
            serde_urlencoded::to_string([("code", code), ("state", state)]).unwrap()
        );
        http.get(u).send()
    };
    assert_eq!(
        callback("good-code", "1.2.forged").await.unwrap().status(),
        400
    );
    assert_eq!(callback("bad-code", &state).await.unwrap().status(), 502);
    assert_eq!(app.count("SELECT COUNT(*) FROM linear_orgs").await, 0);
    let r = callback("good-code", &state).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Acme"));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM linear_orgs WHERE org_id = 'org-1'")
            .await,
        1
    );
    let form = linear
        .state
        .lock()
        .unwrap()
        .token_requests
        .last()
        .cloned()
        .unwrap();
    assert!(
        form.contains("grant_type=authorization_code")
            && form.contains("client_secret=lin_client_secret")
    );

    deliver(&app, &created("sess-o", Some("@chime hello"), ""), "o-1").await;
    let first = eventually(Duration::from_secs(10), "an activity", || async {
        linear.ops("AgentActivityCreate").first().cloned()
    })
    .await;
    assert_eq!(first.authorization, "Bearer lin_oauth_installed");
    app.stop().await;
}
dual_db!(oauth_install_on, oauth_install);

/// A malformed but signed delivery is refused with a reason; an unknown type is acknowledged and
/// ignored; a missing delivery id is refused.
async fn hostile_deliveries(db: TestDb) {
    let (slack, linear) = (FakeSlack::start().await, FakeLinear::start().await);
    let app = TestApp::spawn(linear_config(&db, &slack, &linear)).await;
    let unknown = json!({"type": "Reaction", "action": "create", "webhookTimestamp": now_ms()});
    let r = deliver(&app, &unknown, "h-1").await;
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap().as_str()),
        (200, "ignored")
    );
    let mut bad = created("sess/../x", Some("@chime"), "");
    bad["webhookTimestamp"] = json!(now_ms());
    let r = deliver(&app, &bad, "h-2").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("agentSession.id"));
    let r = deliver(
        &app,
        &created("sess-h", Some("@chime"), ""),
        "bad delivery id",
    )
    .await;
    assert_eq!(r.status(), 400);
    let r = deliver_signed(&app, b"not json".to_vec(), "h-4", None).await;
    assert_eq!(r.status(), 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.count("SELECT COUNT(*) FROM inbox").await, 0);
    assert!(linear.ops("AgentActivityCreate").is_empty());
    app.stop().await;
}
dual_db!(hostile_deliveries_on, hostile_deliveries);

/// One session across tools: a Slack thread naming ENG-123 and ENG-123's Linear agent session
/// share one session. Each turn's final result shows in both places; its progress only where it
/// was asked. A direct message that names the issue joins too, but nothing said there crosses to
/// Linear: neither its result nor, through the history, into a later Linear turn's agent input.
async fn one_session_across_slack_and_linear(db: TestDb) {
    let (slack, linear) = (FakeSlack::start().await, FakeLinear::start().await);
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    let agent = write_agent(
        dir.path(),
        &format!(
            r#"n=$(ls {d} | wc -l); n=$((n+1)); cat > {d}/input-$n.txt
echo '{{"type":"progress","text":"progress marker '$n'"}}'
sleep 2.5
echo '{{"type":"result","text":"result marker '$n'"}}'"#,
            d = inputs.display()
        ),
    );
    let mut config = linear_config(&db, &slack, &linear);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = dir.path().join("work");
    let app = TestApp::spawn(config).await;
    let (ch, root) = ("CENG", "1700000000.000100");

    // Turn 1, in Slack, names the issue.
    app.post_event(&common::mention(
        "Ev1",
        ch,
        "U1",
        root,
        None,
        "what is going on with ENG-123?",
    ))
    .await;
    slack.card(ch, root, "result marker 1").await;

    // Turn 2, from Linear, joins the Slack thread's session.
    deliver(&app, &created("sess-x", Some("@chime fix it"), ""), "x-1").await;
    let all = until_activity(&linear, "response", Duration::from_secs(30)).await;
    assert!(all.last().unwrap().1.contains("result marker 2"), "{all:?}");
    assert!(
        all.iter().any(|a| a.1.contains("progress marker 2")),
        "{all:?}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM session_bindings").await, 2);
    let turn2 = std::fs::read_to_string(inputs.join("input-2.txt")).unwrap();
    assert!(turn2.contains("what is going on with ENG-123"), "{turn2}");
    // Its result is mirrored into the Slack thread; its progress is not.
    slack.card(ch, root, "result marker 2").await;
    let slack_text = serde_json::to_string(&slack.thread(ch, root)).unwrap();
    assert!(!slack_text.contains("progress marker 2"), "{slack_text}");
    // And nothing of Slack's turn 1 went to Linear (it ended before Linear joined).
    assert!(!linear.activities().iter().any(|a| a.1.contains("marker 1")));

    // Turn 3, in Slack again: its result is mirrored into Linear, its progress is not.
    app.post_event(&common::mention(
        "Ev3",
        ch,
        "U1",
        "1700000000.000300",
        Some(root),
        "and the docs?",
    ))
    .await;
    slack.card(ch, root, "result marker 3").await;
    let all = eventually(
        Duration::from_secs(20),
        "turn 3 mirrored to Linear",
        || async {
            let all = linear.activities();
            all.iter()
                .any(|a| a.1.contains("result marker 3"))
                .then_some(all)
        },
    )
    .await;
    let mirrored = all
        .iter()
        .find(|a| a.1.contains("result marker 3"))
        .unwrap();
    assert_eq!(mirrored.0, "response");
    assert!(mirrored.1.contains("From Slack"), "{mirrored:?}");
    assert!(
        !all.iter().any(|a| a.1.contains("progress marker 3")),
        "{all:?}"
    );

    // Turn 4, in a direct message naming the issue: it joins, and stays private.
    let dm = json!({ "type": "message", "channel_type": "im", "channel": "DPRIV", "user": "U1",
        "text": "ENG-123: the secret plan is to rewrite it", "ts": "1700000000.000400" });
    app.post_event(&common::envelope("Ev4", dm, None)).await;
    slack
        .card("DPRIV", "1700000000.000400", "result marker 4")
        .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM session_bindings").await, 3);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!linear.activities().iter().any(|a| a.1.contains("marker 4")));
    // A later Linear turn's agent does not see the private turn.
    deliver(
        &app,
        &prompted("sess-x", "act-5", "lin-user-1", "go on", None),
        "x-5",
    )
    .await;
    eventually(Duration::from_secs(30), "turn 5's answer", || async {
        linear
            .activities()
            .iter()
            .any(|a| a.1.contains("result marker 5"))
            .then_some(())
    })
    .await;
    let turn5 = std::fs::read_to_string(inputs.join("input-5.txt")).unwrap();
    assert!(turn5.contains("and the docs?"), "{turn5}");
    assert!(!turn5.contains("secret plan"), "{turn5}");
    // The public places' results still reach the DM (public to private is fine).
    slack
        .card("DPRIV", "1700000000.000400", "result marker 5")
        .await;
    app.stop().await;
}
dual_db!(
    one_session_across_slack_and_linear_on,
    one_session_across_slack_and_linear
);

fn issue_assigned(assignee: &str) -> Value {
    json!({
        "type": "Issue", "action": "update", "organizationId": "org-1", "webhookId": "wh-1",
        "webhookTimestamp": now_ms(), "createdAt": "2026-11-30T09:00:00.000Z",
        "actor": {"id": "lin-user-1", "name": "Ada", "type": "user"},
        "data": {"id": "iss-1", "identifier": "ENG-123", "title": "Retry test flakes",
            "url": "https://linear.app/acme/issue/ENG-123", "teamId": "t1",
            "description": "No repo here.", "assigneeId": assignee, "updatedAt": "2026-11-30T09:00:00.000Z"},
        "updatedFrom": {"assigneeId": null, "updatedAt": "2026-11-29T09:00:00.000Z"}
    })
}

fn comment(id: &str, user: &str, body: &str) -> Value {
    json!({
        "type": "Comment", "action": "create", "organizationId": "org-1", "webhookId": "wh-1",
        "webhookTimestamp": now_ms(), "createdAt": "2026-11-30T09:00:00.000Z",
        "data": {"id": id, "body": body, "userId": user, "issueId": "iss-1",
            "issue": {"id": "iss-1", "identifier": "ENG-123", "title": "Retry test flakes",
                "url": "https://linear.app/acme/issue/ENG-123", "teamId": "t1"}}
    })
}

/// Workspaces without agent sessions: an issue assigned to Chime's app user, and a comment that
/// @-mentions it, go through the same pipeline and are answered with comments. Chime's own
/// comments, comments that do not mention it, and assignments to others are ignored; once the
/// workspace sends agent-session events, plain mentions are left to the session.
async fn plain_assignment_and_comments(db: TestDb) {
    let (slack, linear) = (FakeSlack::start().await, FakeLinear::start().await);
    let dir = tempfile::tempdir().unwrap();
    let agent = write_agent(
        dir.path(),
        r#"cat > /dev/null; n=$(ls "$0.d" 2>/dev/null | wc -l); mkdir -p "$0.d"; touch "$0.d/$n"
echo '{"type":"progress","text":"working"}'
echo "{\"type\":\"result\",\"text\":\"result marker $n\"}""#,
    );
    let mut config = linear_config(&db, &slack, &linear);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = dir.path().join("work");
    let app = TestApp::spawn(config).await;
    let comments = || {
        linear
            .ops("CommentCreate")
            .iter()
            .map(|o| {
                o.variables["input"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect::<Vec<_>>()
    };

    // Assigned to someone else: nothing.
    assert_eq!(
        deliver(&app, &issue_assigned("lin-user-2"), "p-0")
            .await
            .status(),
        200
    );
    // Assigned to Chime: the issue moves to its first started state, and the answer is a comment.
    deliver(&app, &issue_assigned("app-user"), "p-1").await;
    let first = eventually(Duration::from_secs(30), "the answer comment", || async {
        linear.ops("CommentCreate").first().cloned()
    })
    .await;
    assert_eq!(first.variables["input"]["issueId"], "iss-1");
    assert!(
        comments()[0].contains("result marker 0"),
        "{:?}",
        comments()
    );
    let update = linear.ops("IssueUpdate");
    assert_eq!(update.len(), 1);
    assert_eq!(update[0].variables["input"]["stateId"], "st-progress");
    assert!(update[0].variables["input"].get("delegateId").is_none());
    // No activity and no comment per milestone.
    assert!(linear.ops("AgentActivityCreate").is_empty());
    assert_eq!(comments().len(), 1);

    // A comment that mentions Chime is a follow-up in the same session.
    deliver(
        &app,
        &comment("cm-2", "lin-user-1", "@chime now the docs too"),
        "p-2",
    )
    .await;
    eventually(Duration::from_secs(30), "the second answer", || async {
        (comments().len() == 2).then_some(())
    })
    .await;
    assert!(comments()[1].contains("result marker 1"));
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);

    // Ignored: Chime's own comment, a comment without a mention.
    deliver(
        &app,
        &comment("cm-3", "app-user", "@chime result marker 1"),
        "p-3",
    )
    .await;
    deliver(
        &app,
        &comment("cm-4", "lin-user-1", "thanks, looks good"),
        "p-4",
    )
    .await;
    // Once the workspace uses agent sessions, a plain mention is left to its session.
    deliver(&app, &created("sess-p", Some("@chime hi"), ""), "p-5").await;
    until_activity(&linear, "response", Duration::from_secs(30)).await;
    deliver(
        &app,
        &comment("cm-6", "lin-user-1", "@chime one more"),
        "p-6",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(comments().len(), 2, "{:?}", comments());
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 3);
    app.stop().await;
}
dual_db!(
    plain_assignment_and_comments_on,
    plain_assignment_and_comments
);

/// Linear's `RATELIMITED` answer is waited out, not counted as a failure: the activity still
/// lands, once.
async fn rate_limits_are_waited_out(db: TestDb) {
    let (slack, linear) = (FakeSlack::start().await, FakeLinear::start().await);
    let mut config = linear_config(&db, &slack, &linear);
    config.agent.default_backend = "dry-run".into();
    let app = TestApp::spawn(config).await;
    linear.state.lock().unwrap().rate_limit_next = 2;
    deliver(&app, &created("sess-r", Some("@chime hi"), ""), "r-1").await;
    let all = until_activity(&linear, "response", Duration::from_secs(40)).await;
    assert_eq!(
        all.iter().filter(|a| a.0 == "thought").count(),
        1,
        "{all:?}"
    );
    assert_eq!(linear.state.lock().unwrap().rate_limit_next, 0);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM outbox WHERE state = 'failed'")
            .await,
        0
    );
    app.stop().await;
}
dual_db!(rate_limits_are_waited_out_on, rate_limits_are_waited_out);

/// Identity: a Linear user whose verified email is a Slack member's is linked at once and runs;
/// one who is not gets Linear's `auth` signal with a link page instead of a run, links with
/// `/chime link CODE` in Slack (once: the code is spent), and then runs. Linear activities name
/// the person who asked.
async fn identity_linking(db: TestDb) {
    let (slack, linear) = (FakeSlack::start().await, FakeLinear::start().await);
    let mut config = linear_config(&db, &slack, &linear);
    config.agent.default_backend = "dry-run".into();
    config.server.public_url = Some("https://chime.example.com".into());
    let app = TestApp::spawn(config).await;

    // Ada's Linear email is a Slack member's: linked by email, and the answer names her.
    deliver(&app, &created("sess-a", Some("@chime hello"), ""), "i-1").await;
    let all = until_activity(&linear, "response", Duration::from_secs(20)).await;
    assert!(all.last().unwrap().1.contains("Asked by Ada."), "{all:?}");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM identities WHERE how = 'email'")
            .await,
        2
    );
    assert_eq!(
        app.text("SELECT user_id FROM identities WHERE surface = 'slack'")
            .await,
        "UADA"
    );

    // An outsider: no run, an auth signal with the page to link from.
    let mut outsider = created("sess-o", Some("@chime hi"), "");
    outsider["agentSession"]["creatorId"] = json!("outsider-1");
    outsider["agentSession"]["creator"] =
        json!({"id": "outsider-1", "name": "Olle", "email": "olle@outside.dev"});
    deliver(&app, &outsider, "i-2").await;
    let ask = eventually(Duration::from_secs(10), "the auth signal", || async {
        linear
            .ops("AgentActivityCreate")
            .into_iter()
            .find(|o| o.variables["input"]["signal"] == "auth")
    })
    .await;
    assert_eq!(ask.variables["input"]["agentSessionId"], "sess-o");
    let url = ask.variables["input"]["signalMetadata"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let code = url
        .strip_prefix("https://chime.example.com/link/")
        .unwrap()
        .to_string();
    assert_eq!(app.count("SELECT COUNT(*) FROM tasks").await, 1);
    let page = app
        .http
        .get(app.url(&format!("/link/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains(&format!("/chime link {code}")));
    let page = app
        .http
        .get(app.url("/link/NOSUCHCODE"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);

    // A wrong code links nothing; the right one links Olle's Slack account, once.
    slash(&app, "UOLLE", "C1", "1.1", "link WRONGCODE1").await;
    slash(&app, "UOLLE", "C1", "1.2", &format!("link {code}")).await;
    eventually(Duration::from_secs(10), "the link", || async {
        (app.count("SELECT COUNT(*) FROM identities WHERE how = 'code'")
            .await
            == 2)
            .then_some(())
    })
    .await;
    slash(&app, "UMALLORY", "C1", "1.3", &format!("link {code}")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM identities WHERE user_id = 'UMALLORY'")
            .await,
        0
    );

    // Now Olle's request runs.
    deliver(
        &app,
        &prompted("sess-o", "act-o2", "outsider-1", "hi again", None),
        "i-3",
    )
    .await;
    eventually(Duration::from_secs(20), "Olle's answer", || async {
        linear
            .activities()
            .iter()
            .any(|a| a.0 == "response" && a.1.contains("Asked by Olle."))
            .then_some(())
    })
    .await;
    app.stop().await;
}
dual_db!(identity_linking_on, identity_linking);

async fn slash(app: &TestApp, user: &str, channel: &str, trigger: &str, text: &str) {
    let body = serde_urlencoded::to_string([
        ("team_id", "T1"),
        ("user_id", user),
        ("channel_id", channel),
        ("trigger_id", trigger),
        ("command", "/chime"),
        ("text", text),
    ])
    .unwrap();
    let r = common::signed_post(
        &app.http,
        &app.url("/slack/commands"),
        body.into_bytes(),
        "application/x-www-form-urlencoded",
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
}

/// Routing: a `repo:` line in the issue wins; without one, the first `[[linear.routes]]` rule
/// whose team, project and label all match the issue (read from Linear) picks the repository.
async fn repo_lines_and_routes(db: TestDb) {
    let (slack, linear) = (FakeSlack::start().await, FakeLinear::start().await);
    let dir = tempfile::tempdir().unwrap();
    for name in ["api", "web"] {
        common::init_repo(&dir.path().join(name), "README.md", name);
    }
    let agent = write_agent(
        dir.path(),
        r#"cat > /dev/null; echo "{\"type\":\"result\",\"text\":\"worked in $(cat README.md)\"}""#,
    );
    let mut config = linear_config(&db, &slack, &linear);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = dir.path().join("work");
    config.github.pull_requests = false;
    for name in ["api", "web"] {
        config.repos.insert(
            format!("acme/{name}"),
            chime::config::RepoConfig {
                url: dir.path().join(name).display().to_string(),
                default_branch: None,
                ..Default::default()
            },
        );
    }
    config.linear.routes = vec![
        chime::config::LinearRoute {
            team: Some("OPS".into()),
            project: None,
            label: None,
            repo: "acme/web".into(),
        },
        chime::config::LinearRoute {
            team: Some("eng".into()),
            project: Some("Reliability".into()),
            label: Some("Backend".into()),
            repo: "acme/api".into(),
        },
    ];
    let app = TestApp::spawn(config).await;
    // No repo line: the second rule matches team ENG, project Reliability and label backend.
    deliver(
        &app,
        &created("sess-r1", Some("@chime fix it"), "No repo line."),
        "rt-1",
    )
    .await;
    let all = until_activity(&linear, "response", Duration::from_secs(30)).await;
    assert!(all.last().unwrap().1.contains("worked in api"), "{all:?}");
    assert!(!all.iter().any(|a| a.0 == "elicitation"), "{all:?}");
    // A repo line wins over the rules.
    // (Another issue: a second session on ENG-123 would join the first, repository and all.)
    let mut other = created(
        "sess-r2",
        Some("@chime fix it"),
        "Flaky.\n\nrepo: `acme/web`",
    );
    other["agentSession"]["issue"]["identifier"] = json!("ENG-124");
    other["agentSession"]["issue"]["id"] = json!("iss-2");
    deliver(&app, &other, "rt-2").await;
    eventually(Duration::from_secs(30), "the second answer", || async {
        linear
            .activities()
            .iter()
            .any(|a| a.0 == "response" && a.1.contains("worked in web"))
            .then_some(())
    })
    .await;
    app.stop().await;
}
dual_db!(repo_lines_and_routes_on, repo_lines_and_routes);

/// Plan approval on a Linear team (`routing.approval."linear:ENG" = "plan"`): the plan is an
/// elicitation whose one option is "approve"; another person's "approve" runs nothing; the
/// requester's does, once.
async fn plan_approval_on_a_team(db: TestDb) {
    let (slack, linear) = (FakeSlack::start().await, FakeLinear::start().await);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let agent = write_agent(
        dir.path(),
        &format!(
            r#"cat > /dev/null
echo "$CHIME_MODE $CHIME_TURN" >> {}
if [ "$CHIME_MODE" = plan ]; then
  echo '{{"type":"result","text":"1. Make the retry test wait for the last chunk\n2. Run it 50 times"}}'
else
  echo '{{"type":"result","text":"did the work"}}'
fi"#,
            log.display()
        ),
    );
    let mut config = linear_config(&db, &slack, &linear);
    command_backend(&mut config, "agent", vec![agent], 60);
    config.agent.workdir = dir.path().join("work");
    config
        .routing
        .approval
        .insert("linear:ENG".into(), chime::config::Approval::Plan);
    let app = TestApp::spawn(config).await;
    let runs = || std::fs::read_to_string(&log).unwrap_or_default();

    deliver(
        &app,
        &created(
            "sess-plan",
            Some("@chime fix the flaky retry test"),
            "No repo line.",
        ),
        "p-1",
    )
    .await;
    until_activity(&linear, "elicitation", Duration::from_secs(10)).await;
    let ask = linear
        .ops("AgentActivityCreate")
        .into_iter()
        .find(|o| o.variables["input"]["content"]["type"] == "elicitation")
        .unwrap();
    let body = ask.variables["input"]["content"]["body"].as_str().unwrap();
    assert!(
        body.contains("Plan for approval") && body.contains("wait for the last chunk"),
        "{body}"
    );
    assert_eq!(ask.variables["input"]["signal"], "select");
    assert_eq!(
        ask.variables["input"]["signalMetadata"]["options"],
        json!([{ "value": "approve" }])
    );
    assert_eq!(runs(), "plan 1\n");

    // Someone else's "approve" is refused; nothing runs.
    deliver(
        &app,
        &prompted("sess-plan", "act-p1", "lin-user-2", "approve", None),
        "p-2",
    )
    .await;
    eventually(Duration::from_secs(10), "the refusal handled", || async {
        (app.count("SELECT COUNT(*) FROM inbox WHERE state <> 'done'")
            .await
            == 0)
            .then_some(())
    })
    .await;
    assert_eq!(app.count("SELECT COUNT(*) FROM plan_decisions").await, 0);
    assert_eq!(runs(), "plan 1\n");

    // The requester picks "approve": the work runs, once.
    deliver(
        &app,
        &prompted("sess-plan", "act-p2", "lin-user-1", "approve", None),
        "p-3",
    )
    .await;
    eventually(Duration::from_secs(30), "the work's response", || async {
        linear
            .activities()
            .iter()
            .any(|a| a.0 == "response" && a.1.contains("did the work"))
            .then_some(())
    })
    .await;
    assert_eq!(runs(), "plan 1\nwork 2\n");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM plan_decisions WHERE decision = 'approved'")
            .await,
        1
    );
    app.stop().await;
}
dual_db!(plan_approval_on_a_team_on, plan_approval_on_a_team);
