//! Replay and evaluation: the live decision, run over a file of past messages before anyone turns
//! the policy on. Decisions are causal: each sees only the messages up to its decision time (a
//! message's own time, or the end of its grace window for an integration alert), thread
//! included, and budgets are spent as they would have been.

use super::judge::{self, Decision, Memory, Message, ThreadState};
use super::Policy;
use anyhow::Context;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::io::Write;
use std::path::Path;

/// One message of a replay's input (a JSONL line; other fields are ignored). Its strings borrow
/// from the line they were read from, and are owned only when the JSON escapes them (or when they
/// come from a Slack export).
#[derive(Clone, Debug, Deserialize)]
pub struct Input<'a> {
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    // `source` and `team` are part of the line's shape but do not change a decision: they are
    // skipped, not stored.
    #[serde(borrow)]
    pub channel: Cow<'a, str>,
    #[serde(default, borrow)]
    pub channel_name: Cow<'a, str>,
    #[serde(default, borrow)]
    pub user: Cow<'a, str>,
    #[serde(default)]
    pub user_is_bot: bool,
    /// A Slack timestamp: seconds since the epoch, with a fraction.
    #[serde(borrow)]
    pub ts: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "borrowed_opt")]
    pub thread_ts: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub text: Cow<'a, str>,
    /// For evaluation: what a person says Chime should have done.
    #[serde(default)]
    pub label: Option<String>,
}

/// `Option<Cow<str>>` borrowing like a bare `Cow<str>` field (serde's derive owns it otherwise).
fn borrowed_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed>::deserialize(d)?.map(|b| b.0))
}

impl Input<'_> {
    fn at_ms(&self) -> i64 {
        let secs: f64 = self.ts.parse().unwrap_or(0.0);
        (secs * 1000.0) as i64
    }

    /// Whether the text says "@chime" in any case (what lowercasing it and searching would find,
    /// without the copy).
    fn mentions_chime(&self) -> bool {
        let text = self.text.as_bytes();
        self.text.match_indices('@').any(|(at, _)| {
            text.get(at..at + 6)
                .is_some_and(|w| w.eq_ignore_ascii_case(b"@chime"))
        })
    }
}

/// The judge's view of inputs: threads are named `channel/ts`, as the judge names them; the
/// names are built in buffers reused from message to message.
#[derive(Default)]
struct Keys {
    id: String,
    root: String,
}

impl Keys {
    fn message<'k>(&'k mut self, m: &'k Input, at_ms: i64) -> Message<'k> {
        let key = |buf: &mut String, ts: &str| {
            buf.clear();
            buf.push_str(&m.channel);
            buf.push('/');
            buf.push_str(ts);
        };
        key(&mut self.id, &m.ts);
        let reply_to = m.thread_ts.as_deref().filter(|t| *t != m.ts);
        if let Some(t) = reply_to {
            key(&mut self.root, t);
        }
        Message {
            id: &self.id,
            place: &m.channel,
            place_name: &m.channel_name,
            author: &m.user,
            author_is_bot: m.user_is_bot,
            at_ms,
            thread: reply_to.map(|_| self.root.as_str()),
            text: &m.text,
            mentions_chime: m.mentions_chime(),
            from_chime: m.user_is_bot && m.user.eq_ignore_ascii_case("chime"),
        }
    }
}

/// One line of a replay's output.
#[derive(Debug, Serialize)]
pub struct Output<'a> {
    pub id: &'a str,
    #[serde(flatten)]
    pub decision: &'a Decision,
}

