//! The `command` backend's two phases: a repository's setup (its committed `.chime/setup`) runs
//! with network and the secret its config names, into a cache that later sessions reuse (a
//! lockfile change runs it once more); the agent then runs without network, with the cache
//! read-only and no secret anywhere it can look. A setup that fails shows its output's end; one
//! that leaves the secret in its cache fails.

mod common;

use chime::backend::command::find_bwrap;
use chime::config::{BackendConfig, RepoConfig, SandboxMode};
use common::*;
use std::path::Path;

const TOKEN_VAR: &str = "REGISTRY_TEST_TOKEN";
const TOKEN: &str = "npm_registry_t0ken_4bX9";

fn cache_dirs(workdir: &Path, repo: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(workdir.join("setup-cache").join(repo))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

async fn setup_is_cached_and_the_agent_is_sealed(db: TestDb) {
    let Some(_) = find_bwrap() else {
        assert!(
            std::env::var("CI").is_err(),
            "bubblewrap (bwrap) is needed on CI for the agent's sealed phase"
        );
        eprintln!("note: no bubblewrap: the sealed agent phase is not tested here");
        return;
    };
    // Both databases' cases set the same value.
    std::env::set_var(TOKEN_VAR, TOKEN);
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    // A listener on the host's loopback: setup can reach it, the agent must not.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            drop(s)
        }
    });

    let upstream = tmp.path().join("upstream");
    init_repo(&upstream, "Cargo.lock", "v1\n");
    std::fs::create_dir_all(upstream.join(".chime")).unwrap();
    std::fs::write(
        upstream.join(".chime/setup"),
        format!(
            "set -e\n[ -n \"${TOKEN_VAR}\" ] && echo \"registry=x\n//token=${TOKEN_VAR}\" > \"$HOME/.npmrc\"\n\
             bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' && echo reached > \"$CHIME_CACHE/network\"\n\
             date +%s%N > \"$CHIME_CACHE/marker\"\n"
        ),
    )
    .unwrap();
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
            "setup",
        ],
    );

    // The agent reports what it can reach and find.
    let agent = write_agent(
        tmp.path(),
        &format!(
            r#"cat > /dev/null
net=no; bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}' 2>/dev/null && net=yes
secret=no; (env; cat "$HOME"/.npmrc 2>/dev/null; grep -r . "$CHIME_CACHE" . 2>/dev/null) | grep -q '{TOKEN}' && secret=yes
cache=$(cat "$CHIME_CACHE/network" 2>/dev/null || echo none)
echo "{{\"type\":\"result\",\"text\":\"net=$net secret=$secret cache=$cache\"}}""#
        ),
    );
    let workdir = tmp.path().join("work");
    let mut config = test_config(&db, &slack);
    config.agent.workdir = workdir.clone();
    command_backend(&mut config, "agent", vec![agent], 120);
    if let Some(BackendConfig::Command { sandbox, .. }) = config.backends.get_mut("agent") {
        *sandbox = SandboxMode::Bwrap;
    }
    config.repos.insert(
        "acme/api".into(),
        RepoConfig {
            url: upstream.display().to_string(),
            default_branch: Some("main".into()),
            setup_secrets: vec![TOKEN_VAR.into()],
            ..Default::default()
        },
    );
    config.routing.default_repo = Some("acme/api".into());
    config.github.pull_requests = false;
    let app = TestApp::spawn(config).await;

    // First task: setup runs (with network and the secret), then the sealed agent.
    let first = "1700000500.000001";
    app.post_event(&mention("EvS1", "CS", "U1", first, None, "build it"))
        .await;
    let card = slack.card("CS", first, "net=").await;
    let text = card["blocks"].to_string();
    assert!(text.contains("net=no secret=no cache=reached"), "{text}");
    let dirs = cache_dirs(&workdir, "acme/api");
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let marker = workdir
        .join("setup-cache/acme/api")
        .join(&dirs[0])
        .join("marker");
    let first_run = std::fs::read_to_string(&marker).unwrap();

    // A second session reuses the cache: setup did not run again.
    let second = "1700000500.000002";
    app.post_event(&mention("EvS2", "CS", "U2", second, None, "build it again"))
        .await;
    let card = slack.card("CS", second, "net=").await;
    assert!(card["blocks"].to_string().contains("cache=reached"));
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), first_run);
    assert_eq!(cache_dirs(&workdir, "acme/api").len(), 1);
    // The turns' plans say which: set up, then cached.
    let first_plan = app
        .text("SELECT COALESCE(plan, '') FROM tasks ORDER BY created_at LIMIT 1")
        .await;
    assert!(
        first_plan.contains("Setting up (") && first_plan.contains(" s)"),
        "{first_plan}"
    );
    let second_plan = app
        .text("SELECT COALESCE(plan, '') FROM tasks ORDER BY created_at LIMIT 1 OFFSET 1")
        .await;
    assert!(second_plan.contains("Setting up (cached)"), "{second_plan}");

    // The lockfile changes upstream: the next new session runs setup once more, the one after
    // reuses that.
    std::fs::write(upstream.join("Cargo.lock"), "v2\n").unwrap();
    git(
        &upstream,
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@t",
            "commit",
            "--quiet",
            "-am",
            "bump",
        ],
    );
    for (i, root) in ["1700000500.000003", "1700000500.000004"]
        .iter()
        .enumerate()
    {
        app.post_event(&mention(
            &format!("EvS3{i}"),
            "CS",
            "U1",
            root,
            None,
            "after the bump",
        ))
        .await;
        slack.card("CS", root, "net=").await;
    }
    assert_eq!(
        cache_dirs(&workdir, "acme/api").len(),
        2,
        "setup ran once for v2"
    );
    app.stop().await;
}
dual_db!(setup_test, setup_is_cached_and_the_agent_is_sealed);

