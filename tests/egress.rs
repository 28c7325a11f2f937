//! The network allowlist: `chime check-config` lists every endpoint and fails on one outside an
//! air-gapped list; at run time a backend pointed outside the list gets a refused call (never
//! made), a log line, and a failed task that says why.

mod common;

use common::process::{free_port, ChimeProcess, FAST_CONFIG};
use common::*;
use std::process::Command;
use std::time::Duration;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn check_config(dir: &std::path::Path, toml: &str, env: &[(&str, &str)]) -> (bool, String) {
    let path = dir.join("chime.toml");
    std::fs::write(&path, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chime"));
    cmd.args(["check-config", "--config", path.to_str().unwrap()])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_config_lists_endpoints_and_fails_outside_an_air_gap() {
    let dir = tempfile::tempdir().unwrap();
    let slack = [
        ("SLACK_BOT_TOKEN", "xoxb-test-token"),
        ("SLACK_SIGNING_SECRET", "signing-secret-0123456789"),
        ("SLACK_API_URL", "https://slack.com/api"),
    ];
    let (ok, text) = check_config(dir.path(), "[network]\nmode = \"air-gapped\"\n", &slack);
    assert!(!ok, "{text}");
    assert!(
        text.contains("endpoint: Slack Web API: https://slack.com/api"),
        "{text}"
    );
    assert!(
        text.contains("slack.com is not in [network] allow_hosts (network.mode = \"air-gapped\")"),
        "{text}"
    );
    assert!(!text.contains("xoxb-test-token"), "{text}");

    // The air-gapped deployment of the README: the playground and a model on the internal network.
    let local_model = "[network]\nmode = \"air-gapped\"\nallow_hosts = [\"llm.internal\"]\n\n\
        [agent]\ndefault_backend = \"local\"\n\n[backends.local]\nkind = \"openai\"\nmodel = \"qwen\"\napi = \"chat\"\n";
    let (ok, text) = check_config(
        dir.path(),
        local_model,
        &[("OPENAI_BASE_URL", "http://llm.internal:8000/v1")],
    );
    assert!(ok, "{text}");
    assert!(
        text.contains("endpoint: [backends.local]: http://llm.internal:8000/v1"),
        "{text}"
    );
    let (ok, text) = check_config(
        dir.path(),
        local_model,
        &[("OPENAI_BASE_URL", "https://api.openai.com/v1")],
    );
    assert!(!ok && text.contains("api.openai.com is not in"), "{text}");
}

/// Air-gapped, with the model server named outside the list: the call is refused before any
/// connection, the refusal is logged, and the task fails saying why.
async fn a_backend_outside_the_list_is_refused(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = format!(
        "{FAST_CONFIG}\n[network]\nmode = \"air-gapped\"\n\n[agent]\ndefault_backend = \"gpt\"\n\n\
         [backends.gpt]\nkind = \"openai\"\nmodel = \"gpt-test\"\napi = \"chat\"\n"
    );
    let env = vec![
        ("DATABASE_URL", db.url().to_string()),
        ("SLACK_SIGNING_SECRET", SECRET.to_string()),
        ("SLACK_BOT_TOKEN", "xoxb-test-token".to_string()),
        ("SLACK_API_URL", slack.api_url()),
        (
            "OPENAI_BASE_URL",
            "http://model.outside.example/v1".to_string(),
        ),
    ];
    let chime = ChimeProcess::start(dir.path(), "chime", port, &env, &config).await;
    let root = "1700003000.000100";
    let r = signed_post(
        &reqwest::Client::new(),
        &format!("{}/slack/events", chime.base),
        mention("EvNet1", "C4", "U1", root, None, "summarise the incident")
            .to_string()
            .into_bytes(),
        "application/json",
        &[],
    )
    .await;
    assert_eq!(r.status(), 200);
    let card = slack.card("C4", root, "Failed").await.to_string();
    assert!(
        card.contains("refused by the network allowlist: model.outside.example is not in [network] allow_hosts"),
        "{card}"
    );
    let log = chime.log_text();
    assert!(
        log.contains("refused an outbound call outside the network allowlist")
            && log.contains("model.outside.example"),
        "{log}"
    );
    drop(chime);
}
dual_db!(air_gapped_test, a_backend_outside_the_list_is_refused);

/// A config whose allowlist names only `127.0.0.1` (the fake Slack), with an `openai` backend.
fn allowlisted_model(db: &TestDb, slack: &FakeSlack) -> chime::config::Config {
    let mut config = test_config(db, slack);
    config.network = chime::egress::NetworkConfig {
        mode: chime::egress::Mode::Allowlist,
        allow_hosts: vec!["127.0.0.1".into()],
    };
    config.backends.insert(
        "gpt".into(),
        chime::config::BackendConfig::Openai {
            model: "gpt-test".into(),
            api: chime::config::OpenaiApi::Chat,
            timeout_secs: 30,
            instructions: None,
            max_output_tokens: None,
        },
    );
    config.agent.default_backend = "gpt".into();
    config
}

/// An allowlist that names the fake Slack's address but not `localhost`: a model server reached
/// as `localhost` is never called, though it is up and would answer.
async fn a_refused_call_is_never_made(db: TestDb) {
    let slack = FakeSlack::start().await;
    let model = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(500))
        .mount(&model)
        .await;
    let mut config = allowlisted_model(&db, &slack);
    let port = model.address().port();
    config.endpoints.openai = Some(format!("http://localhost:{port}/v1"));
    let app = TestApp::spawn(config).await;
    let root = "1700003100.000100";
    app.post_event(&mention("EvNet2", "C4", "U1", root, None, "hello"))
        .await;
    let card = slack.card("C4", root, "Failed").await.to_string();
    assert!(
        card.contains("localhost is not in [network] allow_hosts"),
        "{card}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(model
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty());
    app.stop().await;
}
dual_db!(allowlist_test, a_refused_call_is_never_made);

/// A server on an allowed host that redirects elsewhere does not take a call there: the redirect
/// is checked like a first call, and the refusal is the turn's error.
async fn a_redirect_outside_the_list_is_refused(db: TestDb) {
    let slack = FakeSlack::start().await;
    let model = MockServer::start().await;
    let port = model.address().port();
    // 127.0.0.1 is allowed; the redirect names localhost, which is not.
    Mock::given(any())
        .respond_with(ResponseTemplate::new(307).insert_header(
            "location",
            format!("http://localhost:{port}/elsewhere").as_str(),
        ))
        .mount(&model)
        .await;
    let mut config = allowlisted_model(&db, &slack);
    config.endpoints.openai = Some(format!("http://127.0.0.1:{port}/v1"));
    let app = TestApp::spawn(config).await;
    let root = "1700003200.000100";
    app.post_event(&mention("EvNet3", "C4", "U1", root, None, "hello"))
        .await;
    let card = slack.card("C4", root, "Failed").await.to_string();
    assert!(
        card.contains("localhost is not in [network] allow_hosts"),
        "{card}"
    );
    let paths: Vec<String> = model
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert!(!paths.iter().any(|p| p == "/elsewhere"), "{paths:?}");
    app.stop().await;
}
dual_db!(redirect_test, a_redirect_outside_the_list_is_refused);
