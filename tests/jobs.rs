//! Periodic jobs (issue 7 item 6): every replica ticks, exactly one runs each period.

mod common;

use common::*;

/// Two Chime instances on one database both tick the janitor's current period at start-up: one
/// claim row, one sweep. (Stopping an app waits for its jobs loop, whose first tick comes first.)
async fn two_replicas_run_the_janitor_once(db: TestDb) {
    let slack = FakeSlack::start().await;
    let config = test_config(&db, &slack);
    // An event handled long ago, past retention, stored before either replica starts (the first
    // tick comes at start-up): the sweep's side effect is that it is gone.
    let setup = chime::db::Db::connect(&config.database).await.unwrap();
    setup.migrate().await.unwrap();
    sqlx::query(
        "INSERT INTO inbox (source, delivery_id, payload, received_at, state) \
         VALUES ('slack', 'EvAncient', '{}', 1000, 'done')",
    )
    .execute(&setup.pool)
    .await
    .unwrap();
    setup.pool.close().await;
    let a = TestApp::spawn(config).await;
    let b = TestApp::spawn(test_config(&db, &slack)).await;
    let db_handle = a.db.clone();
    a.stop().await;
    b.stop().await;
    let count = |sql: &'static str| {
        let db = db_handle.clone();
        async move { sqlx::Row::get::<i64, _>(&sqlx::query(sql).fetch_one(&db.pool).await.unwrap(), 0) }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM job_runs WHERE job = 'janitor'").await,
        1,
        "one claim for the period"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM job_runs WHERE job = 'janitor' AND finished_at IS NOT NULL")
            .await,
        1,
        "and it ran to the end"
    );
    // Whichever replica won, the sweep ran: the old row went.
    assert_eq!(
        count("SELECT COUNT(*) FROM inbox WHERE delivery_id = 'EvAncient'").await,
        0
    );
}
dual_db!(janitor_once_test, two_replicas_run_the_janitor_once);

/// Many concurrent ticks of one period, from separate connections pools as separate replicas
/// have: the body runs once; the next period runs again.
async fn concurrent_ticks_run_a_period_once(db: TestDb) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Count(Arc<AtomicUsize>);
    #[async_trait::async_trait]
    impl chime::jobs::Job for Count {
        fn name(&self) -> &'static str {
            "count"
        }
        fn every(&self) -> std::time::Duration {
            std::time::Duration::from_secs(3600)
        }
        async fn run(&self, _db: &chime::db::Db) -> anyhow::Result<String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok("counted".into())
        }
    }

    let config = chime::config::DatabaseConfig {
        url: db.url().to_string(),
        ..Default::default()
    };
    let first = chime::db::Db::connect(&config).await.unwrap();
    first.migrate().await.unwrap();
    let second = chime::db::Db::connect(&config).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let job: Arc<dyn chime::jobs::Job> = Arc::new(Count(runs.clone()));
    let period = 7_000_000;
    let mut ticks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (db, job) = (
            if i % 2 == 0 { &first } else { &second }.clone(),
            job.clone(),
        );
        ticks.spawn(async move { chime::jobs::tick(&db, "replica", job.as_ref(), period).await });
    }
    let mut ran = 0;
    while let Some(r) = ticks.join_next().await {
        ran += usize::from(r.unwrap().unwrap());
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the body ran once");
    assert_eq!(ran, 1, "one tick says it ran");
    assert!(
        chime::jobs::tick(&first, "replica", job.as_ref(), period + 1)
            .await
            .unwrap()
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2, "the next period runs");
}
dual_db!(concurrent_ticks_test, concurrent_ticks_run_a_period_once);
