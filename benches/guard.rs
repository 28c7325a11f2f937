//! The output guard's speed on ordinary chat text (no secrets, the usual case), side by side with
//! two baselines on the same text and core: copying it (`to_owned`: the floor), and one `RegexSet`
//! of every rule's pattern (what the literal prefilter saves). Run:
//! `cargo bench --bench guard` (optionally pinned: `taskset -c 0 cargo bench --bench guard`).

use chime::guard::{rules::RULES, Guard};
use std::hint::black_box;
use std::time::{Duration, Instant};

const LINES: &[&str] = &[
    "the retry client drops the last chunk on timeout, can you look at PR 42?",
    "@chime fix the flaky test in tests/replicas.rs repo=acme/api",
    "CI is red on main again: https://github.com/acme/api/actions/runs/123456789",
    "```\nerror[E0599]: no method named `send` found for struct `Client` in the current scope\n```",
    "I think the key point is that the cache key changes on every build",
    "Deploying v2.14.3 to staging now, ETA 10 minutes :rocket:",
    "> quoted from the incident doc: the token bucket refills every second",
    "let me check the logs, the request id was 123e4567-e89b-12d3-a456-426614174000",
    "merged 4b825dc642cb6eb9a060e54bf8d69288fbee4904 into release/2.14",
    "can someone review <https://github.com/acme/web/pull/881|this PR> before lunch?",
    "the bearer of bad news: the migration takes 40 minutes on the big tenant",
    "SELECT id, state FROM tasks WHERE state = 'queued' ORDER BY created_at LIMIT 50;",
    "thanks! :pray: that fixed it",
    "our password policy needs a review, ask security",
    "build took 14m 32s, cargo test alone is 9m",
];

fn corpus(bytes: usize) -> String {
    let mut text = String::with_capacity(bytes + 200);
    let mut i = 0;
    while text.len() < bytes {
        text.push_str(LINES[i % LINES.len()]);
        text.push('\n');
        i += 1;
    }
    text
}

/// Best of `runs` timings of `f` over messages of about 400 bytes (what a chat message is).
fn measure(messages: &[&str], runs: usize, mut f: impl FnMut(&str) -> usize) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        let mut n = 0;
        for m in messages {
            n += f(m);
        }
        black_box(n);
        best = best.min(start.elapsed());
    }
    best
}

fn main() {
    let text = corpus(16 << 20);
    // Cut into ~400-byte messages at line ends, as the guard sees them.
    let mut messages = vec![];
    let mut start = 0;
    while start < text.len() {
        let mut end = (start + 400).min(text.len());
        while end < text.len() && !text.is_char_boundary(end) {
            end += 1;
        }
        messages.push(&text[start..end]);
        start = end;
    }
    let mb = text.len() as f64 / 1e6;
    let guard = Guard::new(&[], vec!["xoxb-own-secret-0123456789".into()]).unwrap();
    let set = regex::RegexSet::new(RULES.iter().map(|r| r.pattern)).unwrap();
    let runs = 5;
    let copy = measure(&messages, runs, |m| m.to_owned().len());
    let scan = measure(&messages, runs, |m| guard.scan(m).0.len());
    let naive = measure(&messages, runs, |m| set.matches(m).iter().count());
    let rate = |d: Duration| mb / d.as_secs_f64();
    println!(
        "output guard on {mb:.1} MB of chat text in {} messages (best of {runs}):",
        messages.len()
    );
    println!("  copy (floor)       {:>8.0} MB/s", rate(copy));
    println!("  RegexSet of rules  {:>8.0} MB/s", rate(naive));
    println!(
        "  guard.scan         {:>8.0} MB/s  ({:.2}x the RegexSet, {:.3}x the copy; {:.2} µs per 400-byte message)",
        rate(scan),
        naive.as_secs_f64() / scan.as_secs_f64(),
        copy.as_secs_f64() / scan.as_secs_f64(),
        scan.as_secs_f64() * 1e6 / messages.len() as f64
    );
}
