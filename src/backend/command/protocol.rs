//! The agent's stdout protocol: one JSON object per line (Chime's own, Codex's or Claude's JSONL),
//! or plain text; see the `command` module documentation for the table.

use super::super::Progress;
use super::evidence::{self, Ran};
use serde_json::Value;
use tokio::sync::mpsc;

/// How much plain text is kept as the final message when the agent sends no explicit one.
const PLAIN_TAIL_CHARS: usize = 4000;
/// Progress is shown in a status message; a milestone longer than this is noise.
const PROGRESS_MAX_CHARS: usize = 1000;

/// What one line of the agent's stdout means.
#[derive(Debug, PartialEq)]
pub(super) enum Event {
    /// A milestone.
    Progress(String),
    /// A milestone that is also the final message, unless a later message or a result follows.
    Message(String),
    /// The final message.
    Result(String),
    PullRequest(String),
    /// What the agent's own checks said (tests, lints), one line.
    Checks(String),
    /// A command the agent ran, and how it ended (Codex).
    Ran(Ran),
    /// A command the agent started (Claude's Bash tool), named by its tool use id...
    Started {
        id: String,
        command: String,
    },
    /// ...and how it ended.
    Finished {
        id: String,
        output: String,
        failed: bool,
    },
    /// A line that is not a JSON object.
    Plain(String),
    Ignored,
}

/// What the agent said during the turn.
#[derive(Debug, Default)]
pub(super) struct Transcript {
    result: Option<String>,
    last_message: Option<String>,
    plain: String,
    pub pr_url: Option<String>,
    pub checks: Option<String>,
    /// Commands the agent ran (the last ones), and those started and not yet finished.
    ran: Vec<Ran>,
    started: Vec<(String, String)>,
}

/// How many commands a transcript keeps.
const MAX_RAN: usize = 50;

impl Transcript {
    pub(super) fn apply(&mut self, event: Event, progress: &mpsc::Sender<Progress>) {
        match event {
            Event::Progress(text) => send_progress(progress, &text),
            Event::Message(text) => {
                send_progress(progress, &text);
                self.last_message = Some(text);
            }
            Event::Result(text) => self.result = Some(text),
            Event::PullRequest(url) => self.pr_url = Some(url),
            Event::Checks(text) => {
                let line = crate::templates::one_line(text.trim(), CHECKS_MAX_CHARS);
                self.checks = (!line.is_empty()).then_some(line);
            }
            Event::Plain(text) => {
                send_progress(progress, &text);
                self.plain.push_str(&text);
                self.plain.push('\n');
                // Trim in batches (a char is at most 4 bytes, so this keeps more than enough); the
                // exact cut happens in `final_message`.
                if self.plain.len() > 16 * PLAIN_TAIL_CHARS {
                    self.plain = tail_chars(&self.plain, PLAIN_TAIL_CHARS).to_string();
                }
            }
            Event::Ran(ran) => self.ran_one(ran, progress),
            Event::Started { id, command } => {
                send_progress(progress, &format!("Running `{}`", shorten(&command, 200)));
                if self.started.len() == MAX_RAN {
                    self.started.remove(0);
                }
                self.started.push((id, command));
            }
            Event::Finished { id, output, failed } => {
                if let Some(i) = self.started.iter().position(|(s, _)| *s == id) {
                    let (_, command) = self.started.remove(i);
                    let exit_code = exit_code_in(&output);
                    let ran = Ran {
                        command,
                        exit_code,
                        failed,
                        output,
                    };
                    self.ran_one(ran, progress);
                }
            }
            Event::Ignored => {}
        }
    }

    fn ran_one(&mut self, ran: Ran, progress: &mpsc::Sender<Progress>) {
        let failed = ran.check().failed;
        send_step(progress, &ran.milestone(), Some(failed));
        if self.ran.len() == MAX_RAN {
            self.ran.remove(0);
        }
        self.ran.push(ran);
    }

    /// The checks the agent ran, each with its last outcome.
    pub(super) fn evidence(&self) -> Vec<crate::backend::Check> {
        evidence::checks(&self.ran)
    }

