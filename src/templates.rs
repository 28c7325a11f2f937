//! Renders every message Chime posts from the handlebars templates in `templates/`.
//!
//! Message templates produce Block Kit JSON. Their default escape first neutralises Slack's control
//! characters (`&`, `<`, `>`: so agent output can never ping `<!channel>` or forge a link) and then
//! escapes for a JSON string. Text from outside is cut here, before rendering, measured as Slack
//! will count it *after* that escaping (see [`slack_len`]), so every message stays inside Block
//! Kit's limits however many `<` or `&` it holds.
//!
//! The agent's input is plain text: everything in it that came from outside is either quoted (every
//! line prefixed with `> `, after every kind of line break is made a `\n`) or, for short fields on a
//! line of the template's own, flattened to a single line, so nothing can pose as Chime's headings.

use handlebars::{handlebars_helper, Handlebars, JsonValue};
use serde::Serialize;
use serde_json::Value;

/// Section text is limited to 3000 characters; text cut to this (after escaping) leaves room for
/// the template's own markup around it (a code fence, a label).
pub const SECTION_CHARS: usize = 2800;
/// Slack rejects messages of roughly 13k characters of blocks (`msg_blocks_too_long`); measured on
/// the blocks' JSON, in UTF-16 code units.
pub const MESSAGE_CHARS: usize = 11_000;
/// Slack's limit on a section's or a context element's text.
pub const TEXT_LIMIT: usize = 3000;
/// The message's top-level (notification) text is kept to this.
pub const FALLBACK_TEXT_CHARS: usize = 3000;
/// However small the budget for cut text gets, this much of it is kept (head and tail).
pub const MIN_TEXT_BUDGET: usize = 300;
/// How long a field flattened onto a line of the agent's input may be.
const INLINE_CHARS: usize = 200;

const MESSAGES: &[(&str, &str)] = &[
    ("status", include_str!("../templates/status.json.hbs")),
    ("result", include_str!("../templates/result.json.hbs")),
    ("dry_run", include_str!("../templates/dry_run.json.hbs")),
    ("failed", include_str!("../templates/failed.json.hbs")),
    ("stopped", include_str!("../templates/stopped.json.hbs")),
    (
        "repo_picker",
        include_str!("../templates/repo_picker.json.hbs"),
    ),
    ("notice", include_str!("../templates/notice.json.hbs")),
    ("fallback", include_str!("../templates/fallback.json.hbs")),
];

/// A rendered chat message: fallback text plus Block Kit blocks.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Rendered {
    pub text: String,
    pub blocks: Value,
}

pub struct Templates {
    messages: Handlebars<'static>,
    agent: Handlebars<'static>,
}

handlebars_helper!(quote: |v: Json| quote_lines(&field_text(v)));
handlebars_helper!(inline: |v: Json| one_line(&field_text(v), INLINE_CHARS));

/// A template field as text: strings as they are, nothing for null, anything else as JSON.
fn field_text(v: &JsonValue) -> String {
    match v {
        JsonValue::String(s) => s.clone(),
        JsonValue::Null => String::new(),
        other => other.to_string(),
    }
}

impl Templates {
    pub fn new() -> anyhow::Result<Self> {
        let mut messages = Handlebars::new();
        messages.set_strict_mode(true);
        messages.register_escape_fn(|s| json_escape(&slack_escape(s)));
        for (name, text) in MESSAGES {
            messages.register_template_string(name, *text)?;
        }
        let mut agent = Handlebars::new();
        agent.register_escape_fn(handlebars::no_escape);
        agent.register_helper("quote", Box::new(quote));
        agent.register_helper("inline", Box::new(inline));
        agent.register_template_string(
            "agent_input",
            include_str!("../templates/agent_input.md.hbs"),
        )?;
        Ok(Self { messages, agent })
    }

    /// Renders a Block Kit message and checks it is valid JSON within Slack's limits.
    pub fn message(&self, name: &str, view: &impl Serialize) -> anyhow::Result<Rendered> {
        let json = self.messages.render(name, view)?;
        let mut rendered: Rendered = serde_json::from_str(&json)
            .map_err(|e| anyhow::anyhow!("template {name} produced invalid JSON: {e}"))?;
        rendered.text = cut_escaped(&rendered.text, FALLBACK_TEXT_CHARS);
        Ok(rendered)
    }

