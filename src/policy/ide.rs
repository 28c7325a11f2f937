//! The policy on what editors report: a rule per signal (the same test failing in 3 runs within
//! 10 minutes, errors in one file persisting for 15 minutes) measures how stuck the person is;
//! when the measure reaches the rule's threshold, the offer goes through the same budgets,
//! quiet hours, mutes and learning as a channel message's (`judge::within_budgets`), counted
//! with the person's other suggestions.

use super::judge::{self, Facts, Message, Relevance};
use super::live::{self, ToOffer};
use super::{Policy, PolicyError};
use crate::binding::Binding;
use crate::event::{Author, ChannelMessage};
use crate::ids::now_ms;
use serde::Deserialize;
use sha2::Digest;
use sqlx::AnyConnection;

/// One `[[ide]]` rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdeRuleFile {
    /// The action kind, as in `[[action]]` (mutes, learning and `chime policy stats` name it).
    pub kind: String,
    /// `test_failed` or `command_failed` (measured in runs within `within_minutes`), or
    /// `diagnostics` (measured in minutes the file's errors persisted without a clean report).
    pub signal: String,
    pub button: String,
    /// Runs, or minutes; learning moves it by `step` within the bounds.
    pub threshold: f64,
    pub threshold_min: f64,
    pub threshold_max: f64,
    #[serde(default = "default_step")]
    pub step: f64,
    /// The window runs are counted in.
    #[serde(default = "default_window")]
    pub within_minutes: f64,
}

fn default_step() -> f64 {
    1.0
}

fn default_window() -> f64 {
    10.0
}

/// What an editor's signal is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Runs,
    Minutes,
}

/// A checked rule; `action` is its index in the policy's actions (where learning finds it).
#[derive(Debug)]
pub struct IdeRule {
    pub signal: String,
    pub measure: Measure,
    pub window_ms: i64,
    pub action: usize,
}

/// Checks the rules; each becomes an action with no text signals.
pub(super) fn check(
    rules: &[IdeRuleFile],
    first_action: usize,
    err: impl Fn(&str, String) -> PolicyError,
) -> Result<Vec<(IdeRule, super::Action)>, PolicyError> {
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let measure = match r.signal.as_str() {
            "test_failed" | "command_failed" => Measure::Runs,
            "diagnostics" => Measure::Minutes,
            _ => {
                return Err(err(
                    &r.signal,
                    format!(
                        "ide rule {:?}: signal must be test_failed, command_failed or diagnostics",
                        r.kind
                    ),
                ))
            }
        };
        let ok = 0.0 < r.threshold_min
            && r.threshold_min <= r.threshold
            && r.threshold <= r.threshold_max
            && r.threshold_max <= 10_000.0
            && (0.0..=r.threshold_max).contains(&r.step)
            && (0.0..=7.0 * 24.0 * 60.0).contains(&r.within_minutes);
        if !ok {
            return Err(err(
                &format!("\"{}\"", r.kind),
                format!(
                    "ide rule {:?}: need 0 < threshold_min <= threshold <= threshold_max, \
                     0 <= step <= threshold_max and within_minutes within a week",
                    r.kind
                ),
            ));
        }
        out.push((
            IdeRule {
                signal: r.signal.clone(),
                measure,
                window_ms: (r.within_minutes * 60_000.0) as i64,
                action: first_action + i,
            },
            super::Action {
                kind: r.kind.clone(),
                button: r.button.clone(),
                threshold: r.threshold,
                bounds: (r.threshold_min, r.threshold_max),
                whys: vec![],
                steps: (-r.step, r.step),
            },
        ));
    }
    Ok(out)
}

/// One signal an editor reported, as the policy reads it.
pub struct Signal<'a> {
    /// The person's editor queue (`slack.U1`): the "place" its budgets and learning count in.
    pub account: &'a str,
    pub surface: &'a str,
    pub author: &'a Author,
    pub kind: &'a str,
    pub subject: &'a str,
    pub detail: &'a str,
    /// Where the editor is: "acme/api on main at 1a2b3c".
    pub workspace: &'a str,
}