/// Reads JSONL (a file) or a Slack workspace export (a directory of channel folders). A file is
/// read whole into `buf`, and its messages borrow from it.
pub fn read_input<'a>(path: &Path, buf: &'a mut Vec<u8>) -> anyhow::Result<Vec<Input<'a>>> {
    if path.is_dir() {
        return read_slack_export(path);
    }
    *buf = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = vec![];
    for (n, line) in buf.split(|&b| b == b'\n').enumerate() {
        let line = std::str::from_utf8(line)
            .with_context(|| format!("{}: line {} is not UTF-8", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let input: Input = serde_json::from_str(line)
            .with_context(|| format!("{}: line {} is not a message", path.display(), n + 1))?;
        out.push(input);
    }
    Ok(out)
}

#[derive(Deserialize)]
struct ExportChannel {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct ExportUser {
    id: String,
    #[serde(default)]
    is_bot: bool,
}

#[derive(Deserialize)]
struct ExportMessage {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    bot_id: Option<String>,
    #[serde(default)]
    subtype: Option<String>,
    #[serde(default)]
    text: String,
    ts: String,
    #[serde(default)]
    thread_ts: Option<String>,
}

/// A standard Slack export: `channels.json`, `users.json`, and a folder per channel of daily
/// JSON files. Messages come out in channel order, then day order, then as each file lists them.
fn read_slack_export(dir: &Path) -> anyhow::Result<Vec<Input<'static>>> {
    let read = |name: &str| -> anyhow::Result<String> {
        std::fs::read_to_string(dir.join(name))
            .with_context(|| format!("{}: no {name}; is this a Slack export?", dir.display()))
    };
    let channels: Vec<ExportChannel> =
        serde_json::from_str(&read("channels.json")?).context("reading channels.json")?;
    let users: Vec<ExportUser> = match read("users.json") {
        Ok(text) => serde_json::from_str(&text).context("reading users.json")?,
        Err(_) => vec![],
    };
    let bots: std::collections::HashSet<String> = users
        .into_iter()
        .filter(|u| u.is_bot)
        .map(|u| u.id)
        .collect();
    let mut out = vec![];
    for c in channels {
        let folder = dir.join(&c.name);
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        let mut days: Vec<_> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        days.sort();
        for day in days {
            let text = std::fs::read_to_string(&day)?;
            let messages: Vec<ExportMessage> = serde_json::from_str(&text)
                .with_context(|| format!("reading {}", day.display()))?;
            for m in messages {
                if matches!(m.subtype.as_deref(), Some("channel_join" | "channel_leave")) {
                    continue;
                }
                let user = m.user.clone().or(m.bot_id.clone()).unwrap_or_default();
                out.push(Input {
                    id: format!("{}:{}", c.id, m.ts).into(),
                    channel: c.id.clone().into(),
                    channel_name: c.name.clone().into(),
                    user_is_bot: m.bot_id.is_some()
                        || m.subtype.as_deref() == Some("bot_message")
                        || bots.contains(&user),
                    user: user.into(),
                    ts: m.ts.into(),
                    thread_ts: m.thread_ts.map(Cow::Owned),
                    text: m.text.into(),
                    label: None,
                });
            }
        }
    }
    Ok(out)
}

/// Runs the policy over `inputs`; one decision per input, in input order.
pub fn replay(policy: &Policy, inputs: &[Input], ignore_budgets: bool) -> Vec<Decision> {
    let times: Vec<i64> = inputs.iter().map(Input::at_ms).collect();
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| times[i]);
    let mut decisions: Vec<Option<Decision>> = vec![None; inputs.len()];
    // Only threads something was observed in: a missing one reads as the default state.
    let mut threads: FxHashMap<Box<str>, ThreadState> = FxHashMap::default();
    let mut memory = Memory::default();
    // Alerts waiting for their grace window to end: (deadline, input index).
    let mut pending: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    let (mut keys, mut late_keys) = (Keys::default(), Keys::default());
    let mut finish = |i: usize,
                      deadline: i64,
                      threads: &FxHashMap<Box<str>, ThreadState>,
                      memory: &mut Memory,
                      decisions: &mut Vec<Option<Decision>>| {
        let m = late_keys.message(&inputs[i], deadline);
        let state = threads.get(m.root()).cloned().unwrap_or_default();
        let mut d = judge::decide(policy, &m, &state, memory, ignore_budgets);
        d.reasons.push("decided when its grace window ended".into());
        decisions[i] = Some(d);
    };
    for &i in &order {
        while let Some(Reverse((deadline, j))) = pending.peek().copied() {
            if deadline > times[i] {
                break;
            }
            pending.pop();
            finish(j, deadline, &threads, &mut memory, &mut decisions);
        }
        let m = keys.message(&inputs[i], times[i]);
        if m.mentions_chime && !m.author_is_bot {
            memory.users.insert(m.author.to_string());
        }
        let grace = judge::scope_of(policy, &m)
            .ok()
            .filter(|s| s.bots && m.author_is_bot && m.thread.is_none())
            .map(|s| (s.grace_minutes * 60_000.0) as i64)
            .filter(|g| *g > 0);
        let mut state = threads.get(m.root()).cloned().unwrap_or_default();
        match grace {
            // An alert that could be offered waits for people first.
            Some(g) if judge::relevance(policy, &m, &state, &memory).suggests() => {
                pending.push(Reverse((m.at_ms + g, i)));
            }
            _ => {
                decisions[i] = Some(judge::decide(
                    policy,
                    &m,
                    &state,
                    &mut memory,
                    ignore_budgets,
                ));
            }
        }
        let before = state.clone();
        judge::observe(policy, &mut state, &m);
        if state != before {
            match threads.get_mut(m.root()) {
                Some(s) => *s = state,
                None => {
                    threads.insert(m.root().into(), state);
                }
            }
        }
    }
    while let Some(Reverse((deadline, j))) = pending.pop() {
        finish(j, deadline, &threads, &mut memory, &mut decisions);
    }
    decisions
        .into_iter()
        .map(|d| d.expect("every input is decided"))
        .collect()
}

