//! Whether a JSONL file's messages are already in time order, found by reading only their `ts`
//! fields. Replay judges messages in time order; a file already in it (the common case: exports
//! and logs are written as messages come) is judged as it is read, without holding it.

use super::lines::Lines;
use memchr::memmem;
use serde::Deserialize;
use std::borrow::Cow;
use std::io::Read;
use std::sync::LazyLock;

/// A message's time in Unix milliseconds, as replay orders and judges it.
pub(super) fn at_ms(ts: &str) -> i64 {
    let secs: f64 = ts.parse().unwrap_or(0.0);
    (secs * 1000.0) as i64
}

/// Whether the non-blank lines' times never go back. A line whose `ts` cannot be read says no:
/// the full read then reports it before anything is written.
pub(super) fn in_time_order(r: impl Read) -> std::io::Result<bool> {
    let mut lines = Lines::new(r);
    let mut last = i64::MIN;
    while let Some(line) = lines.next_line()? {
        let Some(ts) = ts_of(line) else {
            return Ok(false);
        };
        let Some(ts) = ts else { continue };
        let at = at_ms(&ts);
        if at < last {
            return Ok(false);
        }
        last = at;
    }
    Ok(true)
}

/// The `ts` field of a line; Some(None) for a blank line, None when it cannot be read.
fn ts_of(line: &[u8]) -> Option<Option<Cow<'_, str>>> {
    if let Some(ts) = flat_ts(line) {
        return Some(Some(Cow::Borrowed(ts)));
    }
    #[derive(Deserialize)]
    struct Ts<'a> {
        #[serde(borrow)]
        ts: Cow<'a, str>,
    }
    let line = std::str::from_utf8(line).ok()?;
    if line.trim().is_empty() {
        return Some(None);
    }
    serde_json::from_str::<Ts>(line).ok().map(|t| Some(t.ts))
}

/// The `ts` string of a line that is one flat JSON object, found with two vectorised searches
/// instead of a parse. None for anything else (nested values, an escaped `ts`): serde reads
/// those. A line that is not JSON may get a time here; the full read refuses it later.
///
/// In JSON, a `"` inside a string is escaped, so a `"ts"` not preceded by `\` starts a string
/// (one cannot end there: `ts` would follow it bare). Followed by `:`, that string is a key;
/// with no `{` or `[` after the first, the key is at the top.
fn flat_ts(line: &[u8]) -> Option<&str> {
    static TS_KEY: LazyLock<memmem::Finder> = LazyLock::new(|| memmem::Finder::new(b"\"ts\""));
    let object = line.trim_ascii_start().strip_prefix(b"{")?;
    if memchr::memchr2(b'{', b'[', object).is_some() {
        return None;
    }
    for at in TS_KEY.find_iter(object) {
        if at > 0 && object[at - 1] == b'\\' {
            continue;
        }
        let Some(value) = object[at + 4..].trim_ascii_start().strip_prefix(b":") else {
            continue;
        };
        let value = value.trim_ascii_start().strip_prefix(b"\"")?;
        let end = memchr::memchr2(b'"', b'\\', value)?;
        return (value[end] == b'"')
            .then(|| std::str::from_utf8(&value[..end]).ok())
            .flatten();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_read_finds_what_serde_finds() {
        for (line, ts) in [
            (r#"{"id": "a", "ts": "1.5", "text": "x"}"#, "1.5"),
            (r#"{"text": "say \"ts\": \"9\"", "ts":"2"}"#, "2"),
            (r#"{"n": 3, "b": true, "z": null,"ts" : "4"}"#, "4"),
            (r#"{"id": "ts", "ts": "5"}"#, "5"),
            (r#"  {"a\\": 1, "say \"ts": 0, "ts": "6"}"#, "6"),
            (r#"{"ts": "7", "text": "not \"ts\": \"0\""}"#, "7"),
        ] {
            assert_eq!(flat_ts(line.as_bytes()), Some(ts), "{line}");
        }
        // Left to serde: escapes in keys or in `ts`, nested values.
        for (line, ts) in [
            (r#"{"t\u0073": "7"}"#, "7"),
            (r#"{"ts": "\u0038"}"#, "8"),
            (r#"{"o": {"ts": "0"}, "ts": "9"}"#, "9"),
            (r#"{"ts": "10", "o": [1]}"#, "10"),
        ] {
            assert_eq!(flat_ts(line.as_bytes()), None, "{line}");
            assert_eq!(ts_of(line.as_bytes()), Some(Some(ts.into())), "{line}");
        }
        assert_eq!(ts_of(b" \t\r\n"), Some(None));
        assert_eq!(ts_of(b"not json\n"), None);
        assert_eq!(ts_of(br#"{"id": "x"}"#), None);
    }

    #[test]
    fn order_is_by_time_not_by_text() {
        let sorted = "{\"ts\": \"9.5\"}\n\n{\"ts\": \"10.0\"}\n{\"ts\": \"10.0001\"}\n";
        assert!(in_time_order(sorted.as_bytes()).unwrap());
        let unsorted = "{\"ts\": \"10.0\"}\n{\"ts\": \"9.5\"}\n";
        assert!(!in_time_order(unsorted.as_bytes()).unwrap());
    }
}
