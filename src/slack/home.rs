//! The App Home tab: a person's [`Home`] as a Block Kit `home` view (`templates/slack/home.json.hbs`),
//! and the actions its buttons and menus send back.

use super::blocks::{fit, BlockKit};
use crate::event::Setting;
use crate::home::Home;
use crate::settings::{Muted, Verbosity};
use serde_json::{json, Value};

/// The quiet hours the menu offers, as `/chime quiet` takes them.
const QUIET_PRESETS: &[&str] = &["18-9", "19-8", "20-8", "22-7"];
/// Slack lets a home view hold 100 blocks; the page uses at most about 40.
const REQUEST_CHARS: usize = 150;

fn surface_name(s: &str) -> String {
    match s {
        "linear" => "Linear".into(),
        "github" => "GitHub".into(),
        "slack" => "Slack".into(),
        other => fit(other, 30),
    }
}

fn state_emoji(state: &str) -> &'static str {
    match state {
        "succeeded" => ":white_check_mark:",
        "failed" => ":x:",
        "cancelled" => ":black_square_for_stop:",
        "awaiting_repo" => ":question:",
        "queued" => ":hourglass_flowing_sand:",
        _ => ":gear:",
    }
}

fn option(text: &str, value: &str) -> Value {
    json!({ "text": text, "value": value })
}

/// The `home` view Slack's `views.publish` takes.
pub fn home_view(t: &BlockKit, home: &Home) -> anyhow::Result<Value> {
    let s = &home.settings;
    let (muted, is_muted) = match s.muted {
        Muted::No => ("on".to_string(), false),
        Muted::Forever => ("muted until you unmute them".to_string(), true),
        Muted::Until(ms) => (
            format!("muted until {}", crate::settings::utc_time(ms)),
            true,
        ),
    };
    let mut quiet_options = vec![option("None", "off")];
    for p in QUIET_PRESETS {
        if let Some(q) = crate::settings::QuietHours::parse_hours(p, 0) {
            let label = q.label();
            quiet_options.push(option(label.split(" (").next().unwrap_or(&label), p));
        }
    }
    let quiet_selected = match s.quiet {
        None => option("None", "off"),
        Some(q) => {
            let label = q.label();
            let o = option(label.split(" (").next().unwrap_or(&label), &q.short());
            if !quiet_options.contains(&o) {
                // Set with `/chime quiet` to hours the menu does not list: listed too.
                quiet_options.push(o.clone());
            }
            o
        }
    };
    let verbosity_selected = match s.verbosity {
        Verbosity::Milestones => option("Show milestones", "milestones"),
        Verbosity::Final => option("Final result only", "final"),
    };
    let sessions: Vec<Value> = home
        .sessions
        .iter()
        .map(|x| {
            json!({
                "emoji": state_emoji(&x.state),
                "request": fit(&crate::templates::one_line(&x.request, 400), REQUEST_CHARS),
                "state": x.state.replace('_', " "),
                "when": crate::settings::utc_time(x.updated_ms),
                "link": x.link.as_deref().filter(|l| l.starts_with("https://")),
            })
        })
        .collect();
    let view = json!({
        "notice": home.notice.as_deref().map(|n| fit(n, 500)),
        "sessions": sessions,
        "week": home.week,
        "muted": muted,
        "is_muted": is_muted,
        "quiet": s.quiet.map_or("none".to_string(), |q| q.label()),
        "quiet_options": quiet_options,
        "quiet_selected": quiet_selected,
        "verbosity": match s.verbosity {
            Verbosity::Milestones => "milestones as it reaches them",
            Verbosity::Final => "the final result only",
        },
        "verbosity_selected": verbosity_selected,
        "accounts": home.accounts.iter().map(|a| json!({
            "name": surface_name(&a.surface),
            "surface": a.surface,
            "user": fit(&a.user, 80),
        })).collect::<Vec<_>>(),
        "can_link": home.can_link.iter().map(|s| json!({
            "name": surface_name(s),
            "surface": s,
        })).collect::<Vec<_>>(),
    });
    let rendered = t.message("home", &view)?;
    Ok(json!({ "type": "home", "blocks": rendered.blocks }))
}

