//! Renders every message Chime posts from the handlebars templates in `templates/`.
//!
//! Message templates produce Block Kit JSON. Their default escape first neutralises Slack's control
//! characters (`&`, `<`, `>`: so agent output can never ping `<!channel>` or forge a link) and then
//! escapes for a JSON string. Long text is cut into sections here, before rendering, so every
//! message stays inside Block Kit's limits.

use handlebars::{handlebars_helper, Handlebars};
use serde::Serialize;
use serde_json::Value;

/// Section text is limited to 3000 characters; escaping can grow text, so leave room.
pub const SECTION_CHARS: usize = 2800;
/// Slack rejects messages of roughly 13k characters of blocks (`msg_blocks_too_long`).
pub const MESSAGE_CHARS: usize = 11_000;

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
    (
        "final_fallback",
        include_str!("../templates/final_fallback.json.hbs"),
    ),
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

handlebars_helper!(quote: |s: str| quote_lines(s));

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
        rendered.text = truncate_chars(&rendered.text, 3000);
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

/// Prefixes every line with `> `, so quoted text can never pose as a heading of Chime's own.
pub fn quote_lines(s: &str) -> String {
    let trimmed = s.trim_end();
    if trimmed.is_empty() {
        return "> ".into();
    }
    trimmed
        .lines()
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

/// Cuts text into section-sized chunks, keeping the head and tail when it cannot all fit.
/// Returns the chunks and whether anything was left out.
pub fn chunk_for_blocks(s: &str, budget: usize) -> (Vec<String>, bool) {
    // Code fences inside would end Chime's own fence early.
    let s = s.replace("```", "ʼʼʼ");
    let chars: Vec<char> = s.chars().collect();
    let (text, truncated) = if chars.len() <= budget {
        (s.clone(), false)
    } else {
        let head = budget * 2 / 3;
        let tail = budget - head - 60;
        let omitted = chars.len() - head - tail;
        let mut t: String = chars[..head].iter().collect();
        t.push_str(&format!("\n… {omitted} characters left out …\n"));
        t.extend(chars[chars.len() - tail..].iter());
        (t, true)
    };
    // Chunks are measured as Slack will see them: after `&`, `<`, `>` become entities.
    let mut chunks = vec![];
    let mut current = String::new();
    let mut size = 0;
    for c in text.chars() {
        let w = match c {
            '&' => 5,
            '<' | '>' => 4,
            _ => 1,
        };
        if size + w > SECTION_CHARS {
            chunks.push(std::mem::take(&mut current));
            size = 0;
        }
        current.push(c);
        size += w;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
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
}