async fn failed_and_leaky_setups_fail_clearly(db: TestDb) {
    std::env::set_var(TOKEN_VAR, TOKEN);
    let slack = FakeSlack::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let agent = write_agent(
        tmp.path(),
        "cat > /dev/null; echo '{\"type\":\"result\",\"text\":\"agent ran\"}'",
    );
    let workdir = tmp.path().join("work");
    let mut config = test_config(&db, &slack);
    config.agent.workdir = workdir.clone();
    command_backend(&mut config, "agent", vec![agent], 60);
    for (name, script) in [
        (
            "broken",
            "echo 'resolving 120 packages'; echo 'E404 left-pad not found' >&2; exit 3",
        ),
        (
            "leaky",
            &format!("echo \"${TOKEN_VAR}\" > \"$CHIME_CACHE/creds\"") as &str,
        ),
    ] {
        let upstream = tmp.path().join(name);
        init_repo(&upstream, "README.md", name);
        config.repos.insert(
            format!("acme/{name}"),
            RepoConfig {
                url: upstream.display().to_string(),
                setup: vec!["sh".into(), "-c".into(), script.into()],
                setup_secrets: vec![TOKEN_VAR.into()],
                ..Default::default()
            },
        );
    }
    let app = TestApp::spawn(config).await;
    let broken = "1700000600.000001";
    app.post_event(&mention(
        "EvF1",
        "CF",
        "U1",
        broken,
        None,
        "go repo=acme/broken",
    ))
    .await;
    let card = slack.card("CF", broken, "setup failed").await;
    let text = card["blocks"].to_string();
    assert!(
        text.contains("E404 left-pad not found") && text.contains("chime_retry"),
        "{text}"
    );
    let leaky = "1700000600.000002";
    app.post_event(&mention(
        "EvF2",
        "CF",
        "U1",
        leaky,
        None,
        "go repo=acme/leaky",
    ))
    .await;
    let card = slack.card("CF", leaky, "left the value").await;
    let text = card["blocks"].to_string();
    assert!(text.contains(TOKEN_VAR) && !text.contains(TOKEN), "{text}");
    assert!(
        cache_dirs(&workdir, "acme/leaky").is_empty(),
        "the leaky cache is gone"
    );
    assert!(!slack
        .all_calls()
        .iter()
        .any(|c| c.params.to_string().contains("agent ran")));
    app.stop().await;
}
dual_db!(failed_setup_test, failed_and_leaky_setups_fail_clearly);