/// The setting a home action changes; None for actions that are not the home's.
pub fn setting_of(action_id: &str, value: &str) -> Option<Setting> {
    let known = |s: &str| matches!(s, "linear" | "github");
    match action_id {
        "chime_home_mute_1d" => Some(Setting::Mute { days: Some(1) }),
        "chime_home_mute_1w" => Some(Setting::Mute { days: Some(7) }),
        "chime_home_mute_forever" => Some(Setting::Mute { days: None }),
        "chime_home_unmute" => Some(Setting::Unmute),
        "chime_home_verbosity" => Some(Setting::Verbosity {
            verbosity: Verbosity::parse(value)?,
        }),
        "chime_home_quiet" if value == "off" => Some(Setting::QuietHours { hours: None }),
        "chime_home_quiet" => {
            crate::settings::QuietHours::parse_hours(value, 0)?;
            Some(Setting::QuietHours {
                hours: Some(value.to_string()),
            })
        }
        "chime_home_link" if known(value) => Some(Setting::Link {
            surface: value.into(),
        }),
        "chime_home_unlink" if known(value) => Some(Setting::Unlink {
            surface: value.into(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::{Account, HomeSession, PersonalWeek};
    use crate::settings::{QuietHours, Settings};

    fn home(request: &str, n: usize) -> Home {
        Home {
            user: crate::ids::UserId::new("U1"),
            sessions: (0..n)
                .map(|i| HomeSession {
                    request: request.to_string(),
                    state: if i % 2 == 0 {
                        "succeeded"
                    } else {
                        "awaiting_repo"
                    }
                    .into(),
                    link: Some(format!(
                        "https://slack.com/app_redirect?team=T1&channel=C{i}"
                    )),
                    updated_ms: 1_800_000_000_000,
                })
                .collect(),
            settings: Settings {
                verbosity: Verbosity::Final,
                quiet: QuietHours::parse_hours("21-6", -300),
                muted: Muted::Until(1_800_000_000_000),
            },
            accounts: vec![Account {
                surface: "linear".into(),
                user: request.to_string(),
            }],
            can_link: vec!["github".into()],
            week: PersonalWeek::default(),
            notice: Some(request.to_string()),
        }
    }

    /// Whatever people asked, the page is valid JSON that Slack's limits allow: hostile text is
    /// escaped and cut, a select's initial option is one of its options, and custom quiet hours
    /// (set with `/chime quiet`) are listed.
    #[test]
    fn hostile_requests_make_a_valid_page() {
        let t = BlockKit::new().unwrap();
        let hostile = "<!channel> *bold* \"quote\" \\ `tick` ```fence``` <https://evil.example|click> &amp; 🎉".repeat(40);
        let view = home_view(&t, &home(&hostile, 10)).unwrap();
        let text = view.to_string();
        assert_eq!(view["type"], "home");
        let blocks = view["blocks"].as_array().unwrap();
        assert!(blocks.len() <= 100, "{}", blocks.len());
        assert!(
            !text.contains("<!channel>") && !text.contains("<https://evil"),
            "{text}"
        );
        for b in blocks {
            if let Some(select) = b.get("accessory").filter(|a| a["type"] == "static_select") {
                let options = select["options"].as_array().unwrap();
                assert!(options.contains(&select["initial_option"]), "{select}");
            }
        }
        assert!(text.contains("21:00–06:00 (UTC-05:00)"), "{text}");
        assert!(text.contains("\"value\":\"21-6\""), "{text}");
        assert!(text.contains("chime_home_unmute") && !text.contains("chime_home_mute_1d"));
        // Each block's text stays within Block Kit's 3,000 characters.
        for b in blocks {
            if let Some(s) = b["text"]["text"].as_str() {
                assert!(s.chars().count() <= 3000, "{s}");
            }
        }
        let empty = home_view(&t, &home("x", 0)).unwrap().to_string();
        assert!(empty.contains("No sessions yet"), "{empty}");
    }
}
