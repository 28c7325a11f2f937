//! The relevance policy: when Chime offers one contextual action, and when it stays quiet.
//!
//! A policy is a TOML file in `policies/` (see `policies/default.toml`, which documents every
//! key). It is read strictly: an unknown key, a bad pattern or an impossible threshold is an
//! error naming the file, line and column. `judge.rs` is the decision itself, a pure function of
//! Chime's typed messages and what came before them; `replay.rs` runs it over a file.

pub mod ide;
pub mod judge;
pub mod live;
pub mod replay;

use regex::{Regex, RegexSet, RegexSetBuilder, SetMatches};
use serde::Deserialize;
use std::path::Path;

/// A policy as written in its file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub version: u32,
    #[serde(default, rename = "scope")]
    pub scopes: Vec<ScopeFile>,
    #[serde(default)]
    pub budgets: Budgets,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
    #[serde(default)]
    pub handled: HandledFile,
    #[serde(default)]
    pub injection: InjectionFile,
    #[serde(rename = "action")]
    pub actions: Vec<ActionFile>,
    /// Rules on what editors report (`policy/ide.rs`).
    #[serde(default, rename = "ide")]
    pub ide_rules: Vec<ide::IdeRuleFile>,
}

/// Where a policy speaks, and how.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeFile {
    pub name: String,
    /// Channel ids or names (`#name` or `name`) it covers; `"*"` is every channel Chime is in.
    pub places: Vec<String>,
    /// Places where it must never speak, whatever else matches.
    #[serde(default)]
    pub never: Vec<String>,
    /// Judge messages from bots (CI, alerting) here.
    #[serde(default)]
    pub bots: bool,
    /// A top-level bot alert waits this long for a human before Chime offers (fractions allowed).
    #[serde(default = "default_grace")]
    pub grace_minutes: f64,
    /// Offer to people who never used Chime too.
    #[serde(default)]
    pub opted_in: bool,
    /// `thread`: a small message in the thread; `ephemeral`: only the author sees it.
    #[serde(default = "default_delivery")]
    pub delivery: String,
}

fn default_grace() -> f64 {
    15.0
}

fn default_delivery() -> String {
    "thread".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Budgets {
    pub per_thread: u32,
    pub per_channel_per_day: u32,
    pub per_person_per_day: u32,
    pub channel_cooldown_minutes: u32,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            per_thread: 1,
            per_channel_per_day: 3,
            per_person_per_day: 2,
            channel_cooldown_minutes: 60,
        }
    }
}

/// Hours in which Chime offers nothing, in the workspace's time zone (a UTC offset in minutes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`, inclusive.
    pub start: String,
    /// `HH:MM`, exclusive; before `start` means the hours run over midnight.
    pub end: String,
    #[serde(default)]
    pub utc_offset_minutes: i32,
}

/// "Already handled" detectors: patterns over the thread's human messages.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandledFile {
    /// Someone claimed the work ("on it", "I'll fix", a linked PR).
    pub claimed: Vec<String>,
    /// The question was answered.
    pub answered: Vec<String>,
    /// The incident is over.
    pub resolved: Vec<String>,
}

/// Text that tries to instruct Chime or the agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InjectionFile {
    pub patterns: Vec<String>,
    /// Subtracted from the score of a message that matches.
    pub penalty: f64,
}

impl Default for InjectionFile {
    fn default() -> Self {
        Self {
            patterns: vec![],
            penalty: 1.0,
        }
    }
}

/// One kind of action Chime may offer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionFile {
    pub kind: String,
    /// The button's text.
    pub button: String,
    pub threshold: f64,
    /// Learning moves the threshold, never outside these bounds.
    pub threshold_min: f64,
    pub threshold_max: f64,
    #[serde(default)]
    pub examples: Vec<String>,
    pub signals: Vec<SignalFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignalFile {
    /// A regular expression (Rust `regex` syntax), matched case-insensitively.
    pub pattern: String,
    pub weight: f64,
    /// Shown in the decision's reasons.
    pub why: String,
}

