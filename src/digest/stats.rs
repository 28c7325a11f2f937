//! What a week's digest counts, read from the store: turns by entry point and outcome, pull
//! requests and their fates, how long answers and merges took, suggestions, who asked most and
//! where, and what waits on someone.

use super::week::Week;
use crate::binding::Binding;
use crate::db::Db;
use serde::Serialize;
use sqlx::Row;
use std::collections::BTreeMap;

/// One week's numbers. `None` where there is no data to compute from (shown as "—").
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WeekStats {
    pub week: String,
    /// Turns asked this week, by entry point: mention, suggestion, linear, ide.
    pub by_entry: BTreeMap<String, i64>,
    /// Sessions started this week.
    pub sessions: i64,
    pub tasks: i64,
    pub completed: i64,
    pub failed: i64,
    pub stopped: i64,
    /// Waiting for a person (a repository to pick).
    pub waiting: i64,
    pub prs_opened: i64,
    pub prs_merged: i64,
    pub prs_closed: i64,
    /// merged ÷ (merged + closed unmerged), of the pull requests whose fate was known this week.
    pub merge_rate: Option<f64>,
    /// Median time from a request to its result, of the turns that succeeded this week (ms).
    pub median_to_result_ms: Option<i64>,
    /// Median time from a pull request opened to merged, of those merged this week (ms).
    pub median_to_merge_ms: Option<i64>,
    pub suggestions_offered: i64,
    pub suggestions_accepted: i64,
    pub suggestions_dismissed: i64,
    /// Thumbs up and down on results, by when they were last given.
    pub feedback_up: i64,
    pub feedback_down: i64,
    /// What the week's ended turns cost (millionths of a US dollar), their model tokens and
    /// their agents' wall time (`task_usage`).
    pub spend_micros: i64,
    pub tokens: i64,
    pub agent_ms: i64,
    /// accepted ÷ (accepted + dismissed), per action kind.
    pub acceptance_by_action: BTreeMap<String, Option<f64>>,
    /// The people who asked most, with their counts (at most five).
    pub top_requesters: Vec<(String, i64)>,
    /// The places asked in most (a channel, a Linear workspace), with their counts.
    pub busiest_places: Vec<(String, i64)>,
    /// Turns waiting on someone, or running for more than a day, now: their bindings.
    pub waiting_on_someone: Vec<String>,
}

/// How a turn came to be.
fn entry_point(source_event: &str, binding: &str) -> &'static str {
    if source_event.starts_with("suggestion:") {
        "suggestion"
    } else if binding.starts_with("linear:") {
        "linear"
    } else if binding.starts_with("ide:") {
        "ide"
    } else {
        "mention"
    }
}

fn median(mut v: Vec<i64>) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    })
}

fn rate(yes: i64, no: i64) -> Option<f64> {
    (yes + no > 0).then(|| yes as f64 / (yes + no) as f64)
}

