//! Block Kit's limits and Chime's markup rule, checked on a rendered card: shared by the template
//! tests and the end-to-end tests of hostile agent output.
#![allow(dead_code)]

use chime::slack::blocks::{Rendered, MESSAGE_CHARS};

/// Block Kit's limits, as Slack enforces them (../shared/PROTOCOLS.md), measured in UTF-16 code
/// units on the text Slack decodes; and no markup but Chime's own mentions of `mentions`.
pub fn check_card(r: &Rendered, mentions: &[&str]) -> Result<(), String> {
    let units = |s: &str| s.encode_utf16().count();
    let blocks = r.blocks.as_array().ok_or("blocks is not an array")?;
    if blocks.is_empty() || blocks.len() > 50 {
        return Err(format!("{} blocks", blocks.len()));
    }
    let size = units(&r.blocks.to_string());
    if size > MESSAGE_CHARS {
        return Err(format!("blocks JSON is {size} long (msg_blocks_too_long)"));
    }
    if r.text.trim().is_empty() || units(&r.text) > 3000 {
        return Err(format!("top-level text is {} long", units(&r.text)));
    }
    check_markup(&r.text, mentions)?;
    for b in blocks {
        let kind = b["type"].as_str().ok_or("a block without a type")?;
        if let Some(id) = b["block_id"].as_str() {
            if units(id) > 255 {
                return Err("block_id over 255".into());
            }
        }
        if kind == "section" {
            let t = b["text"]["text"].as_str().ok_or("a section without text")?;
            if t.trim().is_empty() || units(t) > 3000 {
                return Err(format!("section text is {} long: {t:?}", units(t)));
            }
            check_markup(t, mentions)?;
        }
        if kind == "plan" {
            // As slack-morphism types it (a title, 1 to 50 task cards with unique ids and known
            // statuses), and no markup in a step.
            serde_json::from_value::<slack_morphism::prelude::SlackPlanBlock>(b.clone())
                .map_err(|e| format!("a plan block Slack would refuse: {e}: {b}"))?;
            let tasks = b["tasks"].as_array().ok_or("a plan without tasks")?;
            let mut ids = std::collections::BTreeSet::new();
            if tasks.is_empty() || tasks.len() > 50 {
                return Err(format!("a plan of {} tasks", tasks.len()));
            }
            for t in tasks {
                let title = t["title"].as_str().unwrap_or_default();
                if title.trim().is_empty() || !ids.insert(t["task_id"].to_string()) {
                    return Err(format!(
                        "a plan task without a title or with a repeated id: {t}"
                    ));
                }
                check_markup(title, mentions)?;
            }
        }
        if kind == "context_actions" && b["elements"].as_array().is_none_or(|e| e.len() > 5) {
            return Err("context_actions needs 1 to 5 elements".into());
        }
        for e in b["elements"].as_array().into_iter().flatten() {
            match e["type"].as_str() {
                Some("mrkdwn") => {
                    let t = e["text"].as_str().ok_or("a context element without text")?;
                    if t.trim().is_empty() || units(t) > 3000 {
                        return Err(format!("context text is {} long", units(t)));
                    }
                    check_markup(t, mentions)?;
                }
                Some("button") => {
                    let v = e["value"].as_str().ok_or("a button without a value")?;
                    let label = e["text"]["text"].as_str().unwrap_or_default();
                    if units(v) > 2000 || label.is_empty() || units(label) > 75 {
                        return Err(format!("button {label:?} = {v:?}"));
                    }
                    if e["action_id"].as_str().map_or(0, units) > 255 {
                        return Err("action_id over 255".into());
                    }
                }
                // Only in a context_actions block: two buttons, each a plain_text label, a
                // value and an optional accessibility label of at most 75.
                Some("feedback_buttons") if kind == "context_actions" => {
                    for side in ["positive_button", "negative_button"] {
                        let button = &e[side];
                        let label = button["text"]["text"].as_str().unwrap_or_default();
                        let v = button["value"].as_str().unwrap_or_default();
                        let a11y = button["accessibility_label"].as_str().unwrap_or_default();
                        if button["text"]["type"] != "plain_text"
                            || label.is_empty()
                            || units(label) > 75
                            || v.is_empty()
                            || units(v) > 2000
                            || units(a11y) > 75
                        {
                            return Err(format!("feedback {side} {label:?} = {v:?}"));
                        }
                    }
                    if e["action_id"].as_str().map_or(0, units) > 255 {
                        return Err("action_id over 255".into());
                    }
                }
                other => return Err(format!("unexpected element {other:?} in a {kind} block")),
            }
        }
        let options = b["accessory"]["options"].as_array();
        if options.is_some_and(|o| o.is_empty() || o.len() > 100) {
            return Err("a select needs 1 to 100 options".into());
        }
        for o in options.into_iter().flatten() {
            let text = o["text"]["text"].as_str().unwrap_or_default();
            let value = o["value"].as_str().unwrap_or_default();
            if text.is_empty() || units(text) > 75 || value.is_empty() || units(value) > 150 {
                return Err(format!("option {text:?} = {value:?}"));
            }
        }
    }
    Ok(())
}

/// Every `<` opens one of Chime's own mentions, and every `&` is one of the three entities
/// escaping makes, so nothing from outside can ping (`<!channel>`, `<!here>`, `<!subteam^…>`,
/// `<@U…>`) or link (`<http…|…>`).
pub fn check_markup(text: &str, mentions: &[&str]) -> Result<(), String> {
    let mut rest = text;
    while let Some(at) = rest.find('<') {
        let tail = &rest[at..];
        let ok = mentions
            .iter()
            .any(|m| !m.is_empty() && tail.starts_with(&format!("<@{m}>")));
        if !ok {
            return Err(format!("live markup in {text:?} at {:?}", truncate(tail)));
        }
        rest = &tail[1..];
    }
    for (at, _) in text.match_indices('&') {
        let tail = &text[at..];
        if !["&amp;", "&lt;", "&gt;"]
            .iter()
            .any(|e| tail.starts_with(e))
        {
            return Err(format!("a bare & in {:?}", truncate(tail)));
        }
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}