/// An error in a policy file, located when the parser knows where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// A policy ready to judge: its patterns compiled.
#[derive(Debug)]
pub struct Policy {
    pub file: PolicyFile,
    pub(crate) actions: Vec<Action>,
    /// Every "already handled" and injection pattern, then every action's signal, in one set:
    /// a message's text is scanned once for all of them.
    pub(crate) patterns: RegexSet,
    /// What the first `flag_kinds.len()` patterns flag.
    pub(crate) flag_kinds: Vec<Flag>,
    /// (action, weight) of each signal, the patterns after the flags.
    pub(crate) signal_of: Vec<(usize, f64)>,
    pub(crate) injection: Vec<Regex>,
    pub(crate) quiet: Option<(u32, u32, i32)>,
    /// The `[[ide]]` rules; their actions follow the `[[action]]`s in `actions`.
    pub(crate) ide: Vec<ide::IdeRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flag {
    Claimed,
    Answered,
    Resolved,
    /// The injection pattern with this index.
    Injection(usize),
}

/// What one scan of a message found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub claimed: bool,
    pub answered: bool,
    pub resolved: bool,
    pub injection: Option<usize>,
    /// The patterns that matched (None when none did), and how many of them are flags.
    matches: Option<SetMatches>,
    flags: usize,
}

impl Scan {
    /// The signals that matched, as indices into `signal_of`, in order.
    pub fn signals(&self) -> impl Iterator<Item = usize> + '_ {
        let flags = self.flags;
        self.matches
            .iter()
            .flat_map(move |m| m.iter().skip_while(move |&i| i < flags))
            .map(move |i| i - flags)
    }
}

#[derive(Debug)]
pub(crate) struct Action {
    pub kind: String,
    pub button: String,
    pub threshold: f64,
    pub bounds: (f64, f64),
    pub whys: Vec<String>,
    /// How far one acceptance and one "Not now" move the threshold.
    pub steps: (f64, f64),
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Where `needle` (a key or value) first appears in `text`, for errors found after parsing.
fn locate(text: &str, needle: &str) -> (usize, usize) {
    text.find(needle)
        .map_or((1, 1), |offset| line_col(text, offset))
}

/// A pattern as it is compiled: case-insensitive, with ASCII word boundaries. Unicode `\b` keeps
/// the regex crate off its fast DFA (it measured 7x slower in replay); chat words are ASCII for
/// every signal in the shipped policy, and a non-ASCII letter next to one only moves a boundary.
fn compiled(p: &str) -> String {
    format!("(?i){}", p.replace(r"\b", r"(?-u:\b)"))
}

/// The regex crate's default limit on a compiled pattern set.
const DEFAULT_SIZE_LIMIT: usize = 10 * (1 << 20);

fn set(patterns: &[String]) -> Result<RegexSet, regex::Error> {
    RegexSet::new(patterns.iter().map(|p| compiled(p)))
}

fn hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.len() == 5).then_some(h * 60 + m)
}

