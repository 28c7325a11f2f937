//! `chime inspect failed`: what was parked as failed (inbox events, outbox rows, tasks) and why,
//! newest first, as plain text for an operator. Stored text is untrusted and may be long, so every
//! field is cut short and anything shaped like a token is masked.

use crate::db::Db;
use crate::event::Event;
use crate::templates::truncate_chars;
use anyhow::Context;
use sqlx::Row;
use std::fmt::Write;

/// Reasons and message text are cut to these many characters.
const REASON_CHARS: usize = 200;
const TEXT_CHARS: usize = 60;

/// The report, at most `limit` rows of each kind.
pub async fn failed(db: &Db, limit: i64) -> anyhow::Result<String> {
    let mut out = String::new();

    let inbox = sqlx::query(
        "SELECT id, source, delivery_id, payload, attempts, last_error, received_at FROM inbox \
         WHERE state = 'failed' ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await
    .context("reading failed inbox rows")?;
    section(&mut out, "Inbox events parked as failed", inbox.len());
    for r in &inbox {
        let payload: String = r.get("payload");
        let text = match serde_json::from_str::<Event>(&payload) {
            Ok(Event::Mention(m)) => m.text,
            Ok(Event::Request(r)) => r.text,
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  inbox #{} at {}  {}:{}  attempts {}\n    reason: {}{}",
            r.get::<i64, _>("id"),
            utc(r.get("received_at")),
            clean(&r.get::<String, _>("source"), 40),
            clean(&r.get::<String, _>("delivery_id"), 80),
            r.get::<i64, _>("attempts"),
            reason(r.get("last_error")),
            quoted(&text),
        );
    }

    let outbox = sqlx::query(
        "SELECT id, surface, target, kind, payload, attempts, last_error, created_at FROM outbox \
         WHERE state = 'failed' ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await
    .context("reading failed outbox rows")?;
    section(&mut out, "Outbox rows parked as failed", outbox.len());
    for r in &outbox {
        let payload: String = r.get("payload");
        let text = serde_json::from_str::<serde_json::Value>(&payload)
            .ok()
            .and_then(|v| v.get("text").and_then(|t| t.as_str()).map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  outbox #{} at {}  {} {} to {}  attempts {}\n    reason: {}{}",
            r.get::<i64, _>("id"),
            utc(r.get("created_at")),
            clean(&r.get::<String, _>("surface"), 20),
            clean(&r.get::<String, _>("kind"), 20),
            clean(&r.get::<String, _>("target"), 120),
            r.get::<i64, _>("attempts"),
            reason(r.get("last_error")),
            quoted(&text),
        );
    }

    let tasks = sqlx::query(
        "SELECT id, binding, prompt, attempts, error, COALESCE(finished_at, created_at) AS at FROM tasks \
         WHERE state = 'failed' ORDER BY COALESCE(finished_at, created_at) DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await
    .context("reading failed tasks")?;
    section(&mut out, "Tasks that failed", tasks.len());
    for r in &tasks {
        let _ = writeln!(
            out,
            "  task {} at {}  binding {}  attempts {}\n    reason: {}{}",
            clean(&r.get::<String, _>("id"), 60),
            utc(r.get("at")),
            clean(&r.get::<String, _>("binding"), 120),
            r.get::<i64, _>("attempts"),
            reason(r.get("error")),
            quoted(&r.get::<String, _>("prompt")),
        );
    }
    Ok(out)
}

fn section(out: &mut String, title: &str, n: usize) {
    if !out.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{title}: {}",
        if n == 0 { "none".into() } else { n.to_string() }
    );
}

fn reason(r: Option<String>) -> String {
    clean(r.as_deref().unwrap_or("(no reason recorded)"), REASON_CHARS)
}

fn quoted(text: &str) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        format!("\n    text: \"{}\"", clean(text, TEXT_CHARS))
    }
}

/// One line, cut to `max` characters, control characters dropped and token-shaped words masked.
fn clean(s: &str, max: usize) -> String {
    let one_line: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let masked = one_line
        .split(' ')
        .map(|w| if looks_secret(w) { "***" } else { w })
        .collect::<Vec<_>>()
        .join(" ");
    truncate_chars(&masked, max)
}

/// Slack tokens (`xoxb-…`, `xapp-…`, …) and URLs with a password.
fn looks_secret(word: &str) -> bool {
    let w = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    ["xoxb-", "xoxp-", "xoxa-", "xoxe-", "xoxs-", "xapp-"]
        .iter()
        .any(|p| w.contains(p))
        || (w.contains("://") && w.contains('@'))
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SSZ`.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_masking() {
        assert_eq!(utc(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc(1_700_000_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(
            clean("token xoxb-1-abc, db postgres://u:pw@h/d\nok", 200),
            "token *** db *** ok"
        );
        assert_eq!(clean(&"a".repeat(500), 10).chars().count(), 10);
    }
}
