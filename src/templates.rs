//! The agent's input (`templates/agent/`), and the text helpers every surface shares for text
//! from outside. How each surface renders its own messages lives in its connector
//! (`slack::blocks` for Block Kit).
//!
//! The agent's input is plain text: everything in it that came from outside is either quoted (every
//! line prefixed with `> `, after every kind of line break is made a `\n`) or, for short fields on a
//! line of the template's own, flattened to a single line, so nothing can pose as Chime's headings.

use handlebars::{handlebars_helper, Handlebars, JsonValue};
use serde::Serialize;

/// How long a field flattened onto a line of the agent's input may be.
const INLINE_CHARS: usize = 200;

pub struct Templates {
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
        let mut agent = Handlebars::new();
        agent.register_escape_fn(handlebars::no_escape);
        agent.register_helper("quote", Box::new(quote));
        agent.register_helper("inline", Box::new(inline));
        agent.register_template_string(
            "agent_input",
            include_str!("../templates/agent/input.md.hbs"),
        )?;
        Ok(Self { agent })
    }

    /// Renders the text an agent is given for one turn.
    pub fn agent_input(&self, view: &impl Serialize) -> anyhow::Result<String> {
        Ok(self.agent.render("agent_input", view)?)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
