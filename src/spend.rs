//! Spend: what each ended turn used and cost (`task_usage`), monthly budgets per workspace and
//! per channel (`[budgets]`), the one notice at 80% and the refusal at 100%, and `chime usage`.
//!
//! A turn's cost is its model tokens at the backend's configured prices, plus its wall time at
//! the backend's hourly price (for agents that report no tokens). Months are UTC calendar months.
//! Notices are claimed in `budget_notices` (unique per budget and month), so one replica sends
//! each, once.

use crate::binding::Binding;
use crate::config::Config;
use crate::limits::scopes;
use crate::session::Task;
use sqlx::{AnyConnection, Row};

/// The share of a budget at which the admins are told.
const NOTICE_AT: f64 = 0.8;

/// A budget that applies to a turn: its name for people, its key, its scope and its size.
struct Budget {
    name: String,
    key: String,
    column: &'static str,
    scope: String,
    usd: f64,
}

fn budgets(config: &Config, binding: &Binding) -> Vec<Budget> {
    let (workspace, channel) = scopes(binding);
    let mut out = vec![];
    let w = config.budgets.workspace_monthly_usd;
    if w > 0.0 {
        out.push(Budget {
            name: "this workspace's monthly budget".into(),
            key: format!("workspace:{workspace}"),
            column: "workspace",
            scope: workspace,
            usd: w,
        });
    }
    if let Some(&c) = config.budgets.channels.get(binding.place()) {
        if c > 0.0 {
            out.push(Budget {
                name: format!("the monthly budget of channel {}", binding.place()),
                key: format!("channel:{channel}"),
                column: "channel",
                scope: channel,
                usd: c,
            });
        }
    }
    out
}

/// The UTC calendar month of `ms`, as `2026-12`.
pub fn month_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m")
        .to_string()
}

/// The first day of the month after `month` (`2026-12` → `2027-01-01`).
pub fn reset_date(month: &str) -> String {
    let (y, m) = month.split_once('-').unwrap_or(("1970", "01"));
    let (y, m): (i32, u32) = (y.parse().unwrap_or(1970), m.parse().unwrap_or(1));
    let (y, m) = if m >= 12 { (y + 1, 1) } else { (y, m + 1) };
    format!("{y:04}-{m:02}-01")
}

/// Millionths of a US dollar, as `$1.23`.
pub fn usd(micros: i64) -> String {
    format!("${:.2}", micros as f64 / 1_000_000.0)
}

async fn spent(conn: &mut AnyConnection, b: &Budget, month: &str) -> anyhow::Result<i64> {
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS spent FROM task_usage WHERE month = $1 AND {} = $2",
        b.column
    );
    let v: i64 = sqlx::query(&sql)
        .bind(month)
        .bind(&b.scope)
        .fetch_one(&mut *conn)
        .await?
        .get("spent");
    Ok(v)
}

/// Why a new turn at `binding` may not start: a budget that applies is spent for this month.
pub async fn refusal(
    conn: &mut AnyConnection,
    config: &Config,
    binding: &Binding,
    now_ms: i64,
) -> anyhow::Result<Option<String>> {
    let month = month_of(now_ms);
    for b in budgets(config, binding) {
        let spent = spent(conn, &b, &month).await?;
        if spent as f64 >= b.usd * 1_000_000.0 {
            return Ok(Some(format!(
                "Not started: {} ({}) is spent for {month} ({} so far). It resets on {} (UTC); turns already running finish.",
                b.name,
                usd((b.usd * 1_000_000.0) as i64),
                usd(spent),
                reset_date(&month)
            )));
        }
    }
    Ok(None)
}