/// Writes decisions as JSONL, one per input, in input order.
pub fn write_jsonl(
    out: &mut impl Write,
    inputs: &[Input],
    decisions: &[Decision],
) -> anyhow::Result<()> {
    for (m, d) in inputs.iter().zip(decisions) {
        serde_json::to_writer(
            &mut *out,
            &Output {
                id: &m.id,
                decision: d,
            },
        )?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Precision, recall and F1 of `suggest` against the labels.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Score {
    pub tp: u32,
    pub fp: u32,
    pub fn_: u32,
    pub tn: u32,
}

impl Score {
    fn add(&mut self, predicted: bool, wanted: bool) {
        match (predicted, wanted) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }
    pub fn precision(&self) -> Option<f64> {
        let d = self.tp + self.fp;
        (d > 0).then(|| f64::from(self.tp) / f64::from(d))
    }
    pub fn recall(&self) -> Option<f64> {
        let d = self.tp + self.fn_;
        (d > 0).then(|| f64::from(self.tp) / f64::from(d))
    }
    pub fn f1(&self) -> Option<f64> {
        let (p, r) = (self.precision()?, self.recall()?);
        (p + r > 0.0).then(|| 2.0 * p * r / (p + r))
    }
}

/// An evaluation of labeled inputs.
pub struct Evaluation {
    pub without_budgets: Score,
    pub with_budgets: Score,
    pub by_channel: BTreeMap<String, Score>,
    /// Labeled `quiet` messages that were flagged as injection and still offered (must be 0).
    pub injections_offered: u32,
    /// The most suggestions any channel got in one day, with budgets on.
    pub max_per_channel_day: u32,
}

pub fn evaluate(policy: &Policy, inputs: &[Input]) -> anyhow::Result<Evaluation> {
    let labels: Vec<bool> = inputs
        .iter()
        .map(|m| match m.label.as_deref() {
            Some("suggest") => Ok(true),
            Some("quiet") => Ok(false),
            other => anyhow::bail!(
                "{}: label must be \"suggest\" or \"quiet\", got {other:?}",
                m.id
            ),
        })
        .collect::<anyhow::Result<_>>()?;
    let free = replay(policy, inputs, true);
    let budgeted = replay(policy, inputs, false);
    let mut e = Evaluation {
        without_budgets: Score::default(),
        with_budgets: Score::default(),
        by_channel: BTreeMap::new(),
        injections_offered: 0,
        max_per_channel_day: 0,
    };
    let mut per_day: HashMap<(String, i64), u32> = HashMap::new();
    for (i, m) in inputs.iter().enumerate() {
        e.without_budgets.add(free[i].suggests(), labels[i]);
        e.with_budgets.add(budgeted[i].suggests(), labels[i]);
        let name = if m.channel_name.is_empty() {
            &m.channel
        } else {
            &m.channel_name
        };
        e.by_channel
            .entry(name.to_string())
            .or_default()
            .add(free[i].suggests(), labels[i]);
        let flagged = policy.injection.iter().any(|r| r.is_match(&m.text));
        if flagged && (free[i].suggests() || budgeted[i].suggests()) {
            e.injections_offered += 1;
        }
        if budgeted[i].suggests() {
            let day = m.at_ms().div_euclid(86_400_000);
            let n = per_day.entry((m.channel.to_string(), day)).or_default();
            *n += 1;
            e.max_per_channel_day = e.max_per_channel_day.max(*n);
        }
    }
    Ok(e)
}

fn num(x: Option<f64>) -> String {
    x.map_or("—".into(), |v| format!("{v:.3}"))
}

/// The evaluation as text for a person.
pub fn report(e: &Evaluation) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for (name, s) in [
        ("without budgets", e.without_budgets),
        ("with budgets", e.with_budgets),
    ] {
        let _ = writeln!(
            out,
            "{name}: precision {} recall {} F1 {} (tp {} fp {} fn {} tn {})",
            num(s.precision()),
            num(s.recall()),
            num(s.f1()),
            s.tp,
            s.fp,
            s.fn_,
            s.tn
        );
    }
    let _ = writeln!(out, "injection attempts offered: {}", e.injections_offered);
    let _ = writeln!(
        out,
        "most suggestions in one channel in one day (budgets on): {}",
        e.max_per_channel_day
    );
    let _ = writeln!(
        out,
        "\nby channel (without budgets):\n{:<24} {:>4} {:>4} {:>4} {:>4}",
        "channel", "tp", "fp", "fn", "tn"
    );
    for (c, s) in &e.by_channel {
        let _ = writeln!(
            out,
            "{c:<24} {:>4} {:>4} {:>4} {:>4}",
            s.tp, s.fp, s.fn_, s.tn
        );
    }
    out
}