fn top(counts: BTreeMap<String, i64>, n: usize) -> Vec<(String, i64)> {
    let mut v: Vec<(String, i64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

/// The numbers of `week`; `now_ms` dates "waiting now".
pub async fn compute(db: &Db, week: Week, now_ms: i64) -> anyhow::Result<WeekStats> {
    let (start, end) = week.range_ms();
    let mut s = WeekStats {
        week: week.to_string(),
        ..WeekStats::default()
    };
    let tasks = sqlx::query(
        "SELECT source_event, binding, requester, state, turn_no, created_at, finished_at \
         FROM tasks WHERE created_at >= $1 AND created_at < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&db.pool)
    .await?;
    let (mut requesters, mut places) = (BTreeMap::new(), BTreeMap::new());
    let mut to_result = Vec::new();
    for t in &tasks {
        let binding: String = t.get("binding");
        let source: String = t.get("source_event");
        *s.by_entry
            .entry(entry_point(&source, &binding).to_string())
            .or_default() += 1;
        s.tasks += 1;
        if t.get::<i64, _>("turn_no") == 1 {
            s.sessions += 1;
        }
        match t.get::<String, _>("state").as_str() {
            "succeeded" => {
                s.completed += 1;
                if let Some(f) = t.get::<Option<i64>, _>("finished_at") {
                    to_result.push(f - t.get::<i64, _>("created_at"));
                }
            }
            "failed" => s.failed += 1,
            "cancelled" => s.stopped += 1,
            "awaiting_repo" => s.waiting += 1,
            _ => {}
        }
        *requesters
            .entry(t.get::<String, _>("requester"))
            .or_default() += 1;
        let place = binding
            .parse::<Binding>()
            .map(|b| format!("{}:{}", b.surface(), b.place()))
            .unwrap_or(binding);
        *places.entry(place).or_default() += 1;
    }
    s.median_to_result_ms = median(to_result);
    s.top_requesters = top(requesters, 5);
    s.busiest_places = top(places, 5);

    let prs = sqlx::query("SELECT state, opened_at, merged_at, closed_at FROM pull_requests")
        .fetch_all(&db.pool)
        .await?;
    let in_week = |t: Option<i64>| t.is_some_and(|t| (start..end).contains(&t));
    let mut to_merge = Vec::new();
    for p in &prs {
        let opened: i64 = p.get("opened_at");
        let merged: Option<i64> = p.get("merged_at");
        let closed: Option<i64> = p.get("closed_at");
        if in_week(Some(opened)) {
            s.prs_opened += 1;
        }
        if in_week(merged) {
            s.prs_merged += 1;
            to_merge.push(merged.unwrap_or(opened) - opened);
        } else if in_week(closed) && p.get::<String, _>("state") == "closed" {
            s.prs_closed += 1;
        }
    }
    s.merge_rate = rate(s.prs_merged, s.prs_closed);
    s.median_to_merge_ms = median(to_merge);

    let sugg = sqlx::query(
        "SELECT action, state FROM suggestions WHERE decided_at >= $1 AND decided_at < $2 \
         AND state IN ('offered', 'accepted', 'dismissed', 'muted')",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&db.pool)
    .await?;
    let mut per_action: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in &sugg {
        let action: String = r.get("action");
        let e = per_action.entry(action).or_default();
        s.suggestions_offered += 1;
        match r.get::<String, _>("state").as_str() {
            "accepted" => {
                s.suggestions_accepted += 1;
                e.0 += 1;
            }
            "dismissed" | "muted" => {
                s.suggestions_dismissed += 1;
                e.1 += 1;
            }
            _ => {}
        }
    }
    s.acceptance_by_action = per_action
        .into_iter()
        .map(|(k, (a, d))| (k, rate(a, d)))
        .collect();

    let votes: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT positive, COUNT(*) AS n FROM task_feedback WHERE updated_at >= $1 AND updated_at < $2 \
         GROUP BY positive",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&db.pool)
    .await?;
    for (positive, n) in votes {
        if positive != 0 {
            s.feedback_up += n;
        } else {
            s.feedback_down += n;
        }
    }

    let spend = sqlx::query(
        "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS c, \
         CAST(COALESCE(SUM(input_tokens + output_tokens), 0) AS BIGINT) AS t, \
         CAST(COALESCE(SUM(wall_ms), 0) AS BIGINT) AS w FROM task_usage WHERE at >= $1 AND at < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_one(&db.pool)
    .await?;
    s.spend_micros = spend.get("c");
    s.tokens = spend.get("t");
    s.agent_ms = spend.get("w");

    let waiting = sqlx::query(
        "SELECT DISTINCT binding FROM tasks WHERE state = 'awaiting_repo' \
         OR (state = 'running' AND started_at < $1) ORDER BY binding LIMIT 10",
    )
    .bind(now_ms - 86_400_000)
    .fetch_all(&db.pool)
    .await?;
    s.waiting_on_someone = waiting.iter().map(|r| r.get("binding")).collect();
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_rates_and_entry_points() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![5, 1, 3]), Some(3));
        assert_eq!(median(vec![4, 1, 3, 2]), Some(2));
        assert_eq!(rate(0, 0), None);
        assert_eq!(rate(3, 1), Some(0.75));
        assert_eq!(entry_point("suggestion:abc", "slack:T/C/1"), "suggestion");
        assert_eq!(entry_point("linear:d1", "linear:org/s"), "linear");
        assert_eq!(entry_point("http:Ev1", "slack:T/C/1"), "mention");
    }
}
