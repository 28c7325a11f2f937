//! The inbox writer under concurrency: many requests land in one batch (one multi-row INSERT), with
//! the same delivery id several times in a batch and again in later batches. Each key must be
//! `New` exactly once, every other request for it `Duplicate`, and there must be one row per key.

mod common;

use chime::db::Db;
use chime::event::Event;
use chime::queue::inbox::{self, Accepted, InboxWriter};
use chime::slack::events::{parse_event_body, Inbound};
use common::*;
use std::sync::Arc;
use tokio::sync::Notify;

fn event(id: &str) -> Event {
    let body = mention(id, "C1", "U1", "1700000000.000100", None, "hello").to_string();
    match parse_event_body(body.as_bytes(), None).expect("a valid mention") {
        Inbound::Event { event, .. } => *event,
        _ => panic!("not an event"),
    }
}

async fn batches_dedupe(db: TestDb) {
    let mut config = chime::config::Config::default();
    config.database.url = db.url().to_string();
    let store = Db::connect(&config.database).await.expect("connect");
    store.migrate().await.expect("migrate");
    let writer = InboxWriter::spawn(store.clone(), Arc::new(Notify::new()));

    const KEYS: usize = 150;
    const COPIES: usize = 4;
    let ev = event("EvTemplate");
    let mut handles = Vec::new();
    for round in 0..COPIES {
        for k in 0..KEYS {
            let (writer, ev) = (writer.clone(), ev.clone());
            handles.push(tokio::spawn(async move {
                let id = format!("EvBatch{k:04}");
                (
                    k,
                    round,
                    writer.accept("slack", &id, &ev).await.expect("stored"),
                )
            }));
        }
    }
    let mut new = vec![0usize; KEYS];
    let mut total = 0;
    for h in handles {
        let (k, _, outcome) = h.await.unwrap();
        total += 1;
        if outcome == Accepted::New {
            new[k] += 1;
        }
    }
    assert_eq!(total, KEYS * COPIES);
    assert!(
        new.iter().all(|&n| n == 1),
        "each key is new exactly once: {new:?}"
    );
    assert_eq!(inbox::count(&store).await.unwrap(), KEYS as i64);

    // A later, separate request for a stored key is a duplicate too; a fresh one is new.
    assert_eq!(
        writer.accept("slack", "EvBatch0000", &ev).await.unwrap(),
        Accepted::Duplicate
    );
    assert_eq!(
        writer.accept("slack", "EvBatchFresh", &ev).await.unwrap(),
        Accepted::New
    );
    // The same delivery id from another source is another event.
    assert_eq!(
        writer.accept("linear", "EvBatch0000", &ev).await.unwrap(),
        Accepted::New
    );
    assert_eq!(inbox::count(&store).await.unwrap(), KEYS as i64 + 2);
}

dual_db!(batches_dedupe_test, batches_dedupe);
