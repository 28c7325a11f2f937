//! One task, one runner: a slow thread fetch, a failing finish or a restart in between must never
//! start the same agent twice.

mod common;

use common::*;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use wiremock::matchers::path;
use wiremock::{Mock, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(40);

/// An agent that logs `start <ms>` and `end <ms>` lines to `log`, working `secs` in between.
fn logging_agent(dir: &Path, log: &Path, secs: u32) -> String {
    write_agent(
        dir,
        &format!(
            "cat >/dev/null\necho \"start $(date +%s%3N)\" >> {log}\nsleep {secs}\necho \"end $(date +%s%3N)\" >> {log}\necho '{{\"type\":\"result\",\"text\":\"all done here\"}}'",
            log = log.display()
        ),
    )
}

/// The agent runs as (start, end) pairs in ms, in the order they started.
fn runs(log: &Path) -> Vec<(u64, Option<u64>)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut runs: Vec<(u64, Option<u64>)> = vec![];
    let mut ends = vec![];
    for line in text.lines() {
        let (kind, at) = line.split_once(' ').unwrap();
        let at: u64 = at.trim().parse().unwrap();
        match kind {
            "start" => runs.push((at, None)),
            _ => ends.push(at),
        }
    }
    ends.sort();
    for (run, end) in runs.iter_mut().zip(ends) {
        run.1 = Some(end);
    }
    runs
}

/// Issue 6 item 4: conversations.replies answered after longer than the lease. The lease used to
/// start only after the fetch, so the task was claimed a second time by the same process, whose
/// heartbeat matched too: two agents ran in one worktree.
async fn slow_thread_fetch_runs_the_agent_once(db: TestDb) {
    let slack = FakeSlack::start().await;
    Mock::given(path("/api/conversations.replies"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "ok": true, "messages": [], "has_more": false }))
                .set_delay(Duration::from_secs(6)),
        )
        .with_priority(1)
        .mount(&slack.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let mut config = test_config(&db, &slack);
    config.worker.lease_secs = 3;
    config.agent.workdir = dir.path().join("work");
    command_backend(
        &mut config,
        "agent",
        vec![logging_agent(dir.path(), &log, 4)],
        60,
    );
    let app = TestApp::spawn(config).await;
    let root = "1700000000.100000";
    app.post_event(&mention("EvSlow1", "C1", "U1", root, None, "fix it"))
        .await;
    slack.card("C1", root, "all done here").await;
    // A second claim would have started its agent by now (it starts one fetch after the first).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = runs(&log);
    assert_eq!(runs.len(), 1, "the agent ran more than once: {runs:?}");
    assert_eq!(
        app.count("SELECT attempts FROM tasks").await,
        1,
        "the task was claimed again"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'")
            .await,
        1
    );
    app.stop().await;
}
dual_db!(
    slow_thread_fetch_test,
    slow_thread_fetch_runs_the_agent_once
);

