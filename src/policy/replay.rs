//! Replay and evaluation: the live decision, run over a file of past messages before anyone turns
//! the policy on. Decisions are causal: each sees only the messages up to its decision time (a
//! message's own time, or the end of its grace window for an integration alert), thread
//! included, and budgets are spent as they would have been.
//!
//! A JSONL file already in time order is judged line by line as it is read, and each decision
//! written as soon as the lines before it are decided ([`run`]); anything else (a Slack export,
//! a file out of order, `eval`) is read whole, then judged in time order ([`replay`]).

mod causal;
mod eval;
mod flat;
mod line;
mod lines;
mod ordered;
mod plain;
mod threads;
mod times;

pub use eval::{evaluate, report, Evaluation, Score};

use super::judge::Decision;
use super::Policy;
use anyhow::Context;
use causal::Replayer;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::io::{Seek, Write};
use std::path::Path;

/// One message of a replay's input (a JSONL line; other fields are ignored). Its strings borrow
/// from the line they were read from, and are owned only when the JSON escapes them (or when they
/// come from a Slack export).
#[derive(Clone, Debug, PartialEq, Deserialize)]
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
        times::at_ms(&self.ts)
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

    /// An owned copy, to keep after its line is gone.
    fn to_static(&self) -> Input<'static> {
        let own = |s: &Cow<str>| Cow::Owned(s.to_string());
        Input {
            id: own(&self.id),
            channel: own(&self.channel),
            channel_name: own(&self.channel_name),
            user: own(&self.user),
            user_is_bot: self.user_is_bot,
            ts: own(&self.ts),
            thread_ts: self.thread_ts.as_ref().map(own),
            text: own(&self.text),
            label: self.label.clone(),
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
        if let Some(input) = parse_line(path, n, line)? {
            out.push(input);
        }
    }
    Ok(out)
}

/// Line `n` (from 0) of a JSONL file: a message, or None when it is blank.
fn parse_line<'a>(path: &Path, n: usize, line: &'a [u8]) -> anyhow::Result<Option<Input<'a>>> {
    let line = std::str::from_utf8(line)
        .with_context(|| format!("{}: line {} is not UTF-8", path.display(), n + 1))?;
    if line.trim().is_empty() {
        return Ok(None);
    }
    if let Some(input) = flat::read(line) {
        return Ok(Some(input));
    }
    serde_json::from_str(line)
        .map(Some)
        .with_context(|| format!("{}: line {} is not a message", path.display(), n + 1))
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

/// Replays `path` (JSONL or a Slack export) and writes one decision per input to `out`, in
/// input order.
pub fn run(
    policy: &Policy,
    path: &Path,
    ignore_budgets: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if !path.is_dir() {
        let open =
            || std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()));
        let mut file = open()?;
        // A pipe cannot be read twice: it is read whole.
        if file.metadata()?.is_file() {
            let sorted = times::in_time_order(&mut file)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if sorted {
                file.rewind()?;
                return stream(policy, path, file, ignore_budgets, out);
            }
        }
    }
    let mut buf = vec![];
    let inputs = read_input(path, &mut buf)?;
    let decisions = replay(policy, &inputs, ignore_budgets);
    write_jsonl(out, &inputs, &decisions)
}

/// Judges a JSONL file known to be in time order as it is read. Only the alerts waiting out
/// their grace windows, and the decided lines after the first of them, are held.
fn stream(
    policy: &Policy,
    path: &Path,
    file: std::fs::File,
    ignore_budgets: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut lines = lines::Lines::new(file);
    let mut replayer = Replayer::new(policy, ignore_budgets);
    let mut ordered = ordered::InOrder::new(out);
    let mut late = vec![];
    let mut index = 0;
    for n in 0.. {
        let Some(line) = lines.next_line()? else {
            break;
        };
        let Some(input) = parse_line(path, n, line)? else {
            continue;
        };
        let now = replayer.push(index, &input, input.at_ms(), &mut late);
        for (i, id, d) in late.drain(..) {
            ordered.late(i, &id, &d)?;
        }
        match now {
            Some(d) => ordered.line(index, &input.id, &d)?,
            None => ordered.wait(index),
        }
        index += 1;
    }
    replayer.finish(&mut late);
    for (i, id, d) in late {
        ordered.late(i, &id, &d)?;
    }
    ordered.finish()?;
    Ok(())
}

/// Runs the policy over `inputs`, in any order; one decision per input, in input order.
pub fn replay(policy: &Policy, inputs: &[Input], ignore_budgets: bool) -> Vec<Decision> {
    let times: Vec<i64> = inputs.iter().map(Input::at_ms).collect();
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by_key(|&i| times[i]);
    let mut decisions: Vec<Option<Decision>> = vec![None; inputs.len()];
    let mut replayer = Replayer::new(policy, ignore_budgets);
    let mut late = vec![];
    for i in order {
        decisions[i] = replayer.push(i, &inputs[i], times[i], &mut late);
        for (j, _, d) in late.drain(..) {
            decisions[j] = Some(d);
        }
    }
    replayer.finish(&mut late);
    for (j, _, d) in late {
        decisions[j] = Some(d);
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
    let mut line = vec![];
    for (m, d) in inputs.iter().zip(decisions) {
        line.clear();
        line::write_line(&mut line, &m.id, d);
        out.write_all(&line)?;
    }
    Ok(())
}
