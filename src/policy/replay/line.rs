//! One output line: what serde writes for [`Output`](super::Output), written directly. Replay
//! writes a million of these; serde's flattened map and per-byte escaping were a sixth of its
//! time. Strings are escaped by serde_json whenever they need it at all, and the score is
//! formatted by it, so the bytes are the same.

use super::plain::plain_prefix;
use crate::policy::judge::Decision;

/// Appends `{"id":…,"decision":…,"action":…,"score":…,"reasons":[…]}` and a newline.
pub(super) fn write_line(out: &mut Vec<u8>, id: &str, d: &Decision) {
    out.extend_from_slice(b"{\"id\":");
    string(out, id);
    out.extend_from_slice(b",\"decision\":");
    string(out, d.decision);
    out.extend_from_slice(b",\"action\":");
    match &d.action {
        Some(a) => string(out, a),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"score\":");
    serde_json::to_writer(&mut *out, &d.score).expect("a Vec takes every write");
    out.extend_from_slice(b",\"reasons\":[");
    for (i, r) in d.reasons.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        string(out, r);
    }
    out.extend_from_slice(b"]}\n");
}

/// A JSON string. Only control characters, `"` and `\` are escaped by serde_json; a string
/// without them is written as it is.
fn string(out: &mut Vec<u8>, s: &str) {
    if plain_prefix(s.as_bytes()) == s.len() {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("a Vec takes every write");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::replay::Output;

    #[test]
    fn lines_are_what_serde_writes() {
        let reasons = |r: &[&str]| r.iter().map(|s| s.to_string().into()).collect();
        let quiet = |score, reasons| Decision {
            decision: "quiet",
            action: None,
            button: None,
            score,
            reasons,
        };
        for (id, d) in [
            ("m1", quiet(0.0, reasons(&["no action fits"]))),
            (
                "C1:1764072000.000100",
                Decision {
                    decision: "suggest",
                    action: Some("fix_ci".into()),
                    button: Some("Fix it".into()),
                    score: 0.7999999999999999,
                    reasons: reasons(&["a CI run failed", "on the main branch"]),
                },
            ),
            (
                "quote \" back \\ tab \t nl \n nul \0 é 😀 \u{7f}",
                quiet(-0.30000000000000004, reasons(&["say \"hi\"", "\u{1}", ""])),
            ),
            ("", quiet(f64::NAN, vec![])),
            ("x", quiet(-0.0, reasons(&["a"]))),
            ("y", quiet(1e300, reasons(&["b"]))),
        ] {
            let mut ours = vec![];
            write_line(&mut ours, id, &d);
            let mut serde = serde_json::to_vec(&Output { id, decision: &d }).unwrap();
            serde.push(b'\n');
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                String::from_utf8(serde).unwrap()
            );
        }
    }
}