/// How far `s` has gone by `rule`'s measure.
async fn measure(conn: &mut AnyConnection, rule: &IdeRule, s: &Signal<'_>) -> anyhow::Result<f64> {
    let now = now_ms();
    let subject = crate::db::storable(s.subject);
    Ok(match rule.measure {
        Measure::Runs => {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM ide_signals WHERE surface = $1 AND user_id = $2 \
                 AND kind = $3 AND subject = $4 AND at >= $5",
            )
            .bind(s.surface)
            .bind(s.author.user.as_str())
            .bind(s.kind)
            .bind(subject.as_ref())
            .bind(now - rule.window_ms)
            .fetch_one(conn)
            .await?;
            n as f64
        }
        Measure::Minutes => {
            // Since the last clean report of the file, within a day.
            let clean: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(at) FROM ide_signals WHERE surface = $1 AND user_id = $2 \
                 AND kind = 'diagnostics_clear' AND subject = $3",
            )
            .bind(s.surface)
            .bind(s.author.user.as_str())
            .bind(subject.as_ref())
            .fetch_one(&mut *conn)
            .await?;
            let since = clean.unwrap_or(0).max(now - 86_400_000);
            let first: Option<i64> = sqlx::query_scalar(
                "SELECT MIN(at) FROM ide_signals WHERE surface = $1 AND user_id = $2 \
                 AND kind = 'diagnostics' AND subject = $3 AND at > $4",
            )
            .bind(s.surface)
            .bind(s.author.user.as_str())
            .bind(subject.as_ref())
            .bind(since)
            .fetch_one(conn)
            .await?;
            first.map_or(0.0, |f| (now - f) as f64 / 60_000.0)
        }
    })
}

/// What an accepted suggestion asks the agent: the signal, quoted as data.
fn request_text(rule: &IdeRule, s: &Signal<'_>, measured: f64) -> String {
    let what = match (rule.signal.as_str(), rule.measure) {
        ("test_failed", _) => format!(
            "The test `{}` failed in {measured:.0} test runs within {} minutes",
            s.subject,
            rule.window_ms / 60_000
        ),
        ("command_failed", _) => format!(
            "The command `{}` failed {measured:.0} times within {} minutes",
            s.subject,
            rule.window_ms / 60_000
        ),
        _ => format!(
            "The errors in `{}` have persisted for {measured:.0} minutes",
            s.subject
        ),
    };
    let detail = crate::templates::truncate_chars(s.detail, 4000).replace("```", "ʼʼʼ");
    format!(
        "{what} in the editor's workspace ({}). Its latest output:\n```\n{detail}\n```",
        s.workspace
    )
}

/// Judges one signal inside the handler's transaction: records an offer to show now when a
/// rule's measure reaches its threshold and the budgets allow it.
pub async fn judge_signal(
    tx: &mut AnyConnection,
    policy: &Policy,
    s: &Signal<'_>,
) -> anyhow::Result<Option<(ChannelMessage, ToOffer)>> {
    for rule in policy.ide.iter().filter(|r| r.signal == s.kind) {
        let action = &policy.actions[rule.action];
        let measured = measure(tx, rule, s).await?;
        // The key names the rule, the subject and the day: one offer per stuck thing per day.
        let digest = hex::encode(sha2::Sha256::digest(s.subject.as_bytes()));
        let day = judge::day(policy, now_ms());
        let binding = Binding::Ide {
            account: s.account.to_string(),
            handoff: format!("s{day}-{}-{}", rule.action, &digest[..16]),
        };
        let thread = binding.to_string();
        let m = Message {
            id: &thread,
            place: s.account,
            place_name: "",
            author: s.author.user.as_str(),
            author_is_bot: false,
            at_ms: now_ms(),
            thread: None,
            text: "",
            mentions_chime: false,
            from_chime: false,
        };
        let mut mem = live::memory(tx, policy, &m).await?;
        // Someone who connected an editor to Chime has used it.
        mem.users.insert(m.author.to_string());
        let shift = mem
            .threshold_shift
            .get(&(s.account.to_string(), action.kind.clone()))
            .copied()
            .unwrap_or(0.0);
        let threshold = (action.threshold + shift).clamp(action.bounds.0, action.bounds.1);
        if measured < threshold {
            continue;
        }
        let why = format!(
            "{}: {measured:.0} of {threshold:.0} {}",
            rule.signal,
            match rule.measure {
                Measure::Runs => "runs",
                Measure::Minutes => "minutes",
            }
        );
        let relevant = Relevance::of_action(rule.action, measured, vec![why.into()]);
        let d = judge::within_budgets(&Facts::new(policy, &m), relevant, &mut mem, false);
        if !d.suggests() {
            tracing::debug!(thread = %thread, reasons = ?d.reasons, "editor signal: quiet");
            continue;
        }
        let message = ChannelMessage {
            binding,
            message: String::new(),
            author: s.author.clone(),
            author_is_bot: false,
            place_name: String::new(),
            top_level: true,
            at_ms: now_ms(),
            text: request_text(rule, s, measured),
        };
        let private_to = Some(s.author.user.as_str());
        if let Some(offer) = live::record(tx, &message, &thread, d, private_to).await? {
            return Ok(Some((message, offer)));
        }
    }
    Ok(None)
}