    /// An explicit result wins, then the last agent message, then the tail of the plain text.
    pub(super) fn final_message(&self) -> String {
        if let Some(text) = self.result.as_ref().or(self.last_message.as_ref()) {
            return text.trim().to_string();
        }
        match tail_chars(self.plain.trim(), PLAIN_TAIL_CHARS) {
            // An empty reply cannot be posted, and silence would look like a hang.
            "" => "The agent finished without a message.".to_string(),
            text => text.to_string(),
        }
    }
}

/// Never waits: a slow consumer of progress must not stall the agent, so a milestone that does
/// not fit is dropped (the caller only shows the latest one anyway).
fn send_progress(progress: &mpsc::Sender<Progress>, text: &str) {
    send_step(progress, text, None)
}

/// A milestone that starts a step (`ended: None`) or reports one already over.
fn send_step(progress: &mpsc::Sender<Progress>, text: &str, ended: Option<bool>) {
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    let text = match text.char_indices().nth(PROGRESS_MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    };
    let _ = progress.try_send(Progress { text, ended });
}

/// The last `n` characters of `s`.
pub(super) fn tail_chars(s: &str, n: usize) -> &str {
    match s.char_indices().rev().nth(n.saturating_sub(1)) {
        Some((start, _)) if n > 0 => &s[start..],
        _ if n == 0 => "",
        _ => s,
    }
}

/// How long a `checks` line may be.
const CHECKS_MAX_CHARS: usize = 200;

pub(super) fn parse_line(line: &str) -> Event {
    let line = line.strip_suffix('\r').unwrap_or(line);
    match serde_json::from_str::<Value>(line) {
        Ok(value @ Value::Object(_)) => parse_json(&value),
        _ => Event::Plain(line.to_string()),
    }
}

fn parse_json(v: &Value) -> Event {
    let text_of = |key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
    match v.get("type").and_then(Value::as_str) {
        Some("progress") => text_of("text").map_or(Event::Ignored, Event::Progress),
        // Chime's own result carries `text`; Claude's carries `result`.
        Some("result") => text_of("text")
            .or_else(|| text_of("result"))
            .map_or(Event::Ignored, Event::Result),
        Some("checks") => text_of("text").map_or(Event::Ignored, Event::Checks),
        Some("pr") => match text_of("url") {
            Some(url) => crate::backend::valid_pr_url(&url).map_or_else(
                || {
                    tracing::warn!(chars = url.chars().count(), "ignoring a pull request URL that is not a plain http(s) URL of at most 500 characters");
                    Event::Ignored
                },
                Event::PullRequest,
            ),
            None => Event::Ignored,
        },
        Some("item.completed") => v.get("item").map_or(Event::Ignored, parse_codex_item),
        Some("assistant") => v
            .pointer("/message/content")
            .and_then(Value::as_array)
            .map_or(Event::Ignored, |parts| parse_claude_content(parts)),
        // Claude's tool results come back as the user's turn.
        Some("user") => v
            .pointer("/message/content")
            .and_then(Value::as_array)
            .and_then(|parts| parts.iter().find_map(claude_tool_result))
            .unwrap_or(Event::Ignored),
        _ => Event::Ignored,
    }
}

