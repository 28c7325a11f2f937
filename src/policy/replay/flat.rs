//! Reading a replay line without serde when it is what replay lines nearly always are: one flat
//! JSON object of plain strings, booleans and nulls. This takes a fraction of serde's time
//! (which was a quarter of replay's). Anything else (an escape, a number, a nested value, a
//! repeated or mistyped field, a syntax error) gets None, and serde reads the line as before:
//! every line still means what serde says it means, and is refused when serde refuses it.

use super::plain::plain_prefix;
use super::Input;
use std::borrow::Cow;

/// The message on `line`, or None to leave the line to serde.
pub(super) fn read(line: &str) -> Option<Input<'_>> {
    let mut p = Cursor { line, at: 0 };
    let mut input = Input {
        id: Cow::Borrowed(""),
        channel: Cow::Borrowed(""),
        channel_name: Cow::Borrowed(""),
        user: Cow::Borrowed(""),
        user_is_bot: false,
        ts: Cow::Borrowed(""),
        thread_ts: None,
        text: Cow::Borrowed(""),
        label: None,
    };
    // The fields seen, a bit each: serde refuses a repeated one.
    let mut seen = 0u16;
    p.ws();
    p.eat(b'{')?;
    loop {
        p.ws();
        let key = p.string()?;
        p.ws();
        p.eat(b':')?;
        p.ws();
        let value = p.value()?;
        if let Some(bit) = set(&mut input, key, value)? {
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
        }
        p.ws();
        if p.eat(b',').is_none() {
            break;
        }
    }
    p.eat(b'}')?;
    p.ws();
    (p.at == line.len() && seen & REQUIRED == REQUIRED).then_some(input)
}

const ID: u16 = 1;
const CHANNEL: u16 = 1 << 1;
const TS: u16 = 1 << 2;
/// `id`, `channel` and `ts` have no default.
const REQUIRED: u16 = ID | CHANNEL | TS;

enum Value<'a> {
    Str(&'a str),
    Bool(bool),
    Null,
}

/// Sets field `key` as serde would: Some(its bit), Some(None) for a field `Input` does not
/// have (ignored, like serde), None for a value of a type serde refuses for it.
fn set<'a>(input: &mut Input<'a>, key: &str, value: Value<'a>) -> Option<Option<u16>> {
    let bit = match key {
        "id" => ID,
        "channel" => CHANNEL,
        "ts" => TS,
        "channel_name" => 1 << 3,
        "user" => 1 << 4,
        "user_is_bot" => 1 << 5,
        "thread_ts" => 1 << 6,
        "text" => 1 << 7,
        "label" => 1 << 8,
        _ => return Some(None),
    };
    match (key, value) {
        ("id", Value::Str(s)) => input.id = s.into(),
        ("channel", Value::Str(s)) => input.channel = s.into(),
        ("ts", Value::Str(s)) => input.ts = s.into(),
        ("channel_name", Value::Str(s)) => input.channel_name = s.into(),
        ("user", Value::Str(s)) => input.user = s.into(),
        ("user_is_bot", Value::Bool(b)) => input.user_is_bot = b,
        ("thread_ts", Value::Str(s)) => input.thread_ts = Some(s.into()),
        ("thread_ts", Value::Null) => input.thread_ts = None,
        ("text", Value::Str(s)) => input.text = s.into(),
        ("label", Value::Str(s)) => input.label = Some(s.to_string()),
        ("label", Value::Null) => input.label = None,
        _ => return None,
    }
    Some(Some(bit))
}

