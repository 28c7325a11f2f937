//! The IDE protocol's client messages (`integrations/ide/PROTOCOL.md`), parsed from hostile text:
//! a version, an id, a known type and bounded fields, or an error naming what is wrong.

use crate::event::IdeReport;
use serde::Deserialize;

pub const VERSION: u64 = 1;
const MAX_ID: usize = 128;
const MAX_FAILURES: usize = 50;
const MAX_OUTPUT: usize = 4 * 1024;
const MAX_TAIL: usize = 8 * 1024;
const MAX_FIELD: usize = 1024;

/// A client message: its id and what it says.
#[derive(Debug, PartialEq)]
pub struct ClientMessage {
    pub id: String,
    pub body: Body,
    /// A hello's `last_seq`: the last server message the client saw (it gets those after it).
    pub last_seq: Option<i64>,
}

#[derive(Debug, PartialEq)]
pub enum Body {
    /// What the editor reports: stored, then recorded for the policy.
    Report(IdeReport),
    /// An explicit request for an agent, as the text of its first turn.
    Handoff(String),
    /// `accept` (true) or `dismiss` (false) of the suggestion with this id.
    Answer { suggestion: String, accept: bool },
}

/// What is wrong with a message: the id it named (when it had a usable one) and why.
#[derive(Debug, PartialEq)]
pub struct Refused {
    pub id: Option<String>,
    pub reason: String,
}

