//! Block Kit: how Chime's messages look in Slack (and in the playground, which imitates it).
//!
//! Message templates (`templates/slack/*.json.hbs`) produce Block Kit JSON. Their default escape
//! first neutralises Slack's control characters (`&`, `<`, `>`: so agent output can never ping
//! `<!channel>` or forge a link) and then escapes for a JSON string. Text from outside is cut here,
//! before rendering, measured as Slack will count it *after* that escaping (see [`slack_len`]), so
//! every message stays inside Block Kit's limits however many `<` or `&` it holds.

use crate::templates::normalize_text;
use handlebars::Handlebars;
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
const MESSAGES: &[(&str, &str)] = &[
    (
        "status",
        include_str!("../../templates/slack/status.json.hbs"),
    ),
    (
        "result",
        include_str!("../../templates/slack/result.json.hbs"),
    ),
    (
        "compare",
        include_str!("../../templates/slack/compare.json.hbs"),
    ),
    ("plan", include_str!("../../templates/slack/plan.json.hbs")),
    (
        "dry_run",
        include_str!("../../templates/slack/dry_run.json.hbs"),
    ),
    (
        "failed",
        include_str!("../../templates/slack/failed.json.hbs"),
    ),
    (
        "stopped",
        include_str!("../../templates/slack/stopped.json.hbs"),
    ),
    (
        "repo_picker",
        include_str!("../../templates/slack/repo_picker.json.hbs"),
    ),
    (
        "notice",
        include_str!("../../templates/slack/notice.json.hbs"),
    ),
    (
        "fallback",
        include_str!("../../templates/slack/fallback.json.hbs"),
    ),
    (
        "request",
        include_str!("../../templates/slack/request.json.hbs"),
    ),
    (
        "suggestion",
        include_str!("../../templates/slack/suggestion.json.hbs"),
    ),
    (
        "suggestion_answered",
        include_str!("../../templates/slack/suggestion_answered.json.hbs"),
    ),
    ("home", include_str!("../../templates/slack/home.json.hbs")),
];

/// A rendered chat message: fallback text plus Block Kit blocks.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct Rendered {
    pub text: String,
    pub blocks: Value,
}

/// The Block Kit message templates.
pub struct BlockKit {
    messages: Handlebars<'static>,
}

impl BlockKit {
    pub fn new() -> anyhow::Result<Self> {
        let mut messages = Handlebars::new();
        messages.set_strict_mode(true);
        messages.register_escape_fn(|s| json_escape(&slack_escape(s)));
        for (name, text) in MESSAGES {
            messages.register_template_string(name, *text)?;
        }
        Ok(Self { messages })
    }

    /// Renders a Block Kit message and checks it is valid JSON within Slack's limits.
    pub fn message(&self, name: &str, view: &impl Serialize) -> anyhow::Result<Rendered> {
        let json = self.messages.render(name, view)?;
        let mut rendered: Rendered = serde_json::from_str(&json)
            .map_err(|e| anyhow::anyhow!("template {name} produced invalid JSON: {e}"))?;
        rendered.text = cut_escaped(&rendered.text, FALLBACK_TEXT_CHARS);
        Ok(rendered)
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

/// Plain mrkdwn text (a digest) as a Block Kit message: one section per paragraph, each escaped
/// and cut to fit, at most 50 blocks (Slack's limit).
pub fn text_message(text: &str) -> Value {
    let blocks: Vec<Value> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .take(50)
        .map(|p| {
            serde_json::json!({
                "type": "section",
                "text": { "type": "mrkdwn", "text": slack_escape(&fit(p, SECTION_CHARS)) }
            })
        })
        .collect();
    let first = text.lines().next().unwrap_or_default();
    serde_json::json!({
        "text": slack_escape(&fit(first, FALLBACK_TEXT_CHARS)),
        "blocks": blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn agent_text_cannot_ping_or_break_json() {
        let t = BlockKit::new().unwrap();
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
