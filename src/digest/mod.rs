//! The weekly digest: what the team's agent did in a week, with the week before beside it.
//! `stats.rs` reads the numbers from the store, `week.rs` is the ISO week, and this module
//! renders them with `templates/digest/` (`chime digest preview`). Numbers with no data to
//! compute from show "—", never 0%.

pub mod schedule;
pub mod stats;
pub mod week;

use handlebars::Handlebars;
use serde_json::{json, Value};
pub use stats::WeekStats;
pub use week::Week;

const TEXT: &str = include_str!("../../templates/digest/digest.md.hbs");

/// A count with its change since the week before.
fn count(now: i64, before: i64) -> Value {
    let change = match now - before {
        0 => "±0".to_string(),
        d if d > 0 => format!("+{d}"),
        d => format!("−{}", -d),
    };
    json!({ "value": now.to_string(), "change": change })
}

/// A rate as a percentage, with its change in points; "—" without data.
fn percent(now: Option<f64>, before: Option<f64>) -> Value {
    let value = now.map_or("—".to_string(), |r| format!("{:.0}%", r * 100.0));
    let change = match (now, before) {
        (Some(n), Some(b)) => {
            let d = ((n - b) * 100.0).round() as i64;
            match d {
                0 => "±0 pts".to_string(),
                d if d > 0 => format!("+{d} pts"),
                d => format!("−{} pts", -d),
            }
        }
        _ => "—".to_string(),
    };
    json!({ "value": value, "change": change })
}

/// A duration as people say it; "—" without data.
fn duration(ms: Option<i64>) -> String {
    match ms {
        None => "—".into(),
        Some(ms) if ms < 60_000 => format!("{} s", ms / 1000),
        Some(ms) if ms < 3_600_000 => format!("{} min", ms / 60_000),
        Some(ms) if ms < 2 * 86_400_000 => format!("{:.1} h", ms as f64 / 3_600_000.0),
        Some(ms) => format!("{:.1} days", ms as f64 / 86_400_000.0),
    }
}

/// What the templates see.
pub fn view(now: &WeekStats, before: &WeekStats) -> Value {
    let entry = |k: &str| {
        count(
            now.by_entry.get(k).copied().unwrap_or(0),
            before.by_entry.get(k).copied().unwrap_or(0),
        )
    };
    let acceptance: Vec<Value> = now
        .acceptance_by_action
        .iter()
        .map(|(action, r)| {
            let b = before.acceptance_by_action.get(action).copied().flatten();
            json!({ "action": action, "rate": percent(*r, b) })
        })
        .collect();
    json!({
        "week": now.week,
        "previous": before.week,
        "sessions": count(now.sessions, before.sessions),
        "tasks": count(now.tasks, before.tasks),
        "mention": entry("mention"),
        "suggestion": entry("suggestion"),
        "linear": entry("linear"),
        "ide": entry("ide"),
        "completed": count(now.completed, before.completed),
        "failed": count(now.failed, before.failed),
        "stopped": count(now.stopped, before.stopped),
        "waiting": count(now.waiting, before.waiting),
        "prs_opened": count(now.prs_opened, before.prs_opened),
        "prs_merged": count(now.prs_merged, before.prs_merged),
        "prs_closed": count(now.prs_closed, before.prs_closed),
        "merge_rate": percent(now.merge_rate, before.merge_rate),
        "median_to_result": duration(now.median_to_result_ms),
        "median_to_result_before": duration(before.median_to_result_ms),
        "median_to_merge": duration(now.median_to_merge_ms),
        "median_to_merge_before": duration(before.median_to_merge_ms),
        "suggestions_offered": count(now.suggestions_offered, before.suggestions_offered),
        "suggestions_accepted": count(now.suggestions_accepted, before.suggestions_accepted),
        "suggestions_dismissed": count(now.suggestions_dismissed, before.suggestions_dismissed),
        "acceptance": acceptance,
        "feedback_up": count(now.feedback_up, before.feedback_up),
        "feedback_down": count(now.feedback_down, before.feedback_down),
        "spend": crate::spend::usd(now.spend_micros),
        "spend_before": crate::spend::usd(before.spend_micros),
        "tokens": count(now.tokens, before.tokens),
        "agent_time": duration((now.agent_ms > 0).then_some(now.agent_ms)),
        "agent_time_before": duration((before.agent_ms > 0).then_some(before.agent_ms)),
        "top_requesters": now.top_requesters.iter().map(|(w, n)| json!({"who": crate::templates::one_line(w, 80), "n": n})).collect::<Vec<_>>(),
        "busiest_places": now.busiest_places.iter().map(|(w, n)| json!({"where": crate::templates::one_line(w, 120), "n": n})).collect::<Vec<_>>(),
        "waiting_on_someone": now.waiting_on_someone,
    })
}

/// The digest as plain text (Markdown), for `chime digest preview --format text`.
pub fn render_text(now: &WeekStats, before: &WeekStats) -> anyhow::Result<String> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.register_template_string("digest", TEXT)?;
    Ok(hb.render("digest", &view(now, before))?)
}

/// The digest of `week`, with the week before it for comparison.
pub async fn preview(db: &crate::db::Db, week: Week, now_ms: i64) -> anyhow::Result<String> {
    let now = stats::compute(db, week, now_ms).await?;
    let before = stats::compute(db, week.previous(), now_ms).await?;
    render_text(&now, &before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_data_is_a_dash_not_zero_percent() {
        let empty = WeekStats::default();
        let text = render_text(&empty, &empty).unwrap();
        assert!(text.contains("Merge rate: —"), "{text}");
        assert!(!text.contains("0%"), "{text}");
        assert_eq!(duration(Some(90_000)), "1 min");
        assert_eq!(percent(Some(0.5), Some(0.75))["change"], "−25 pts");
        assert_eq!(count(3, 5)["change"], "−2");
    }
}
