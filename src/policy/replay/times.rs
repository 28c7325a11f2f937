//! Whether a JSONL file's messages are already in time order, found by reading only their `ts`
//! fields. Replay judges messages in time order; a file already in it (the common case: exports
//! and logs are written as messages come) is judged as it is read, without holding it.

use serde::Deserialize;
use std::borrow::Cow;
use std::io::BufRead;

/// A message's time in Unix milliseconds, as replay orders and judges it.
pub(super) fn at_ms(ts: &str) -> i64 {
    let secs: f64 = ts.parse().unwrap_or(0.0);
    (secs * 1000.0) as i64
}

/// Whether the non-blank lines' times never go back. A line whose `ts` cannot be read says no:
/// the full read then reports it before anything is written.
pub(super) fn in_time_order(mut r: impl BufRead) -> std::io::Result<bool> {
    let mut line = vec![];
    let mut last = i64::MIN;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(true);
        }
        let Some(ts) = ts_of(&line) else {
            return Ok(false);
        };
        let Some(ts) = ts else { continue };
        let at = at_ms(&ts);
        if at < last {
            return Ok(false);
        }
        last = at;
    }
}

/// The `ts` field of a line; Some(None) for a blank line, None when it cannot be read.
fn ts_of(line: &[u8]) -> Option<Option<Cow<'_, str>>> {
    if let Some(ts) = quick_ts(line) {
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

/// The first top-level `ts` string of a flat JSON object, found without a full parse. None
/// when the line is anything else (an escaped key or `ts`, a nested value, not an object):
/// serde reads those. A line that is not JSON at all may get a time here; the full read
/// refuses it later.
fn quick_ts(line: &[u8]) -> Option<&str> {
    let mut at = skip_ws(line, 0);
    (line.get(at) == Some(&b'{')).then_some(())?;
    at += 1;
    loop {
        at = skip_ws(line, at);
        let (key, end) = plain_string(line, at)?;
        at = skip_ws(line, end);
        (line.get(at) == Some(&b':')).then_some(())?;
        at = skip_ws(line, at + 1);
        if key == b"ts" {
            let (ts, _) = plain_string(line, at)?;
            return std::str::from_utf8(ts).ok();
        }
        at = match line.get(at)? {
            b'"' => skip_string(line, at)?,
            b'{' | b'[' => return None,
            _ => at + line[at..].iter().position(|b| matches!(b, b',' | b'}'))?,
        };
        at = skip_ws(line, at);
        match line.get(at)? {
            b',' => at += 1,
            _ => return None,
        }
    }
}

fn skip_ws(line: &[u8], mut at: usize) -> usize {
    while line.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
        at += 1;
    }
    at
}

/// A string without escapes at `at`: its contents and where it ends.
fn plain_string(line: &[u8], at: usize) -> Option<(&[u8], usize)> {
    (line.get(at) == Some(&b'"')).then_some(())?;
    let len = memchr::memchr2(b'"', b'\\', &line[at + 1..])?;
    (line[at + 1 + len] == b'"').then_some((&line[at + 1..at + 1 + len], at + len + 2))
}

/// Where the string at `at` ends, escapes and all.
fn skip_string(line: &[u8], at: usize) -> Option<usize> {
    let mut at = at + 1;
    loop {
        at += memchr::memchr2(b'"', b'\\', &line[at..])?;
        if line[at] == b'"' {
            return Some(at + 1);
        }
        at += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_read_finds_what_serde_finds() {
        for (line, ts) in [
            (r#"{"id": "a", "ts": "1.5", "text": "x"}"#, Some("1.5")),
            (r#"{"text": "say \"ts\": \"9\"", "ts":"2"}"#, Some("2")),
            (r#"{"n": 3, "b": true, "z": null,"ts" : "4"}"#, Some("4")),
            (r#"{"id": "ts", "ts": "5"}"#, Some("5")),
            (r#"  {"a\\": 1, "ts": "6"}"#, Some("6")),
        ] {
            assert_eq!(
                ts_of(line.as_bytes()),
                Some(ts.map(Cow::Borrowed)),
                "{line}"
            );
        }
        // Left to serde: escapes in keys or in `ts`, nested values.
        for line in [
            r#"{"t\u0073": "7"}"#,
            r#"{"ts": "\u0038"}"#,
            r#"{"o": {"ts": "0"}, "ts": "9"}"#,
        ] {
            assert_eq!(quick_ts(line.as_bytes()), None, "{line}");
            let t = ts_of(line.as_bytes()).unwrap().unwrap();
            assert!(matches!(&*t, "7" | "8" | "9"), "{line}: {t}");
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