/// A claim that lost its lease (it ran out and the task was claimed again, here by the same
/// process) can neither renew nor finish the task.
async fn a_stale_claim_cannot_renew_or_finish(db: TestDb) {
    use chime::session::{self, TaskState};
    let slack = FakeSlack::start().await;
    let config = test_config(&db, &slack);
    let store = chime::db::Db::connect(&config.database).await.unwrap();
    store.migrate().await.unwrap();
    sqlx::query("INSERT INTO sessions (id, surface, requester, backend, created_at, updated_at) VALUES ('s1', 'slack', 'U1', 'dry-run', 1, 1)")
        .execute(&store.pool).await.unwrap();
    sqlx::query("INSERT INTO tasks (id, session_id, turn_no, source_event, prompt, requester, backend, binding, state, created_at) \
                 VALUES ('t1', 's1', 1, 'e1', 'p', 'U1', 'dry-run', 'slack:T1/C1/1.1', 'queued', 1)")
        .execute(&store.pool).await.unwrap();
    let first = session::claim_task(&store, "one-process", 60_000)
        .await
        .unwrap()
        .unwrap();
    sqlx::query("UPDATE tasks SET lease_until = 1")
        .execute(&store.pool)
        .await
        .unwrap();
    let second = session::claim_task(&store, "one-process", 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(first.token, second.token);
    let id = &first.task.id;
    let stale = session::heartbeat(&store, id, &first.token, 60_000)
        .await
        .unwrap();
    assert!(!stale.still_owner, "the stale claim still renews the lease");
    let mut conn = store.pool.acquire().await.unwrap();
    let finished = session::finish_task(
        &mut conn,
        id,
        Some(&first.token),
        TaskState::Succeeded,
        None,
        None,
    )
    .await
    .unwrap();
    assert!(!finished, "the stale claim finished the task");
    assert!(
        session::heartbeat(&store, id, &second.token, 60_000)
            .await
            .unwrap()
            .still_owner
    );
}
dual_db!(stale_claim_test, a_stale_claim_cannot_renew_or_finish);

/// Makes the store refuse to end any task (as a database that fails for a while would) until
/// [`allow_finishing`].
async fn refuse_finishing(db: &chime::db::Db, postgres: bool) {
    sqlx::query("CREATE TABLE refuse_finish (x INTEGER)")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO refuse_finish VALUES (1)")
        .execute(&db.pool)
        .await
        .unwrap();
    let statements: &[&str] = if postgres {
        &[
            "CREATE FUNCTION refuse_finish() RETURNS trigger AS $$ BEGIN \
               IF NEW.state IN ('succeeded', 'failed', 'cancelled') AND EXISTS (SELECT 1 FROM refuse_finish) THEN \
                 RAISE EXCEPTION 'injected: the store refuses to end tasks'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_finish BEFORE UPDATE ON tasks FOR EACH ROW EXECUTE FUNCTION refuse_finish()",
        ]
    } else {
        &["CREATE TRIGGER refuse_finish BEFORE UPDATE OF state ON tasks \
           WHEN NEW.state IN ('succeeded', 'failed', 'cancelled') AND EXISTS (SELECT 1 FROM refuse_finish) \
           BEGIN SELECT RAISE(ABORT, 'injected: the store refuses to end tasks'); END"]
    };
    for s in statements {
        sqlx::query(s).execute(&db.pool).await.unwrap();
    }
}

async fn allow_finishing(db: &chime::db::Db) {
    sqlx::query("DELETE FROM refuse_finish")
        .execute(&db.pool)
        .await
        .unwrap();
}

/// Issue 6 item 12: finishing that fails for longer than about 3 s used to leave the task running
/// with no heartbeat, so its lease ran out and the agent was run again.
async fn finish_failing_for_a_while_does_not_rerun(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let mut config = test_config(&db, &slack);
    config.worker.lease_secs = 2;
    config.agent.workdir = dir.path().join("work");
    command_backend(
        &mut config,
        "agent",
        vec![logging_agent(dir.path(), &log, 1)],
        60,
    );
    let app = TestApp::spawn(config).await;
    refuse_finishing(&app.db, db.is_postgres()).await;
    let root = "1700000000.200000";
    app.post_event(&mention("EvFin1", "C1", "U1", root, None, "fix it"))
        .await;
    eventually(WAIT, "the agent ended", || async {
        runs(&log).first().and_then(|r| r.1)
    })
    .await;
    // Several leases long, well past the old retry budget.
    tokio::time::sleep(Duration::from_secs(7)).await;
    allow_finishing(&app.db).await;
    slack.card("C1", root, "all done here").await;
    let runs = runs(&log);
    assert_eq!(runs.len(), 1, "the agent ran again: {runs:?}");
    assert_eq!(
        app.count("SELECT attempts FROM tasks").await,
        1,
        "the task was claimed again"
    );
    app.stop().await;
}
dual_db!(finish_retry_test, finish_failing_for_a_while_does_not_rerun);

/// A process that stops while it cannot finish hands the task back with the agent's outcome
/// recorded; the next process finishes it from the record instead of running the agent again.
async fn restart_finishes_from_the_recorded_outcome(db: TestDb) {
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("runs.log");
    let mut config = test_config(&db, &slack);
    config.agent.workdir = dir.path().join("work");
    config.server.shutdown_grace_secs = 1;
    command_backend(
        &mut config,
        "agent",
        vec![logging_agent(dir.path(), &log, 1)],
        60,
    );
    let first = TestApp::spawn(config.clone()).await;
    refuse_finishing(&first.db, db.is_postgres()).await;
    let root = "1700000000.300000";
    first
        .post_event(&mention("EvFin2", "C1", "U1", root, None, "fix it"))
        .await;
    eventually(WAIT, "the outcome was recorded", || async {
        let n = first
            .count("SELECT COUNT(*) FROM tasks WHERE outcome_state = 'succeeded'")
            .await;
        (n == 1).then_some(())
    })
    .await;
    let store = first.db.clone();
    first.stop().await;
    allow_finishing(&store).await;
    let second = TestApp::spawn(config).await;
    slack.card("C1", root, "all done here").await;
    let runs = runs(&log);
    assert_eq!(runs.len(), 1, "the agent ran again: {runs:?}");
    second.stop().await;
}
dual_db!(
    recorded_outcome_test,
    restart_finishes_from_the_recorded_outcome
);