/// Records what `task` (just ended) used and cost, once; returns the notices for the admins of
/// budgets it took past 80% this month (each once per budget and month).
pub async fn record(
    conn: &mut AnyConnection,
    config: &Config,
    task: &Task,
) -> anyhow::Result<Vec<(String, String)>> {
    let usage = task
        .outcome
        .as_ref()
        .and_then(|o| o.usage)
        .unwrap_or_default();
    let end = task.finished_at.unwrap_or_else(crate::ids::now_ms);
    let wall_ms = task.started_at.map_or(0, |s| (end - s).max(0));
    let price = config
        .budgets
        .prices
        .get(&task.backend)
        .copied()
        .unwrap_or_default();
    // USD per million tokens is micro-dollars per token.
    let cost = usage.input_tokens as f64 * price.usd_per_million_input_tokens
        + usage.output_tokens as f64 * price.usd_per_million_output_tokens
        + wall_ms as f64 / 3_600_000.0 * price.usd_per_hour * 1_000_000.0;
    let (workspace, channel) = scopes(&task.binding);
    let month = month_of(end);
    let recorded = sqlx::query(
        "INSERT INTO task_usage (task_id, backend, requester, workspace, channel, input_tokens, \
         output_tokens, wall_ms, cost_micros, month, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (task_id) DO NOTHING",
    )
    .bind(task.id.as_str())
    .bind(&task.backend)
    .bind(&task.requester)
    .bind(&workspace)
    .bind(&channel)
    .bind(i64::try_from(usage.input_tokens).unwrap_or(i64::MAX))
    .bind(i64::try_from(usage.output_tokens).unwrap_or(i64::MAX))
    .bind(wall_ms)
    .bind(cost.round() as i64)
    .bind(&month)
    .bind(end)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    let mut notices = vec![];
    if !recorded {
        return Ok(notices);
    }
    for b in budgets(config, &task.binding) {
        let spent = spent(conn, &b, &month).await?;
        let limit = b.usd * 1_000_000.0;
        if (spent as f64) < NOTICE_AT * limit {
            continue;
        }
        let first = sqlx::query(
            "INSERT INTO budget_notices (budget, month, at) VALUES ($1, $2, $3) \
             ON CONFLICT (budget, month) DO NOTHING",
        )
        .bind(&b.key)
        .bind(&month)
        .bind(end)
        .execute(&mut *conn)
        .await?
        .rows_affected()
            == 1;
        if first {
            let share = (spent as f64 / limit * 100.0).floor();
            notices.push((
                format!("budget:{}:{month}", b.key),
                format!(
                    "Chime has used {share}% of {} for {month}: {} of {}. At 100% new requests are refused until {} (UTC).",
                    b.name,
                    usd(spent),
                    usd(limit as i64),
                    reset_date(&month)
                ),
            ));
        }
    }
    Ok(notices)
}

/// How `chime usage` groups a month's spend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Person,
    Channel,
    Backend,
}

impl By {
    const ALL: [By; 3] = [By::Person, By::Channel, By::Backend];

    pub fn as_str(self) -> &'static str {
        match self {
            By::Person => "person",
            By::Channel => "channel",
            By::Backend => "backend",
        }
    }
}

impl std::str::FromStr for By {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match By::ALL.into_iter().find(|b| b.as_str() == s) {
            Some(b) => Ok(b),
            None => Err(format!("--by takes person, channel or backend, not {s:?}")),
        }
    }
}

/// One line of `chime usage`.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageLine {
    pub key: String,
    pub turns: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub wall_ms: i64,
    pub cost_micros: i64,
}

/// A month's spend, grouped `by`, most expensive first.
pub async fn report(
    conn: &mut AnyConnection,
    month: &str,
    by: By,
) -> anyhow::Result<Vec<UsageLine>> {
    let column = match by {
        By::Person => "requester",
        By::Channel => "channel",
        By::Backend => "backend",
    };
    let sql = format!(
        "SELECT {column} AS k, COUNT(*) AS turns, CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS i, \
         CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS o, CAST(COALESCE(SUM(wall_ms), 0) AS BIGINT) AS w, \
         CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS c FROM task_usage WHERE month = $1 \
         GROUP BY {column} ORDER BY c DESC, k"
    );
    let rows = sqlx::query(&sql).bind(month).fetch_all(conn).await?;
    Ok(rows
        .iter()
        .map(|r| UsageLine {
            key: r.get("k"),
            turns: r.get("turns"),
            input_tokens: r.get("i"),
            output_tokens: r.get("o"),
            wall_ms: r.get("w"),
            cost_micros: r.get("c"),
        })
        .collect())
}

/// `chime usage`'s table.
pub fn render(month: &str, by: By, lines: &[UsageLine]) -> String {
    let name = by.as_str();
    let mut out = format!(
        "Usage for {month}, by {name}\n{:<32} {:>6} {:>12} {:>12} {:>10} {:>10}\n",
        name, "turns", "tokens in", "tokens out", "wall", "cost"
    );
    let mut total = UsageLine {
        key: "total".into(),
        turns: 0,
        input_tokens: 0,
        output_tokens: 0,
        wall_ms: 0,
        cost_micros: 0,
    };
    for l in lines {
        total.turns += l.turns;
        total.input_tokens += l.input_tokens;
        total.output_tokens += l.output_tokens;
        total.wall_ms += l.wall_ms;
        total.cost_micros += l.cost_micros;
    }
    for l in lines.iter().chain(std::iter::once(&total)) {
        out.push_str(&format!(
            "{:<32} {:>6} {:>12} {:>12} {:>9}s {:>10}\n",
            l.key.chars().take(32).collect::<String>(),
            l.turns,
            l.input_tokens,
            l.output_tokens,
            l.wall_ms / 1000,
            usd(l.cost_micros)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_resets() {
        assert_eq!(month_of(1_764_547_200_000), "2025-12"); // 2025-12-01T00:00Z
        assert_eq!(reset_date("2026-11"), "2026-12-01");
        assert_eq!(reset_date("2026-12"), "2027-01-01");
        assert_eq!("person".parse::<By>(), Ok(By::Person));
        assert!("people".parse::<By>().is_err());
    }
}