    /// Renders the text an agent is given for one turn.
    pub fn agent_input(&self, view: &impl Serialize) -> anyhow::Result<String> {
        Ok(self.agent.render("agent_input", view)?)
    }
}

/// Slack's three control characters in mrkdwn; everything else is literal.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn json_escape(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap_or_default();
    quoted[1..quoted.len() - 1].to_string()
}

/// How long one character is once Slack sees it: entities for `&`, `<`, `>`, and UTF-16 code units
/// otherwise (an emoji outside the BMP counts 2). Whether Slack counts code points or UTF-16 units,
/// this is never less than its count.
fn slack_width(c: char) -> usize {
    match c {
        '&' => 5,
        '<' | '>' => 4,
        c => c.len_utf16(),
    }
}

/// How long `s` is once escaped for Slack, as Slack counts it (see [`slack_width`]).
pub fn slack_len(s: &str) -> usize {
    s.chars().map(slack_width).sum()
}

/// How long a JSON value is once serialised, in UTF-16 code units: what `msg_blocks_too_long` counts.
pub fn json_len(v: &Value) -> usize {
    v.to_string().encode_utf16().count()
}

/// Whether `c` ends a line for some reader: Rust's `lines()` knows only `\n`, but Python's
/// `splitlines`, Unicode and many terminals also break at these.
pub fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{1C}'
            ..='\u{1E}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Text from outside with every kind of line break made a `\n` (`\r\n` counts once) and every
/// other control character (C0 but tab, DEL, C1) dropped. Controls carry nothing a reader needs,
/// and in JSON each grows to six characters.
pub fn normalize_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        if is_line_break(c) {
            out.push('\n');
        } else if c == '\t' || !c.is_control() {
            out.push(c);
        }
    }
    out
}

/// `s` on one line (every line break or control a space), at most `max` characters.
pub fn one_line(s: &str, max: usize) -> String {
    let flat: String = normalize_text(s)
        .chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .collect();
    truncate_chars(flat.trim(), max)
}