impl Policy {
    /// Parses and checks a policy; `name` names it in errors.
    pub fn parse(name: &str, text: &str) -> Result<Self, PolicyError> {
        let err = |(line, column): (usize, usize), message: String| PolicyError {
            file: name.to_string(),
            line,
            column,
            message,
        };
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let at = e.span().map_or((1, 1), |s| line_col(text, s.start));
            err(at, e.message().to_string())
        })?;
        if file.version != 1 {
            return Err(err(
                locate(text, "version"),
                format!(
                    "version {} is not known; this Chime reads version 1",
                    file.version
                ),
            ));
        }
        for s in &file.scopes {
            if !(0.0..=24.0 * 60.0).contains(&s.grace_minutes) {
                return Err(err(
                    locate(text, "grace_minutes"),
                    format!(
                        "scope {:?}: grace_minutes must be between 0 and 1440",
                        s.name
                    ),
                ));
            }
            if !matches!(s.delivery.as_str(), "thread" | "ephemeral") {
                return Err(err(
                    locate(text, &s.delivery),
                    format!(
                        "scope {:?}: delivery must be \"thread\" or \"ephemeral\"",
                        s.name
                    ),
                ));
            }
        }
        let mut flag_patterns = vec![];
        let mut flag_kinds = vec![];
        for (list, kind) in [
            (&file.handled.claimed, Flag::Claimed),
            (&file.handled.answered, Flag::Answered),
            (&file.handled.resolved, Flag::Resolved),
        ] {
            flag_patterns.extend(list.iter().cloned());
            flag_kinds.extend(std::iter::repeat_n(kind, list.len()));
        }
        for (i, p) in file.injection.patterns.iter().enumerate() {
            flag_patterns.push(p.clone());
            flag_kinds.push(Flag::Injection(i));
        }
        let mut signal_patterns = vec![];
        let mut signal_of = vec![];
        for (i, a) in file.actions.iter().enumerate() {
            for sig in &a.signals {
                signal_patterns.push(sig.pattern.clone());
                signal_of.push((i, sig.weight));
            }
        }
        let all_patterns = [&flag_patterns[..], &signal_patterns[..]].concat();
        // When every pattern compiles in one set, each list does too: the checks below, there
        // to name the list and pattern at fault, need not compile them again.
        let together = set(&all_patterns);
        let checked = together.is_ok();
        let mut actions = vec![];
        for a in &file.actions {
            let bounds_ok = 0.0 <= a.threshold_min
                && a.threshold_min <= a.threshold
                && a.threshold <= a.threshold_max
                && a.threshold_max <= 1.0;
            if !bounds_ok {
                return Err(err(
                    locate(text, &format!("\"{}\"", a.kind)),
                    format!(
                        "action {:?}: need 0 <= threshold_min <= threshold <= threshold_max <= 1",
                        a.kind
                    ),
                ));
            }
            if a.signals.is_empty() {
                return Err(err(
                    locate(text, &format!("\"{}\"", a.kind)),
                    format!("action {:?} has no signals", a.kind),
                ));
            }
            let patterns: Vec<String> = a.signals.iter().map(|s| s.pattern.clone()).collect();
            // Checked per action for an error that names it; judged in one set for all.
            if !checked {
                set(&patterns).map_err(|e| {
                    let bad = patterns
                        .iter()
                        .find(|p| Regex::new(p).is_err())
                        .cloned()
                        .unwrap_or_default();
                    err(
                        locate(text, &bad),
                        format!("action {:?}: bad pattern: {e}", a.kind),
                    )
                })?;
            }
            actions.push(Action {
                kind: a.kind.clone(),
                button: a.button.clone(),
                threshold: a.threshold,
                bounds: (a.threshold_min, a.threshold_max),
                whys: a.signals.iter().map(|s| s.why.clone()).collect(),
                steps: (-0.02, 0.05),
            });
        }
        let compile = |what: &str, patterns: &[String]| {
            if checked {
                return Ok(());
            }
            set(patterns)
                .map(|_| ())
                .map_err(|e| err(locate(text, what), format!("{what}: bad pattern: {e}")))
        };
        let injection = file
            .injection
            .patterns
            .iter()
            .map(|p| Regex::new(&compiled(p)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                err(
                    locate(text, "[injection]"),
                    format!("injection: bad pattern: {e}"),
                )
            })?;
        let quiet = match &file.quiet_hours {
            None => None,
            Some(q) => match (hhmm(&q.start), hhmm(&q.end)) {
                (Some(s), Some(e)) if q.utc_offset_minutes.abs() <= 14 * 60 => {
                    Some((s, e, q.utc_offset_minutes))
                }
                _ => {
                    return Err(err(
                        locate(text, "[quiet_hours]"),
                        "quiet_hours: start and end are HH:MM, utc_offset_minutes within ±840"
                            .into(),
                    ))
                }
            },
        };
        let ide_checked = ide::check(&file.ide_rules, actions.len(), |needle, message| {
            err(locate(text, needle), message)
        })?;
        let mut ide = Vec::with_capacity(ide_checked.len());
        for (rule, action) in ide_checked {
            actions.push(action);
            ide.push(rule);
        }
        for (i, a) in actions.iter().enumerate() {
            if actions[..i].iter().any(|b| b.kind == a.kind) {
                return Err(err(
                    locate(text, &format!("\"{}\"", a.kind)),
                    format!("action kind {:?} is named twice", a.kind),
                ));
            }
        }
        compile("claimed", &file.handled.claimed)?;
        compile("answered", &file.handled.answered)?;
        compile("resolved", &file.handled.resolved)?;
        compile("[handled]", &flag_patterns)?;
        compile("[[action]]", &signal_patterns)?;
        // Every list compiles on its own, so only the two lists' size together can be at
        // fault: allow them the room they had apart.
        let patterns = together
            .or_else(|_| {
                RegexSetBuilder::new(all_patterns.iter().map(|p| compiled(p)))
                    .size_limit(2 * DEFAULT_SIZE_LIMIT)
                    .build()
            })
            .map_err(|e| {
                err(
                    locate(text, "[[action]]"),
                    format!("[[action]]: bad pattern: {e}"),
                )
            })?;
        Ok(Self {
            patterns,
            flag_kinds,
            signal_of,
            injection,
            quiet,
            ide,
            actions,
            file,
        })
    }

    /// The "already handled" and injection flags of `text`, and the signals in it, in one scan.
    pub(crate) fn scan(&self, text: &str) -> Scan {
        let mut scan = Scan {
            flags: self.flag_kinds.len(),
            ..Scan::default()
        };
        // Most texts match little or nothing: finding out whether they match at all stops at
        // the first match and tracks no pattern, so it is quicker than listing the matches.
        if !self.patterns.is_match(text) {
            return scan;
        }
        let matches = self.patterns.matches(text);
        for i in matches.iter().take_while(|&i| i < scan.flags) {
            match self.flag_kinds[i] {
                Flag::Claimed => scan.claimed = true,
                Flag::Answered => scan.answered = true,
                Flag::Resolved => scan.resolved = true,
                Flag::Injection(j) => {
                    scan.injection.get_or_insert(j);
                }
            }
        }
        scan.matches = Some(matches);
        scan
    }

    /// Reads and checks the policy at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read policy {}: {e}", path.display()))?;
        Ok(Self::parse(&path.display().to_string(), &text)?)
    }

    /// The policy Chime ships with (`policies/default.toml`).
    pub fn default_policy() -> Self {
        Self::parse(
            "policies/default.toml",
            include_str!("../../policies/default.toml"),
        )
        .expect("the shipped policy is valid (checked by its tests)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_policy_is_valid() {
        let p = Policy::default_policy();
        assert!(p.actions.len() >= 7, "{}", p.actions.len());
        // The editor rules follow the text actions, and no text signal points at them.
        assert_eq!(p.ide.len(), 3);
        let first = p.actions.len() - p.ide.len();
        assert!(p.ide.iter().enumerate().all(|(i, r)| r.action == first + i));
        assert!(p.signal_of.iter().all(|(a, _)| *a < first));
        assert_eq!(p.actions[first].kind, "hand_off_flaky_test");
        assert_eq!(p.actions[first].steps, (-1.0, 1.0));
    }

    #[test]
    fn a_misspelt_key_is_named_with_line_and_column() {
        let text =
            include_str!("../../policies/default.toml").replacen("per_thread", "per_thraed", 1);
        let e = Policy::parse("p.toml", &text).unwrap_err();
        assert!(e.message.contains("per_thraed"), "{e}");
        let (line, _) = locate(&text, "per_thraed");
        assert_eq!(e.line, line, "{e}");
        assert!(e.column >= 1);
        assert!(e.to_string().starts_with(&format!("p.toml:{line}:")), "{e}");
    }

    #[test]
    fn hostile_policies_are_refused() {
        let base = include_str!("../../policies/default.toml");
        for (bad, why) in [
            (base.replacen("version = 1", "version = 9", 1), "version"),
            (
                base.replacen("threshold = 0.", "threshold = 1.", 1),
                "threshold",
            ),
            (
                base.replacen("pattern = '", "pattern = '(", 1),
                "bad pattern",
            ),
            ("".to_string(), "missing"),
            ("version = 1\naction = 3".to_string(), "invalid type"),
            (
                base.replacen("delivery = \"thread\"", "delivery = \"shout\"", 1),
                "delivery",
            ),
            (
                base.replacen("start = \"20:00\"", "start = \"25:00\"", 1),
                "quiet_hours",
            ),
            (
                base.replacen("\nsignal = \"test_failed\"", "\nsignal = \"typing\"", 1),
                "signal must be",
            ),
            (
                base.replacen("threshold_max = 6", "threshold_max = 2", 1),
                "threshold_min <= threshold",
            ),
            (
                base.replacen("threshold_min = 2", "threshold_min = 0", 1),
                "0 < threshold_min",
            ),
            (
                base.replacen("within_minutes = 10", "within_minutes = -1", 1),
                "within_minutes",
            ),
            (
                base.replacen("kind = \"hand_off_build_error\"", "kind = \"fix_ci\"", 1),
                "named twice",
            ),
            (base.replacen("step = 1", "stride = 1", 1), "stride"),
        ] {
            let Err(e) = Policy::parse("p.toml", &bad) else {
                panic!("{why}: the policy was accepted");
            };
            assert!(e.message.contains(why), "{why}: {e}");
        }
    }
}
