//! What the relevance policy adds to one live channel message.
//!
//! A channel message's handler opens a transaction, marks its inbox row done and commits; with
//! suggestions on, it also runs `policy::live::judge_message` in that transaction (read the
//! thread's state and what Chime remembers, decide, write the thread's state, maybe record an
//! offer). Both are run here, interleaved message by message on one database, over a generated
//! mix of channel traffic (chat, threads, CI alerts, stack traces, claims; 200 channels, 40%
//! thread replies, 10% bots), so both see the same machine load. The difference of the medians
//! is what a live decision adds to an event. Both arms commit a write, as the real handler does
//! (it marks its inbox row done), so the cost of a durable commit is in both and cancels out.
//!
//! Run with `cargo bench --bench live_decision` (SQLite in a temporary directory; Postgres too
//! when `CHIME_TEST_POSTGRES_URL` names a server: a fresh database is made there).

use chime::binding::Binding;
use chime::config::DatabaseConfig;
use chime::db::Db;
use chime::event::{Author, ChannelMessage};
use chime::ids::{now_ms, UserId};
use chime::policy::{live, Policy};
use std::time::{Duration, Instant};

const EVENTS: usize = 4000;
const WARMUP: usize = 200;

const TEXTS: [&str; 13] = [
    "lunch at 12:30?",
    "thanks!",
    "+1",
    "can you review my PR when you get a chance",
    "Build #4821 failed on main: 3 tests failing in payments-service (GitHub Actions)",
    "seeing this on staging:\nTraceback (most recent call last):\nKeyError: 'user_id'",
    "test_checkout_retry is flaky again, failed 3 of the last 10 runs",
    "could someone rename the `retries` flag to `max_retries` in the client?",
    "on it",
    "the README still says to run `make setup`, which was removed",
    "deploy finished, all green",
    "meeting moved to 3pm",
    "I wish we had a script that lists stale feature flags",
];

/// A small deterministic generator (no dependency for a benchmark's dice).
struct Dice(u64);

impl Dice {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn messages() -> Vec<ChannelMessage> {
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut roots: Vec<(String, String)> = vec![];
    let start = now_ms();
    (0..EVENTS + WARMUP)
        .map(|i| {
            let ts = format!("1764000000.{i:06}");
            let bot = dice.next(10) == 0;
            let reply = !roots.is_empty() && dice.next(10) < 4;
            let (channel, thread) = if reply {
                let recent = roots.len().min(500) as u64;
                roots[roots.len() - 1 - dice.next(recent) as usize].clone()
            } else {
                let root = (format!("C{:04}", dice.next(200)), ts.clone());
                roots.push(root.clone());
                root
            };
            ChannelMessage {
                binding: format!("slack:T1/{channel}/{thread}")
                    .parse::<Binding>()
                    .unwrap(),
                message: ts,
                author: Author {
                    user: UserId::new(if bot {
                        "BCI".to_string()
                    } else {
                        format!("U{}", dice.next(5000))
                    }),
                    external: false,
                },
                author_is_bot: bot,
                place_name: channel.to_lowercase(),
                top_level: !reply,
                at_ms: start + i as i64,
                text: TEXTS[dice.next(TEXTS.len() as u64) as usize].to_string(),
            }
        })
        .collect()
}

/// One event's transaction, with or without the policy. Each arm marks a real inbox row done,
/// as the handler does, so both commit a write (on Postgres, a WAL flush).
async fn event(db: &Db, policy: Option<&Policy>, m: &ChannelMessage, n: usize) -> Duration {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO inbox (source, delivery_id, payload, received_at) VALUES ('bench', $1, '{}', 0) RETURNING id",
    )
    .bind(format!("{n}:{}", policy.is_some()))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let start = Instant::now();
    let mut tx = db.begin().await.unwrap();
    if let Some(policy) = policy {
        live::judge_message(&mut tx, policy, m).await.unwrap();
    }
    chime::queue::inbox::complete_in(&mut tx, id).await.unwrap();
    tx.commit().await.unwrap();
    start.elapsed()
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q) as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

async fn run(name: &str, url: &str, policy: &Policy) -> anyhow::Result<()> {
    let db = Db::connect(&DatabaseConfig {
        url: url.to_string(),
        ..DatabaseConfig::default()
    })
    .await?;
    db.migrate().await?;
    let msgs = messages();
    let (mut with, mut without) = (vec![], vec![]);
    for (i, m) in msgs.iter().enumerate() {
        // Alternate which arm goes first, so neither always runs on a warmer cache.
        let (a, b) = if i % 2 == 0 {
            let a = event(&db, Some(policy), m, i).await;
            (a, event(&db, None, m, i).await)
        } else {
            let b = event(&db, None, m, i).await;
            (event(&db, Some(policy), m, i).await, b)
        };
        if i >= WARMUP {
            with.push(a);
            without.push(b);
        }
    }
    with.sort();
    without.sort();
    let offered: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM suggestions")
        .fetch_one(&db.pool)
        .await?;
    println!("{name}: {EVENTS} channel messages, {offered} suggestion rows (offered or pending)");
    println!("  {:<28} {:>10} {:>10} {:>10}", "", "median", "p90", "p99");
    for (label, v) in [
        ("event without the policy", &without),
        ("event with the policy", &with),
    ] {
        println!(
            "  {:<28} {:>10} {:>10} {:>10}",
            label,
            ms(quantile(v, 0.5)),
            ms(quantile(v, 0.9)),
            ms(quantile(v, 0.99))
        );
    }
    let added = quantile(&with, 0.5).saturating_sub(quantile(&without, 0.5));
    println!(
        "  added by a live decision (difference of medians): {}; ratio with/without {:.2}x",
        ms(added),
        quantile(&with, 0.5).as_secs_f64() / quantile(&without, 0.5).as_secs_f64()
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // The shipped policy without its quiet hours, so that every decision runs the whole way
    // whatever the time of day the benchmark runs at.
    let text = include_str!("../policies/default.toml");
    let start = text
        .find("[quiet_hours]")
        .expect("the policy has quiet hours");
    let end = text[start..].find("\n\n").map_or(text.len(), |e| e + start);
    let policy = Policy::parse(
        "default.toml",
        &format!("{}{}", &text[..start], &text[end..]),
    )?;
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    run("SQLite", &url, &policy).await?;
    if let Some(admin) = std::env::var("CHIME_TEST_POSTGRES_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let name = format!("chime_bench_{}", std::process::id());
        let mut conn = sqlx::AnyConnection::connect(&admin).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let result = run("Postgres", &format!("{base}/{name}"), &policy).await;
        let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
        result?;
    } else {
        println!("Postgres: skipped (CHIME_TEST_POSTGRES_URL is not set)");
    }
    Ok(())
}