struct Cursor<'a> {
    line: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.line.as_bytes().get(self.at).copied()
    }

    /// JSON's whitespace, no more.
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        (self.peek() == Some(b)).then(|| self.at += 1)
    }

    fn word(&mut self, w: &str) -> Option<()> {
        self.line[self.at..]
            .starts_with(w)
            .then(|| self.at += w.len())
    }

    /// A string with no escape and no control character (which serde refuses unescaped).
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.at;
        let len = plain_prefix(&self.line.as_bytes()[start..]);
        self.at += len;
        self.eat(b'"')?;
        // Both ends are next to an ASCII quote, so on character boundaries.
        Some(&self.line[start..start + len])
    }

    fn value(&mut self) -> Option<Value<'a>> {
        Some(match self.peek()? {
            b'"' => Value::Str(self.string()?),
            b't' => self.word("true").map(|_| Value::Bool(true))?,
            b'f' => self.word("false").map(|_| Value::Bool(false))?,
            b'n' => self.word("null").map(|_| Value::Null)?,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn serde(line: &str) -> Option<Input<'_>> {
        serde_json::from_str(line).ok()
    }

    #[test]
    fn plain_lines_are_read_as_serde_reads_them() {
        for line in [
            r#"{"id": "m0", "source": "slack", "team": "T1", "channel": "C0001", "channel_name": "c0001", "user": "U1", "user_is_bot": false, "ts": "1764000000.100000", "thread_ts": null, "text": "lunch at 12:30?"}"#,
            "{\"id\":\"a\",\"channel\":\"C\",\"ts\":\"1\",\"thread_ts\":\"0.5\",\"label\":\"quiet\"}\r\n",
            " \t{ \"ts\" : \"1\" , \"id\" : \"é😀\" , \"channel\" : \"\" , \"x\" : null, \"x\": true }\n",
            r#"{"id": "a", "channel": "C", "ts": "1", "label": null, "user_is_bot": true}"#,
        ] {
            let ours = read(line);
            assert!(ours.is_some(), "{line}");
            assert_eq!(ours, serde(line), "{line}");
        }
    }

    #[test]
    fn everything_else_is_left_to_serde() {
        for line in [
            r#"{"id": "a\n", "channel": "C", "ts": "1"}"#,
            r#"{"id": "a", "channel": "C", "ts": "1", "n": 1}"#,
            r#"{"id": "a", "channel": "C", "ts": "1", "o": {}}"#,
            r#"{"id": "a", "channel": "C", "ts": "1", "id": "b"}"#,
            r#"{"id": "a", "channel": "C", "ts": "1", "user_is_bot": "yes"}"#,
            r#"{"id": "a", "channel": "C", "ts": "1", "text": null}"#,
            r#"{"id": "a", "channel": "C", "ts": "1",}"#,
            r#"{"id": "a", "channel": "C", "ts": 1}"#,
            r#"{"id": "a", "channel": "C"}"#,
            r#"{"id": "a", "channel": "C", "ts": "1"} x"#,
            r#"{"id": "a", "channel": "C", "ts": "1", "b": tru}"#,
            "{\"id\": \"a\tb\", \"channel\": \"C\", \"ts\": \"1\"}",
            "{\"id\": \"a\", \"channel\": \"C\", \"ts\": \"1\"}\x0c",
            "{}",
            "",
            "[]",
        ] {
            assert_eq!(read(line), None, "{line}");
        }
    }

    /// A JSON-ish value: mostly what `read` takes, sometimes what it leaves to serde.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => "[a-zA-Z0-9 .:#@/é😀-]{0,12}".prop_map(|s| format!("\"{s}\"")),
            1 => "[a-z\"\\\\\t\n]{0,4}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            2 => Just("true".to_string()),
            2 => Just("false".to_string()),
            2 => Just("null".to_string()),
            1 => Just("12".to_string()),
            1 => Just("{\"ts\": \"1\"}".to_string()),
            1 => Just("tru".to_string()),
        ]
    }

    const FIELDS: [&str; 9] = [
        "id",
        "channel",
        "channel_name",
        "user",
        "user_is_bot",
        "ts",
        "thread_ts",
        "text",
        "label",
    ];

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(FIELDS.to_vec()).prop_map(|k| format!("\"{k}\"")),
            4 => Just("\"source\"".to_string()),
            1 => Just("\"t\\u0073\"".to_string()),
            1 => Just("\"\"".to_string()),
        ]
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", "", "", "", " ", " ", "\t", "\r\n", "\x0c"])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn read_agrees_with_serde(
            members in prop::collection::vec((key(), value(), ws(), ws()), 0..6),
            required in prop::bool::weighted(0.85),
            end in prop::sample::select(vec!["}", "}", "}\n", "} ", ",}", "", "}}"]),
        ) {
            let mut parts: Vec<String> = members
                .iter()
                .map(|(k, v, a, b)| format!("{a}{k}{b}:{a}{v}{b}"))
                .collect();
            if required {
                parts.extend(["\"id\": \"i\"", "\"channel\": \"c\"", "\"ts\": \"1.5\""].map(String::from));
            }
            let line = format!("{{{}{end}", parts.join(","));
            if let Some(ours) = read(&line) {
                prop_assert_eq!(Some(ours), serde(&line), "{}", line);
            }
        }
    }
}
