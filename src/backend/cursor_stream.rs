//! A Cursor run's progress from its event stream (`GET /v1/agents/{id}/runs/{run}/stream`,
//! server-sent events `assistant`, `tool_call`, `result`, `error`, `done`): what the agent says
//! and the tools it calls become milestones. The run's end still comes from its status, which the
//! `cursor` backend polls; a `result`, `error` or `done` event only makes it look at once.
//!
//! A stream that breaks off is reopened after a pause, resuming after the last event seen
//! (`Last-Event-ID`); one Cursor no longer has (`410 stream_expired`, or 404) leaves the turn to
//! polling alone, as do repeated failures.

use super::remote::Api;
use super::Progress;
use crate::templates::one_line;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

/// How long a milestone from the stream may be.
const MILESTONE_CHARS: usize = 300;
/// Failed openings in a row before the turn relies on polling alone.
const MAX_FAILURES: u32 = 5;

#[derive(Debug, PartialEq)]
pub(super) enum Step {
    Progress(String),
    /// The run ended: its status is worth reading now.
    End,
    Nothing,
}

/// What one event means for the turn. Event payloads are read loosely: a text under `text`,
/// `content` or `message`, a tool's name under `name`, `tool` or `toolName`; anything else is
/// skipped, never an error.
pub(super) fn step(event: &str, data: &str) -> Step {
    let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
    let text_at = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .map(|t| one_line(t.trim(), MILESTONE_CHARS))
            .filter(|t| !t.is_empty())
    };
    match event {
        "assistant" => {
            text_at(&["text", "content", "message"]).map_or(Step::Nothing, Step::Progress)
        }
        "tool_call" => text_at(&["name", "tool", "toolName"]).map_or(Step::Nothing, |tool| {
            Step::Progress(format!("Running {tool}"))
        }),
        "result" | "error" | "done" => Step::End,
        _ => Step::Nothing,
    }
}

/// Follows the run's stream until it ends; see the module documentation.
pub(super) async fn follow(
    api: &Api,
    run_path: &str,
    progress: &mpsc::Sender<Progress>,
    ended: &Notify,
    limit: Duration,
    pause: Duration,
) {
    let path = format!("{run_path}/stream");
    let mut last_id: Option<String> = None;
    let mut failures = 0;
    while failures < MAX_FAILURES {
        let response = match api.open_stream(&path, last_id.as_deref(), limit).await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if matches!(r.status(), StatusCode::GONE | StatusCode::NOT_FOUND) => {
                tracing::info!(status = %r.status(), "Cursor's run stream is gone; polling only");
                return;
            }
            Ok(r) => {
                tracing::debug!(status = %r.status(), "Cursor's run stream refused");
                failures += 1;
                tokio::time::sleep(pause).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot open Cursor's run stream");
                failures += 1;
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        failures = 0;
        let mut events = response.bytes_stream().eventsource();
        while let Some(Ok(event)) = events.next().await {
            if !event.id.is_empty() {
                last_id = Some(event.id.clone());
            }
            match step(&event.event, &event.data) {
                Step::Progress(text) => {
                    let _ = progress.try_send(Progress::new(text));
                }
                Step::End => {
                    ended.notify_one();
                    return;
                }
                Step::Nothing => {}
            }
        }
        // Broke off without an end: reopen after a pause, after the last event seen.
        failures += 1;
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_milestones_and_hostile_ones_nothing() {
        assert_eq!(
            step("assistant", r#"{"text":"Reading the retry client"}"#),
            Step::Progress("Reading the retry client".into())
        );
        assert_eq!(
            step("tool_call", r#"{"name":"edit_file","args":{"path":"a"}}"#),
            Step::Progress("Running edit_file".into())
        );
        assert_eq!(step("done", ""), Step::End);
        assert_eq!(step("error", r#"{"message":"x"}"#), Step::End);
        for (event, data) in [
            ("assistant", "not json"),
            ("assistant", r#"{"text":7}"#),
            ("assistant", r#"{"text":"   "}"#),
            ("tool_call", "[]"),
            ("heartbeat", r#"{"text":"x"}"#),
            ("", ""),
        ] {
            assert_eq!(step(event, data), Step::Nothing, "{event} {data}");
        }
        let long = format!(r#"{{"text":"{}\n<!channel>"}}"#, "a".repeat(5000));
        match step("assistant", &long) {
            Step::Progress(t) => assert!(t.chars().count() <= MILESTONE_CHARS && !t.contains('\n')),
            other => panic!("{other:?}"),
        }
    }
}