/// A completed item of `codex exec --json`.
fn parse_codex_item(item: &Value) -> Event {
    let field = |key: &str| item.get(key).and_then(Value::as_str);
    match field("type") {
        Some("agent_message") => field("text").map_or(Event::Ignored, |t| Event::Message(t.into())),
        Some("command_execution") => match field("command") {
            Some(command) => {
                let exit_code = item.get("exit_code").and_then(Value::as_i64);
                Event::Ran(Ran {
                    command: command.to_string(),
                    exit_code,
                    failed: field("status") == Some("failed") || exit_code.is_some_and(|c| c != 0),
                    output: field("aggregated_output").unwrap_or_default().to_string(),
                })
            }
            None => Event::Ignored,
        },
        Some("file_change") => {
            let paths: Vec<&str> = item
                .get("changes")
                .and_then(Value::as_array)
                .map(|changes| {
                    changes
                        .iter()
                        .filter_map(|c| c.get("path").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            if paths.is_empty() {
                Event::Progress("Edited files".into())
            } else {
                Event::Progress(format!("Edited {}", shorten(&paths.join(", "), 300)))
            }
        }
        Some("mcp_tool_call") => match (field("server"), field("tool")) {
            (Some(server), Some(tool)) => Event::Progress(format!("Called {server}.{tool}")),
            _ => Event::Ignored,
        },
        Some("web_search") => field("query").map_or(Event::Ignored, |q| {
            Event::Progress(format!("Searched the web for {}", shorten(q, 200)))
        }),
        _ => Event::Ignored,
    }
}

/// The content parts of a Claude `assistant` message.
fn parse_claude_content(parts: &[Value]) -> Event {
    let part_type = |p: &Value| p.get("type").and_then(Value::as_str).map(str::to_string);
    let texts: Vec<&str> = parts
        .iter()
        .filter(|p| part_type(p).as_deref() == Some("text"))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    if !texts.is_empty() {
        return Event::Message(texts.join("\n"));
    }
    let Some(tool) = parts
        .iter()
        .find(|p| part_type(p).as_deref() == Some("tool_use"))
    else {
        return Event::Ignored;
    };
    let name = tool.get("name").and_then(Value::as_str);
    let id = tool.get("id").and_then(Value::as_str);
    let command = tool.pointer("/input/command").and_then(Value::as_str);
    match (name, id, command) {
        (Some("Bash"), Some(id), Some(command)) => Event::Started {
            id: id.to_string(),
            command: command.to_string(),
        },
        (Some(name), _, _) => Event::Progress(format!("Using {name}")),
        _ => Event::Ignored,
    }
}

/// A `tool_result` part of Claude's user turn: its text, and whether it failed.
fn claude_tool_result(part: &Value) -> Option<Event> {
    if part.get("type").and_then(Value::as_str) != Some("tool_result") {
        return None;
    }
    let id = part.get("tool_use_id").and_then(Value::as_str)?;
    let output = match part.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|i| i.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    Some(Event::Finished {
        id: id.to_string(),
        failed: part.get("is_error").and_then(Value::as_bool) == Some(true),
        output,
    })
}

/// "Exit code 101", as Claude's Bash tool reports a failed command.
fn exit_code_in(output: &str) -> Option<i64> {
    let at = output.find("Exit code ")?;
    let digits: String = output[at + "Exit code ".len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

fn shorten(s: &str, max_chars: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chime_lines() {
        assert_eq!(
            parse_line(r#"{"type":"progress","text":"Running tests"}"#),
            Event::Progress("Running tests".into())
        );
        assert_eq!(
            parse_line(r#"{"type":"result","text":"Done"}"#),
            Event::Result("Done".into())
        );
        assert_eq!(
            parse_line(r#"{"type":"pr","url":"https://x/pull/1"}"#),
            Event::PullRequest("https://x/pull/1".into())
        );
        assert_eq!(
            parse_line(r#"{"type":"checks","text":"cargo test: 41 passed"}"#),
            Event::Checks("cargo test: 41 passed".into())
        );
        assert_eq!(parse_line(r#"{"type":"checks","text":7}"#), Event::Ignored);
    }

    #[test]
    fn codex_lines() {
        let msg = r#"{"type":"item.completed","item":{"id":"item_3","type":"agent_message","text":"All done"}}"#;
        assert_eq!(parse_line(msg), Event::Message("All done".into()));
        let cmd = r#"{"type":"item.completed","item":{"id":"item_1","type":"command_execution","command":"bash -lc ls","aggregated_output":"a.rs","exit_code":0,"status":"completed"}}"#;
        assert_eq!(
            parse_line(cmd),
            Event::Ran(Ran {
                command: "bash -lc ls".into(),
                exit_code: Some(0),
                failed: false,
                output: "a.rs".into()
            })
        );
        let edit = r#"{"type":"item.completed","item":{"type":"file_change","changes":[{"path":"a.rs","kind":"update"},{"path":"b.rs","kind":"add"}]}}"#;
        assert_eq!(
            parse_line(edit),
            Event::Progress("Edited a.rs, b.rs".into())
        );
        let reasoning = r#"{"type":"item.completed","item":{"type":"reasoning","text":"hmm"}}"#;
        assert_eq!(parse_line(reasoning), Event::Ignored);
        assert_eq!(
            parse_line(r#"{"type":"turn.completed","usage":{}}"#),
            Event::Ignored
        );
    }

    #[test]
    fn claude_lines() {
        let text =
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"Looking"}]}}"#;
        assert_eq!(parse_line(text), Event::Message("Looking".into()));
        let tool = r#"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Bash","input":{}}]}}"#;
        assert_eq!(parse_line(tool), Event::Progress("Using Bash".into()));
        // A Bash command, then its failed result: one check with the exit code Claude reports.
        let (tx, mut rx) = mpsc::channel(10);
        let mut t = Transcript::default();
        let start = r#"{"type":"assistant","message":{"content":[{"type":"tool_use","id":"tu1","name":"Bash","input":{"command":"cargo test"}}]}}"#;
        let done = r#"{"type":"user","message":{"content":[{"type":"tool_result","tool_use_id":"tu1","is_error":true,"content":"test tests::adds ... FAILED\nError: Exit code 101"}]}}"#;
        t.apply(parse_line(start), &tx);
        t.apply(parse_line(done), &tx);
        let checks = t.evidence();
        assert_eq!(checks.len(), 1);
        assert_eq!(
            checks[0].line(),
            "`cargo test`: exit 101, failing: tests::adds"
        );
        assert_eq!(rx.try_recv().unwrap().text, "Running `cargo test`");
        assert!(rx
            .try_recv()
            .unwrap()
            .text
            .starts_with("Ran `cargo test`: exit 101"));
        // A result for a tool use never seen is no check.
        t.apply(parse_line(&done.replace("tu1", "tu9")), &tx);
        assert_eq!(t.evidence().len(), 1);
        let result =
            r#"{"type":"result","subtype":"success","is_error":false,"result":"Fixed it"}"#;
        assert_eq!(parse_line(result), Event::Result("Fixed it".into()));
    }

    #[test]
    fn other_lines() {
        assert_eq!(parse_line("hello"), Event::Plain("hello".into()));
        assert_eq!(parse_line("hello\r"), Event::Plain("hello".into()));
        assert_eq!(parse_line("42"), Event::Plain("42".into()));
        assert_eq!(
            parse_line(r#"{"type":"#),
            Event::Plain(r#"{"type":"#.into())
        );
        assert_eq!(parse_line(r#"{"type":"result","text":5}"#), Event::Ignored);
        assert_eq!(parse_line(r#"{"hello":"world"}"#), Event::Ignored);
    }

    #[test]
    fn final_message_precedence() {
        let (tx, _rx) = mpsc::channel(100);
        let mut t = Transcript::default();
        assert_eq!(t.final_message(), "The agent finished without a message.");
        t.apply(Event::Plain("plain".into()), &tx);
        assert_eq!(t.final_message(), "plain");
        t.apply(Event::Message("message".into()), &tx);
        assert_eq!(t.final_message(), "message");
        t.apply(Event::Result("result".into()), &tx);
        t.apply(Event::Message("later message".into()), &tx);
        assert_eq!(t.final_message(), "result");
    }

    #[test]
    fn plain_text_keeps_its_tail() {
        let (tx, _rx) = mpsc::channel(1);
        let mut t = Transcript::default();
        for i in 0..10_000 {
            t.apply(Event::Plain(format!("line {i} é")), &tx);
        }
        let text = t.final_message();
        assert_eq!(text.chars().count(), PLAIN_TAIL_CHARS);
        assert!(text.ends_with("line 9999 é"));
    }

    #[test]
    fn tails_respect_char_boundaries() {
        assert_eq!(tail_chars("héllo", 4), "éllo");
        assert_eq!(tail_chars("hi", 10), "hi");
        assert_eq!(tail_chars("hi", 0), "");
        assert_eq!(shorten("ééé", 2), "éé…");
    }
}
