//! `GET /metrics`: what operators graph and alert on, in Prometheus' text format.
//!
//! What happened in this process (events received and refused, platform API calls and their
//! 429s, backend turn latency, secrets redacted) is counted here as it happens; what the store
//! knows for every replica (tasks by state, outbox depth and oldest row, suggestions by outcome)
//! is read from it at each scrape, so every replica reports the same numbers for those.

use crate::db::Db;
use crate::ids::now_ms;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use sqlx::Row;
use std::sync::LazyLock;

type Labels = Vec<(&'static str, String)>;

struct Counters {
    registry: Registry,
    received: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    api_calls: Family<Labels, Counter>,
    turn_seconds: Family<Labels, Histogram>,
}

fn turn_histogram() -> Histogram {
    // From half a second to about four hours: a dry run to a long cloud run.
    Histogram::new(exponential_buckets(0.5, 2.0, 15))
}

static COUNTERS: LazyLock<Counters> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("chime");
    let received = Family::<Labels, Counter>::default();
    let rejected = Family::<Labels, Counter>::default();
    let api_calls = Family::<Labels, Counter>::default();
    let turn_seconds =
        Family::<Labels, Histogram>::new_with_constructor(turn_histogram as fn() -> Histogram);
    registry.register(
        "events_received",
        "Events stored in the inbox, by source",
        received.clone(),
    );
    registry.register(
        "events_rejected",
        "Events refused at the edge, by source and reason (signature, stale, duplicate, unauthorized)",
        rejected.clone(),
    );
    registry.register(
        "api_calls",
        "Calls to platform APIs, by surface and result (ok, rate_limited, error)",
        api_calls.clone(),
    );
    registry.register(
        "backend_turn_seconds",
        "How long a backend took for a turn, by backend and outcome",
        turn_seconds.clone(),
    );
    Counters {
        registry,
        received,
        rejected,
        api_calls,
        turn_seconds,
    }
});

/// An event stored in the inbox.
pub fn event_received(source: &str) {
    COUNTERS
        .received
        .get_or_create(&vec![("source", source.to_string())])
        .inc();
}

/// An event refused at the edge: `reason` is signature, stale, duplicate or unauthorized.
pub fn event_rejected(source: &str, reason: &'static str) {
    COUNTERS
        .rejected
        .get_or_create(&vec![
            ("source", source.to_string()),
            ("reason", reason.to_string()),
        ])
        .inc();
}

/// One call to a platform's API: `result` is ok, rate_limited or error.
pub fn api_call(surface: &'static str, result: &'static str) {
    COUNTERS
        .api_calls
        .get_or_create(&vec![
            ("surface", surface.to_string()),
            ("result", result.to_string()),
        ])
        .inc();
}

/// A backend's turn ended (`outcome`: succeeded, failed, cancelled) after `secs`.
pub fn backend_turn(backend: &str, outcome: &'static str, secs: f64) {
    COUNTERS
        .turn_seconds
        .get_or_create(&vec![
            ("backend", backend.to_string()),
            ("outcome", outcome.to_string()),
        ])
        .observe(secs);
}

/// The whole exposition: this process's counters, then the store's gauges.
pub async fn render(db: &Db) -> anyhow::Result<String> {
    let mut out = String::new();
    encode(&mut out, &COUNTERS.registry)?;
    // The counters' `# EOF` ends the exposition: the store's part goes before it.
    let counters = out.trim_end().trim_end_matches("# EOF").to_string();
    let mut store = Registry::with_prefix("chime");

    let tasks = Family::<Labels, Gauge>::default();
    for state in [
        "awaiting_repo",
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ] {
        tasks
            .get_or_create(&vec![("state", state.to_string())])
            .set(0);
    }
    for r in sqlx::query("SELECT state, COUNT(*) AS n FROM tasks GROUP BY state")
        .fetch_all(&db.pool)
        .await?
    {
        tasks
            .get_or_create(&vec![("state", r.get::<String, _>("state"))])
            .set(r.get::<i64, _>("n"));
    }
    store.register("tasks", "Tasks by state (from the store)", tasks);

    let depth = Family::<Labels, Gauge>::default();
    let oldest = Family::<Labels, Gauge>::default();
    let now = now_ms();
    for r in sqlx::query(
        "SELECT surface, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox \
         WHERE state IN ('pending', 'sending') GROUP BY surface",
    )
    .fetch_all(&db.pool)
    .await?
    {
        let lane: String = r.get("surface");
        depth
            .get_or_create(&vec![("lane", lane.clone())])
            .set(r.get::<i64, _>("n"));
        let age = (now - r.get::<i64, _>("oldest")).max(0) / 1000;
        oldest.get_or_create(&vec![("lane", lane)]).set(age);
    }
    store.register(
        "outbox_depth",
        "Outbox rows waiting to be sent, by lane",
        depth,
    );
    store.register(
        "outbox_oldest_age_seconds",
        "Age of the oldest outbox row waiting to be sent, by lane",
        oldest,
    );

    let suggestions = Family::<Labels, Gauge>::default();
    for state in ["offered", "accepted", "dismissed", "muted"] {
        suggestions
            .get_or_create(&vec![("outcome", state.to_string())])
            .set(0);
    }
    for r in sqlx::query(
        "SELECT state, COUNT(*) AS n FROM suggestions \
         WHERE state IN ('offered', 'accepted', 'dismissed', 'muted') GROUP BY state",
    )
    .fetch_all(&db.pool)
    .await?
    {
        suggestions
            .get_or_create(&vec![("outcome", r.get::<String, _>("state"))])
            .set(r.get::<i64, _>("n"));
    }
    store.register(
        "suggestions",
        "Suggestions by outcome (offered and still open, accepted, dismissed, muted)",
        suggestions,
    );

    let redacted = Family::<Labels, Counter>::default();
    for (kind, n) in crate::guard::counts() {
        redacted.get_or_create(&vec![("kind", kind)]).inc_by(n);
    }
    store.register(
        "secrets_redacted",
        "Secrets the output guard replaced, by kind (this process)",
        redacted,
    );

    let mut rest = String::new();
    encode(&mut rest, &store)?;
    Ok(format!("{counters}\n{rest}"))
}
