//! The command backend's per-session folders (scratch repository, home) are removed once their
//! session has been idle past `agent.cleanup_idle_days`; active sessions keep theirs.

mod common;

use common::*;
use std::time::Duration;

async fn idle_sessions_lose_their_folders(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = write_agent(
        dir.path(),
        "cat >/dev/null\necho notes > notes.txt\necho '{\"type\":\"result\",\"text\":\"done here\"}'",
    );
    let mut config = test_config(&db, &slack);
    command_backend(&mut config, "agent", vec![agent], 60);
    let workdir = dir.path().join("work");
    config.agent.workdir = workdir.clone();
    let app = TestApp::spawn(config).await;
    for (ev, root) in [("EvW1", "1700001000.000100"), ("EvW2", "1700001000.000200")] {
        app.post_event(&mention(ev, "C1", "U1", root, None, "take notes"))
            .await;
        slack.card("C1", root, "done here").await;
    }
    let sessions: Vec<String> =
        sqlx::query_scalar("SELECT session_id FROM tasks ORDER BY created_at")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    let (old, recent) = (&sessions[0], &sessions[1]);
    for s in [old, recent] {
        assert!(
            workdir.join("scratch").join(s).exists(),
            "{s} has no scratch repository"
        );
        assert!(workdir.join("homes").join(s).exists());
    }
    // The first session's last turn ended a month ago; a folder of no known session is left over.
    sqlx::query(
        "UPDATE tasks SET finished_at = $1, started_at = $1, created_at = $1 WHERE session_id = $2",
    )
    .bind(chrono_now() * 1000 - 30 * 86_400_000)
    .bind(old)
    .execute(&app.db.pool)
    .await
    .unwrap();
    std::fs::create_dir_all(workdir.join("homes").join("orphan")).unwrap();

    let swept = chime::backend::command::cleanup::sweep(
        &app.db,
        &workdir,
        Duration::from_secs(14 * 86_400),
    )
    .await
    .unwrap();
    assert_eq!(swept.len(), 2, "{swept:?}");
    assert!(swept.contains(old) && swept.contains(&"orphan".to_string()));
    assert!(!workdir.join("scratch").join(old).exists());
    assert!(!workdir.join("homes").join(old).exists());
    assert!(
        workdir.join("scratch").join(recent).exists(),
        "an active session keeps its folders"
    );
    assert!(!workdir.join("homes").join("orphan").exists());
    app.stop().await;
}
dual_db!(cleanup_test, idle_sessions_lose_their_folders);