#[derive(Deserialize)]
struct Raw {
    v: Option<serde_json::Value>,
    id: Option<serde_json::Value>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Workspace {
    remote: String,
    branch: String,
    head: String,
}

#[derive(Deserialize)]
struct HelloMsg {
    client: String,
    workspace: Workspace,
    #[serde(default)]
    last_seq: Option<i64>,
}

#[derive(Deserialize)]
struct Selection {
    #[serde(default)]
    file: String,
    #[serde(default)]
    start_line: u64,
    #[serde(default)]
    end_line: u64,
    text: String,
}

#[derive(Deserialize)]
struct AnswerMsg {
    suggestion: String,
}

#[derive(Deserialize)]
struct HandoffMsg {
    instruction: String,
    #[serde(default)]
    selection: Option<Selection>,
    #[serde(default)]
    diff: Option<String>,
}

const MAX_INSTRUCTION: usize = 4000;
const MAX_SELECTION: usize = 32 * 1024;
const MAX_DIFF: usize = 256 * 1024;

/// A hand-off as the turn's request: the instruction, then the selection and the diff quoted as
/// data (fences inside cannot end Chime's own).
fn handoff_text(m: HandoffMsg) -> Result<String, String> {
    let instruction = clean(m.instruction.trim(), MAX_INSTRUCTION, false);
    if instruction.trim().is_empty() {
        return Err("handoff: the instruction is empty".into());
    }
    let fence = |s: &str| s.replace("```", "ʼʼʼ");
    let mut text = instruction;
    if let Some(sel) = m.selection.filter(|s| !s.text.trim().is_empty()) {
        text.push_str(&format!(
            "\n\nSelected in the editor ({} lines {}–{}):\n```\n{}\n```",
            field(&sel.file),
            sel.start_line,
            sel.end_line,
            fence(&clean(&sel.text, MAX_SELECTION, false))
        ));
    }
    if let Some(diff) = m.diff.filter(|d| !d.trim().is_empty()) {
        if diff.len() > MAX_DIFF {
            return Err(format!("handoff: the diff is over {} KiB", MAX_DIFF / 1024));
        }
        text.push_str(&format!(
            "\n\nUncommitted changes in the editor's workspace:\n```diff\n{}\n```",
            fence(&clean(&diff, MAX_DIFF, false))
        ));
    }
    Ok(text)
}

#[derive(Deserialize)]
struct Failure {
    name: String,
    #[serde(default)]
    output: String,
}

#[derive(Deserialize)]
struct TestRunMsg {
    runner: String,
    passed: u64,
    failed: u64,
    #[serde(default)]
    failures: Vec<Failure>,
}

#[derive(Deserialize)]
struct DiagnosticsMsg {
    file: String,
    errors: u64,
    #[serde(default)]
    first: Option<String>,
}

#[derive(Deserialize)]
struct CommandFailedMsg {
    command: String,
    exit_code: i64,
    #[serde(default)]
    output_tail: String,
}

/// Text from the editor: control characters (but newlines and tabs) dropped, cut to `max` bytes
/// on a character boundary (the end of an output is kept; it holds the error).
fn clean(s: &str, max: usize, keep_end: bool) -> String {
    let s: String = s
        .chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .collect();
    if s.len() <= max {
        return s;
    }
    if keep_end {
        let mut start = s.len() - max;
        while !s.is_char_boundary(start) {
            start += 1;
        }
        s[start..].to_string()
    } else {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    }
}

fn field(s: &str) -> String {
    clean(s, MAX_FIELD, false).replace(['\n', '\t'], " ")
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientMessage, Refused> {
    let raw: Raw = serde_json::from_str(text).map_err(|e| Refused {
        id: None,
        reason: format!("not a JSON object: {e}"),
    })?;
    let id = match raw.id {
        Some(serde_json::Value::String(id))
            if !id.is_empty() && id.len() <= MAX_ID && id.chars().all(|c| c.is_ascii_graphic()) =>
        {
            id
        }
        _ => {
            return Err(Refused {
                id: None,
                reason: "id must be 1 to 128 printable ASCII characters".into(),
            })
        }
    };
    let refuse = |reason: String| Refused {
        id: Some(id.clone()),
        reason,
    };
    if raw.v.as_ref().and_then(|v| v.as_u64()) != Some(VERSION) {
        return Err(refuse(format!(
            "unsupported protocol version (this server speaks v{VERSION})"
        )));
    }
    let kind = raw.kind.unwrap_or_default();
    let shape = |e: serde_json::Error| refuse(format!("{kind}: {e}"));
    let mut last_seq = None;
    let body = match kind.as_str() {
        "hello" => {
            let m: HelloMsg = serde_json::from_str(text).map_err(shape)?;
            last_seq = m.last_seq.filter(|s| *s >= 0);
            let head = m.workspace.head.trim().to_ascii_lowercase();
            if !(7..=64).contains(&head.len()) || !head.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(refuse("hello: workspace.head is not a commit sha".into()));
            }
            Body::Report(IdeReport::Hello {
                client: field(&m.client),
                remote: field(&m.workspace.remote),
                branch: field(&m.workspace.branch),
                head,
            })
        }
        "test_run" => {
            let m: TestRunMsg = serde_json::from_str(text).map_err(shape)?;
            if m.failures.len() > MAX_FAILURES {
                return Err(refuse(format!("test_run: at most {MAX_FAILURES} failures")));
            }
            Body::Report(IdeReport::TestRun {
                runner: field(&m.runner),
                passed: m.passed,
                failed: m.failed,
                failures: m
                    .failures
                    .into_iter()
                    .filter(|f| !f.name.trim().is_empty())
                    .map(|f| (field(&f.name), clean(&f.output, MAX_OUTPUT, true)))
                    .collect(),
            })
        }
        "diagnostics" => {
            let m: DiagnosticsMsg = serde_json::from_str(text).map_err(shape)?;
            Body::Report(IdeReport::Diagnostics {
                file: field(&m.file),
                errors: m.errors,
                first: m.first.as_deref().map(field),
            })
        }
        "command_failed" => {
            let m: CommandFailedMsg = serde_json::from_str(text).map_err(shape)?;
            Body::Report(IdeReport::CommandFailed {
                command: field(&m.command),
                exit_code: m.exit_code,
                output_tail: clean(&m.output_tail, MAX_TAIL, true),
            })
        }
        "handoff" => {
            let m: HandoffMsg = serde_json::from_str(text).map_err(shape)?;
            Body::Handoff(handoff_text(m).map_err(refuse)?)
        }
        "accept" | "dismiss" => {
            let m: AnswerMsg = serde_json::from_str(text).map_err(|_| {
                refuse(format!(
                    "{kind}: suggestion must be a suggestion's id (a string)"
                ))
            })?;
            // Suggestion ids are Chime's own (32 hex digits); anything else names none.
            let valid = (1..=64).contains(&m.suggestion.len())
                && m.suggestion.chars().all(|c| c.is_ascii_hexdigit());
            if !valid {
                return Err(refuse(format!("{kind}: suggestion is not a suggestion id")));
            }
            Body::Answer {
                suggestion: m.suggestion.to_ascii_lowercase(),
                accept: kind == "accept",
            }
        }
        "" => return Err(refuse("missing type".into())),
        other => return Err(refuse(format!("unknown type {:?}", field(other)))),
    };
    Ok(ClientMessage { id, body, last_seq })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_documented_messages_parse() {
        let hello = r#"{"v":1,"id":"m1","type":"hello","client":"vscode-chime 0.1.0",
            "workspace":{"remote":"git@github.com:acme/api.git","branch":"main","head":"0123abcDEF4567"}}"#;
        assert_eq!(
            parse(hello).unwrap().body,
            Body::Report(IdeReport::Hello {
                client: "vscode-chime 0.1.0".into(),
                remote: "git@github.com:acme/api.git".into(),
                branch: "main".into(),
                head: "0123abcdef4567".into(),
            })
        );
        let run = r#"{"v":1,"id":"m2","type":"test_run","runner":"cargo","passed":10,"failed":1,
            "failures":[{"name":"api::retry","output":"assertion failed"}],"extra":true}"#;
        match parse(run).unwrap().body {
            Body::Report(IdeReport::TestRun {
                failures, failed, ..
            }) => {
                assert_eq!(failed, 1);
                assert_eq!(
                    failures,
                    vec![("api::retry".into(), "assertion failed".into())]
                );
            }
            other => panic!("{other:?}"),
        }
        let failed = r#"{"v":1,"id":"m3","type":"command_failed","command":"npm test","exit_code":1,"output_tail":"boom"}"#;
        assert!(matches!(
            parse(failed).unwrap().body,
            Body::Report(IdeReport::CommandFailed { exit_code: 1, .. })
        ));
        let diag = r#"{"v":1,"id":"m4","type":"diagnostics","file":"src/a.rs","errors":3}"#;
        assert!(matches!(
            parse(diag).unwrap().body,
            Body::Report(IdeReport::Diagnostics { errors: 3, .. })
        ));
        let accept = r#"{"v":1,"id":"m5","type":"accept","suggestion":"0A1b"}"#;
        assert_eq!(
            parse(accept).unwrap().body,
            Body::Answer {
                suggestion: "0a1b".into(),
                accept: true
            }
        );
        let dismiss = r#"{"v":1,"id":"m7","type":"dismiss","suggestion":"ff"}"#;
        assert!(matches!(
            parse(dismiss).unwrap().body,
            Body::Answer { accept: false, .. }
        ));
        for bad in [
            r#"{"v":1,"id":"m8","type":"accept"}"#,
            r#"{"v":1,"id":"m8","type":"accept","suggestion":""}"#,
            r#"{"v":1,"id":"m8","type":"accept","suggestion":"../x"}"#,
            r#"{"v":1,"id":"m8","type":"dismiss","suggestion":7}"#,
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.id.as_deref(), Some("m8"), "{bad}");
            assert!(e.reason.contains("suggestion"), "{bad}: {}", e.reason);
        }
        let handoff = r#"{"v":1,"id":"m6","type":"handoff","instruction":"fix it",
            "selection":{"file":"src/a.rs","start_line":3,"end_line":4,"text":"let x = 1;```\nrm -rf /"},
            "diff":"--- a\n+++ b\n"}"#;
        match parse(handoff).unwrap().body {
            Body::Handoff(text) => {
                assert!(
                    text.starts_with("fix it\n\nSelected in the editor (src/a.rs lines 3–4)"),
                    "{text}"
                );
                assert_eq!(text.matches("```").count(), 4, "{text}");
                assert!(text.contains("```diff\n--- a"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        let hello = r#"{"v":1,"id":"m7","type":"hello","client":"c","last_seq":41,
            "workspace":{"remote":"r","branch":"b","head":"0123456"}}"#;
        assert_eq!(parse(hello).unwrap().last_seq, Some(41));
        assert!(parse(r#"{"v":1,"id":"m8","type":"handoff","instruction":"  "}"#).is_err());
    }

    #[test]
    fn hostile_messages_are_refused_with_a_reason() {
        let cases = [
            ("", None),
            ("[]", None),
            (r#"{"v":1,"type":"hello"}"#, None),
            (r#"{"v":1,"id":"","type":"hello"}"#, None),
            (r#"{"v":1,"id":"a b","type":"hello"}"#, None),
            (r#"{"v":1,"id":7,"type":"hello"}"#, None),
            (r#"{"v":2,"id":"x","type":"hello"}"#, Some("x")),
            (r#"{"id":"x","type":"hello"}"#, Some("x")),
            (r#"{"v":1,"id":"x"}"#, Some("x")),
            (r#"{"v":1,"id":"x","type":"rm_rf"}"#, Some("x")),
            (
                r#"{"v":1,"id":"x","type":"hello","client":"c","workspace":{"remote":"r","branch":"b","head":"; rm -rf /"}}"#,
                Some("x"),
            ),
            (
                r#"{"v":1,"id":"x","type":"test_run","runner":"r","passed":-1,"failed":0}"#,
                Some("x"),
            ),
            (
                r#"{"v":1,"id":"x","type":"command_failed","command":"c"}"#,
                Some("x"),
            ),
        ];
        for (text, id) in cases {
            let e = parse(text).expect_err(text);
            assert_eq!(e.id.as_deref(), id, "{text}");
            assert!(!e.reason.is_empty());
        }
        let many: Vec<String> = (0..51).map(|i| format!(r#"{{"name":"t{i}"}}"#)).collect();
        let burst = format!(
            r#"{{"v":1,"id":"x","type":"test_run","runner":"r","passed":0,"failed":51,"failures":[{}]}}"#,
            many.join(",")
        );
        assert!(parse(&burst).is_err());
    }

    #[test]
    fn long_output_keeps_its_end_and_control_characters_go() {
        let out = format!("{}THE ERROR\u{1b}[31m", "x".repeat(10_000));
        let text = serde_json::json!({"v":1,"id":"x","type":"command_failed","command":"make\u{0}",
            "exit_code":2,"output_tail": out})
        .to_string();
        match parse(&text).unwrap().body {
            Body::Report(IdeReport::CommandFailed {
                command,
                output_tail,
                ..
            }) => {
                assert_eq!(command, "make");
                assert!(output_tail.len() <= MAX_TAIL);
                assert!(output_tail.ends_with("THE ERROR[31m"), "{output_tail}");
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in ".{0,400}") {
            let _ = parse(&s);
        }
    }
}