/// Prefixes every line with `> `, so quoted text can never pose as a heading of Chime's own. Any
/// line break a reader might honour is a `\n` first, so each of them gets its prefix.
pub fn quote_lines(s: &str) -> String {
    let text = normalize_text(s);
    let trimmed = text.trim_end();
    if trimmed.is_empty() {
        return "> ".into();
    }
    trimmed
        .split('\n')
        .map(|l| format!("> {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    format!("{cut}…")
}

/// Text from outside, normalised and cut so that it is at most `max` long as Slack counts it after
/// escaping ([`slack_len`]), ending in `…` when it was cut.
pub fn fit(s: &str, max: usize) -> String {
    let s = normalize_text(s);
    if slack_len(&s) <= max {
        return s;
    }
    let room = max.saturating_sub(1);
    let mut used = 0;
    let mut out = String::new();
    for c in s.chars() {
        used += slack_width(c);
        if used > room {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

/// Cuts already-escaped text to `max` characters without splitting an entity such as `&amp;`.
fn cut_escaped(s: &str, max: usize) -> String {
    if s.encode_utf16().count() <= max {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        used += c.len_utf16();
        if used > max.saturating_sub(1) {
            break;
        }
        out.push(c);
    }
    if let Some(amp) = out.rfind('&') {
        if !out[amp..].contains(';') {
            out.truncate(amp);
        }
    }
    out.push('…');
    out
}

/// Cuts text into section-sized chunks whose escaped length ([`slack_len`]) adds up to at most
/// `budget` (never less than [`MIN_TEXT_BUDGET`]), keeping the head and tail when it cannot all fit.
/// Returns the chunks and whether anything was left out.
pub fn chunk_for_blocks(s: &str, budget: usize) -> (Vec<String>, bool) {
    // Code fences inside would end Chime's own fence early.
    let s = normalize_text(s.trim()).replace("```", "ʼʼʼ");
    let budget = budget.max(MIN_TEXT_BUDGET);
    let (text, truncated) = if slack_len(&s) <= budget {
        (s, false)
    } else {
        let chars: Vec<char> = s.chars().collect();
        // The marker's own length: "\n… " + up to 20 digits + " characters left out …\n".
        let room = budget.saturating_sub(50);
        let head_room = room * 2 / 3;
        let mut head = 0;
        let mut used = 0;
        while head < chars.len() && used + slack_width(chars[head]) <= head_room {
            used += slack_width(chars[head]);
            head += 1;
        }
        let mut tail = chars.len();
        while tail > head && used + slack_width(chars[tail - 1]) <= room {
            used += slack_width(chars[tail - 1]);
            tail -= 1;
        }
        let mut t: String = chars[..head].iter().collect();
        t.push_str(&format!("\n… {} characters left out …\n", tail - head));
        t.extend(chars[tail..].iter());
        (t, true)
    };
    let mut chunks = vec![];
    let mut current = String::new();
    let mut size = 0;
    for c in text.chars() {
        let w = slack_width(c);
        if size + w > SECTION_CHARS {
            // Break after the last line break when it is near the end, so lines stay whole.
            let rest = match current.rfind('\n') {
                Some(at) if slack_len(&current[at + 1..]) < SECTION_CHARS / 4 => {
                    current.split_off(at + 1)
                }
                _ => String::new(),
            };
            chunks.push(std::mem::replace(&mut current, rest));
            size = slack_len(&current);
        }
        current.push(c);
        size += w;
    }
    chunks.push(current);
    // Slack refuses a section without text.
    chunks.retain(|c| !c.trim().is_empty());
    (chunks, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_text_cannot_ping_or_break_json() {
        let t = Templates::new().unwrap();
        let r = t
            .message(
                "notice",
                &json!({ "text": "<!channel> \"quoted\" & <https://evil|click>" }),
            )
            .unwrap();
        let text = r.blocks[0]["text"]["text"].as_str().unwrap();
        assert!(!text.contains("<!channel>"));
        assert!(text.contains("&lt;!channel&gt;"));
        assert!(text.contains("\"quoted\""));
    }

    #[test]
    fn long_text_is_cut_to_fit() {
        let long = "x".repeat(50_000);
        let (chunks, truncated) = chunk_for_blocks(&long, MESSAGE_CHARS - 1000);
        assert!(truncated);
        assert!(chunks.iter().all(|c| c.chars().count() <= SECTION_CHARS));
        let total: usize = chunks.iter().map(|c| c.chars().count()).sum();
        assert!(total <= MESSAGE_CHARS);
    }

    #[test]
    fn quoting_prefixes_every_line() {
        assert_eq!(quote_lines("a\n## Heading\n"), "> a\n> ## Heading");
    }

    #[test]
    fn quoting_knows_every_line_break() {
        let quoted =
            quote_lines("a\r## b\r\nc\u{2028}d\u{2029}e\u{85}f\u{0B}g\u{0C}h\u{1E}i\u{1B}[31mj\tk");
        assert_eq!(
            quoted,
            "> a\n> ## b\n> c\n> d\n> e\n> f\n> g\n> h\n> i[31mj\tk"
        );
        assert_eq!(one_line("a\r\n## b\u{2028}c", 200), "a ## b c");
    }

    #[test]
    fn tiny_budgets_never_underflow() {
        for budget in [0, 1, 59, 60, 61, 100, 299, 300, 301, 500, 1000] {
            for text in [
                "&".repeat(20_000),
                "x".repeat(500),
                "\u{1F600}".repeat(3000),
            ] {
                let (chunks, _) = chunk_for_blocks(&text, budget);
                let total: usize = chunks.iter().map(|c| slack_len(c)).sum();
                assert!(total <= budget.max(MIN_TEXT_BUDGET), "{budget}: {total}");
                assert!(chunks.iter().all(|c| slack_len(c) <= SECTION_CHARS));
            }
        }
    }

    #[test]
    fn fit_measures_after_escaping() {
        let s = fit(&"<&>".repeat(1000), 100);
        assert!(slack_len(&s) <= 100 && s.ends_with('…'), "{s}");
        assert_eq!(fit("a\u{0}b", 10), "ab");
        assert_eq!(cut_escaped("x &amp; y", 5), "x …");
    }
}
