//! `chime policy eval`: precision, recall and F1 of a replay against labeled inputs.

use super::{replay, Input};
use crate::policy::Policy;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

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
