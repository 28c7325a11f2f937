//! Turns Slack's Events API and interactivity payloads into Chime's own [`Event`]s.
//!
//! Everything here is hostile input: fields are optional until checked, ids must look like Slack
//! ids, and anything Chime does not handle is ignored rather than refused, so Slack never counts
//! an unknown event as a failed delivery.

use crate::binding::Binding;
use crate::event::{Author, ButtonAction, ButtonClicked, ChannelMessage, Event, Mention};
use crate::ids::{ChannelId, TeamId, ThreadTs, UserId};
use serde::Deserialize;

/// What a verified request turns into.
#[derive(Debug, PartialEq)]
pub enum Inbound {
    UrlVerification(String),
    Event {
        delivery_id: String,
        team: TeamId,
        event: Box<Event>,
    },
    Ignored(&'static str),
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("body is not valid JSON: {0}")]
    Json(String),
    #[error("{0}")]
    Shape(&'static str),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
    challenge: Option<String>,
    team_id: Option<String>,
    event_id: Option<String>,
    event: Option<serde_json::Value>,
    #[serde(default)]
    authorizations: Vec<Authorization>,
}

#[derive(Deserialize)]
struct Authorization {
    user_id: Option<String>,
    #[serde(default)]
    is_bot: bool,
}

#[derive(Deserialize)]
struct MessageEvent {
    #[serde(rename = "type")]
    kind: Option<String>,
    subtype: Option<String>,
    bot_id: Option<String>,
    user: Option<String>,
    text: Option<String>,
    ts: Option<String>,
    thread_ts: Option<String>,
    channel: Option<String>,
    channel_type: Option<String>,
    user_team: Option<String>,
    source_team: Option<String>,
}

/// Parses an Events API body. `own_user` is the bot's user id when configured or learnt.
pub fn parse_event_body(body: &[u8], own_user: Option<&str>) -> Result<Inbound, ParseError> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    match env.kind.as_deref() {
        Some("url_verification") => {
            let c = env
                .challenge
                .ok_or(ParseError::Shape("url_verification without challenge"))?;
            if c.len() > 512 {
                return Err(ParseError::Shape("challenge is too long"));
            }
            Ok(Inbound::UrlVerification(c))
        }
        Some("event_callback") => parse_callback(env, own_user),
        Some("app_rate_limited") => {
            tracing::warn!("Slack reports app_rate_limited: events are being dropped by Slack");
            Ok(Inbound::Ignored("app_rate_limited"))
        }
        Some(_) => Ok(Inbound::Ignored("unknown envelope type")),
        None => Err(ParseError::Shape("missing type")),
    }
}

fn parse_callback(env: Envelope, own_user: Option<&str>) -> Result<Inbound, ParseError> {
    // Every callback must carry a sane event_id, though a mention is named by its message.
    let event_id = env
        .event_id
        .filter(|id| is_token(id, 128))
        .ok_or(ParseError::Shape("missing or invalid event_id"))?;
    let team = env
        .team_id
        .filter(|t| is_id(t))
        .ok_or(ParseError::Shape("missing or invalid team_id"))?;
    let raw = env
        .event
        .ok_or(ParseError::Shape("event_callback without event"))?;
    if !raw.is_object() {
        return Err(ParseError::Shape("event is not an object"));
    }
    // Unknown inner shapes are not errors: only the types Chime handles are read further.
    let kind = raw.get("type").and_then(|t| t.as_str()).unwrap_or_default();
    if kind == "app_home_opened" {
        return home_opened(&raw, team, event_id);
    }
    if kind == "agent_session_stopped" {
        return agent_session_stopped(&raw, team, event_id);
    }
    if kind == "assistant_thread_started" {
        return super::assistant::thread_started(raw, team, event_id);
    }
    if kind != "app_mention" && kind != "message" {
        return Ok(Inbound::Ignored("unhandled event type"));
    }
    let ev: MessageEvent = serde_json::from_value(raw)
        .map_err(|_| ParseError::Shape("event fields have the wrong types"))?;
    let own = own_user.map(str::to_string).or_else(|| {
        env.authorizations
            .iter()
            .find(|a| a.is_bot)
            .and_then(|a| a.user_id.clone())
    });
    let is_message = ev.kind.as_deref() == Some("message");
    let is_dm = is_message && ev.channel_type.as_deref() == Some("im");
    let mentions_us = own.as_deref().is_some_and(|id| {
        ev.text
            .as_deref()
            .unwrap_or_default()
            .contains(&format!("<@{id}"))
    });
    if ev.bot_id.is_some() {
        // Bot posts (ours included) never start work; another bot's post in a channel (CI,
        // alerting) may be judged by the relevance policy.
        return match (
            is_message && !is_dm,
            channel_message(&ev, &team, own.as_deref(), true),
        ) {
            (true, Some(inbound)) => Ok(inbound),
            _ => Ok(Inbound::Ignored("bot message")),
        };
    }
    // A message with a file, and a thread reply also sent to the channel, are requests like any
    // other; edits, joins, bot posts and other subtypes never start work.
    if !matches!(
        ev.subtype.as_deref(),
        None | Some("file_share") | Some("thread_broadcast")
    ) {
        return Ok(Inbound::Ignored("message subtype"));
    }
    if is_message && !is_dm {
        // A channel message that mentions Chime normally arrives as app_mention too, and only that
        // one is handled. One with a file or broadcast is also taken as a `message` in case its
        // app_mention does not come; both carry the same message, and the delivery id below is the
        // message's, so the second of the pair is a duplicate.
        if mentions_us && ev.subtype.is_none() {
            return Ok(Inbound::Ignored("a mention, answered through app_mention"));
        }
        if !mentions_us {
            // Not a request: the relevance policy may judge it (when suggestions are on).
            return Ok(channel_message(&ev, &team, own.as_deref(), false)
                .unwrap_or(Inbound::Ignored("message outside a DM")));
        }
    }
    let user = ev
        .user
        .filter(|u| is_id(u))
        .ok_or(ParseError::Shape("event without a valid user"))?;
    if own.as_deref() == Some(user.as_str()) {
        return Ok(Inbound::Ignored("own message"));
    }
    let channel = ev
        .channel
        .filter(|c| is_id(c))
        .ok_or(ParseError::Shape("event without a valid channel"))?;
    let ts = ev
        .ts
        .filter(|t| is_ts(t))
        .ok_or(ParseError::Shape("event without a valid ts"))?;
    let thread_ts = match ev.thread_ts {
        Some(t) if is_ts(&t) => t,
        Some(_) => return Err(ParseError::Shape("invalid thread_ts")),
        None => ts.clone(),
    };
    let home = ev.user_team.or(ev.source_team);
    let external = home.as_deref().is_some_and(|h| h != team);
    let message_key = format!("{team}/{channel}/{ts}");
    let text = strip_mention(ev.text.as_deref().unwrap_or_default(), own.as_deref());
    let binding = Binding::SlackThread {
        team: TeamId(team.clone()),
        channel: ChannelId(channel),
        thread: ThreadTs(thread_ts),
    };
    let event = Event::Mention(Mention {
        binding,
        message: ts,
        author: Author {
            user: UserId(user),
            external,
        },
        text,
    });
    // Named by the message, not the event: Slack's retries of one event, and the app_mention and
    // `message` events of one message, make one task.
    Ok(Inbound::Event {
        delivery_id: format!("msg:{message_key}"),
        team: TeamId(team),
        event: Box::new(event),
    })
}

/// Someone opened Chime's Home tab (not its Messages tab): their page is published again.
fn home_opened(
    raw: &serde_json::Value,
    team: String,
    event_id: String,
) -> Result<Inbound, ParseError> {
    if raw.get("tab").and_then(|t| t.as_str()) != Some("home") {
        return Ok(Inbound::Ignored("app home tab other than home"));
    }
    let user = raw
        .get("user")
        .and_then(|u| u.as_str())
        .filter(|u| is_id(u))
        .ok_or(ParseError::Shape("app_home_opened without a valid user"))?;
    let event = Event::HomeOpened(crate::event::HomeOpened {
        surface: crate::binding::Surface::Slack,
        workspace: TeamId(team.clone()),
        author: Author {
            user: UserId(user.to_string()),
            external: false,
        },
    });
    Ok(Inbound::Event {
        delivery_id: format!("home:{event_id}"),
        team: TeamId(team),
        event: Box::new(event),
    })
}

/// Someone pressed Slack's own stop button on Chime's agent session in a thread: the thread's
/// Stop, with the button's ownership rule (checked by the handler).
fn agent_session_stopped(
    raw: &serde_json::Value,
    team: String,
    event_id: String,
) -> Result<Inbound, ParseError> {
    let field = |k: &str, valid: fn(&str) -> bool| {
        raw.get(k)
            .and_then(|v| v.as_str())
            .filter(|v| valid(v))
            .map(str::to_string)
    };
    let (Some(channel), Some(user)) = (field("channel", is_id), field("user", is_id)) else {
        return Err(ParseError::Shape(
            "agent_session_stopped without a valid channel and user",
        ));
    };
    let Some(thread) = field("thread_ts", is_ts) else {
        // Chime's sessions are threads; a stop elsewhere names nothing of Chime's.
        return Ok(Inbound::Ignored("agent session stop outside a thread"));
    };
    let event = Event::StopRequested(crate::event::StopRequested {
        binding: Binding::SlackThread {
            team: TeamId(team.clone()),
            channel: ChannelId(channel),
            thread: ThreadTs(thread),
        },
        author: Author {
            user: UserId(user),
            external: false,
        },
    });
    Ok(Inbound::Event {
        delivery_id: format!("stop:{event_id}"),
        team: TeamId(team),
        event: Box::new(event),
    })
}

/// Removes Chime's own `<@U…>` mention; when the bot id is unknown, the leading mention.
pub fn strip_mention(text: &str, own: Option<&str>) -> String {
    let mut out = text.to_string();
    match own {
        Some(id) => {
            let re_plain = format!("<@{id}>");
            out = out.replace(&re_plain, "");
            // `<@U123|chime>` is the older form with a label.
            while let Some(start) = out.find(&format!("<@{id}|")) {
                match out[start..].find('>') {
                    Some(end) => out.replace_range(start..start + end + 1, ""),
                    None => break,
                }
            }
        }
        None => {
            let trimmed = out.trim_start();
            if trimmed.starts_with("<@") {
                if let Some(end) = trimmed.find('>') {
                    out = trimmed[end + 1..].to_string();
                }
            }
        }
    }
    out.trim().to_string()
}

#[derive(Deserialize)]
struct Interaction {
    #[serde(rename = "type")]
    kind: Option<String>,
    team: Option<IdObj>,
    user: Option<InteractionUser>,
    channel: Option<IdObj>,
    message: Option<InteractionMessage>,
    container: Option<Container>,
    #[serde(default)]
    actions: Vec<Action>,
}

#[derive(Deserialize)]
struct IdObj {
    id: Option<String>,
}

#[derive(Deserialize)]
struct InteractionUser {
    id: Option<String>,
    team_id: Option<String>,
}

#[derive(Deserialize)]
struct InteractionMessage {
    ts: Option<String>,
    thread_ts: Option<String>,
}

#[derive(Deserialize)]
struct Container {
    channel_id: Option<String>,
    message_ts: Option<String>,
    thread_ts: Option<String>,
}

#[derive(Deserialize)]
struct Action {
    action_id: Option<String>,
    value: Option<String>,
    selected_option: Option<SelectedOption>,
    action_ts: Option<String>,
}

#[derive(Deserialize)]
struct SelectedOption {
    value: Option<String>,
}

/// Parses an interactivity request body (`payload=<url-encoded JSON>`).
pub fn parse_interaction_body(body: &[u8]) -> Result<Inbound, ParseError> {
    let form: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| ParseError::Json(format!("form: {e}")))?;
    let payload = form
        .into_iter()
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v)
        .ok_or(ParseError::Shape("form has no payload field"))?;
    parse_interaction_json(payload.as_bytes())
}

/// Parses an interaction payload as JSON: the decoded `payload` field of an interactivity request,
/// or the `payload` of a Socket Mode `interactive` envelope (which is not form-encoded).
pub fn parse_interaction_json(payload: &[u8]) -> Result<Inbound, ParseError> {
    let i: Interaction =
        serde_json::from_slice(payload).map_err(|e| ParseError::Json(e.to_string()))?;
    if i.kind.as_deref() != Some("block_actions") {
        return Ok(Inbound::Ignored("unhandled interaction type"));
    }
    let team = i
        .team
        .and_then(|t| t.id)
        .filter(|t| is_id(t))
        .ok_or(ParseError::Shape("missing or invalid team.id"))?;
    let user = i.user.ok_or(ParseError::Shape("missing user"))?;
    let user_id = user
        .id
        .filter(|u| is_id(u))
        .ok_or(ParseError::Shape("missing or invalid user.id"))?;
    let Some(action) = i.actions.into_iter().next() else {
        return Err(ParseError::Shape("block_actions without actions"));
    };
    let action_id = action.action_id.unwrap_or_default();
    let value = action
        .value
        .or(action.selected_option.and_then(|o| o.value))
        .unwrap_or_default();
    let action_ts = action
        .action_ts
        .filter(|t| is_ts(t))
        .ok_or(ParseError::Shape("missing or invalid action_ts"));
    let external = user.team_id.as_deref().is_some_and(|t| t != team);
    if let Some(change) = super::home::setting_of(&action_id, &value) {
        // A setting on the person's own Home tab: it only ever changes the presser's settings.
        let event = Event::SettingChanged(crate::event::SettingChanged {
            surface: crate::binding::Surface::Slack,
            workspace: TeamId(team.clone()),
            author: Author {
                user: UserId(user_id.clone()),
                external,
            },
            change,
            from_home: true,
        });
        return Ok(Inbound::Event {
            delivery_id: format!("{}:{user_id}", action_ts?),
            team: TeamId(team),
            event: Box::new(event),
        });
    }
    let Some(parsed) = ButtonAction::from_parts(&action_id, &value) else {
        return Ok(Inbound::Ignored("not one of Chime's buttons"));
    };
    let action_ts = action_ts?;
    let container = i.container;
    let channel = i
        .channel
        .and_then(|c| c.id)
        .or_else(|| container.as_ref().and_then(|c| c.channel_id.clone()))
        .filter(|c| is_id(c));
    let root = i
        .message
        .and_then(|m| m.thread_ts.or(m.ts))
        .or_else(|| container.and_then(|c| c.thread_ts.or(c.message_ts)))
        .filter(|t| is_ts(t));
    let binding = match (channel, root) {
        (Some(c), Some(ts)) => Some(Binding::SlackThread {
            team: TeamId(team.clone()),
            channel: ChannelId(c),
            thread: ThreadTs(ts),
        }),
        _ => None,
    };
    let event = Event::ButtonClicked(ButtonClicked {
        binding,
        author: Author {
            user: UserId(user_id.clone()),
            external,
        },
        action: parsed,
    });
    // A click has no event id; its action_ts and clicker identify it across Slack's retries.
    Ok(Inbound::Event {
        delivery_id: format!("{action_ts}:{user_id}"),
        team: TeamId(team),
        event: Box::new(event),
    })
}

/// What `/chime …` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlashCommand {
    Help,
    /// No suggestions on this person's messages until then (None: for good).
    Mute {
        until_ms: Option<i64>,
    },
    Unmute,
    /// `/chime link CODE`: link this Slack account to the one the code was made for.
    Link(String),
    /// `/chime settings`: show this person's settings.
    Settings,
    /// `/chime ide-token`: mint a token for this person's editor (in a DM only).
    IdeToken,
    /// `/chime quiet 18-9` or `/chime quiet off`.
    Quiet(Option<String>),
    /// `/chime progress milestones|final`.
    Progress(crate::settings::Verbosity),
    /// `/chime <request>`.
    Request(String),
}

/// A signed slash command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub team: TeamId,
    pub user: UserId,
    pub channel: ChannelId,
    /// Names this invocation for the inbox (Slack's `trigger_id`).
    pub delivery_id: String,
    pub command: SlashCommand,
}

/// Parses a slash command's form body (over HTTP). `now_ms` dates a timed mute.
pub fn parse_command_body(body: &[u8], now_ms: i64) -> Result<Command, ParseError> {
    let form: Vec<(String, String)> =
        serde_urlencoded::from_bytes(body).map_err(|e| ParseError::Json(format!("form: {e}")))?;
    parse_command_fields(&form, now_ms)
}

/// Parses a slash command's payload as Socket Mode delivers it: the same fields, as a JSON object.
pub fn parse_command_json(payload: &[u8], now_ms: i64) -> Result<Command, ParseError> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(payload).map_err(|e| ParseError::Json(e.to_string()))?;
    let form: Vec<(String, String)> = map
        .into_iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k, s.to_string())))
        .collect();
    parse_command_fields(&form, now_ms)
}

/// What to do with a slash command: answer at once, or store an event first and then confirm.
pub enum CommandPlan {
    Answer(String),
    /// Answer with the person's settings, read from the store.
    ShowSettings {
        user: UserId,
    },
    /// Answer with a new IDE token for the person (shown once, only to them).
    MintIdeToken {
        team: TeamId,
        user: UserId,
        channel: ChannelId,
        /// The command's own id: a replayed command mints nothing.
        request: String,
    },
    Store {
        inbound: Inbound,
        confirm: String,
    },
}

pub const COMMAND_HELP: &str = "*Chime* offers to hand work to a coding agent when it could clearly help, and stays quiet otherwise.\n\
• `/chime <request>`: hand work to a coding agent; Chime opens a thread for it here\n\
• `/chime mute [1d|1w|forever]`: no suggestions on your messages for that long (a day by default)\n\
• `/chime unmute`: suggestions again\n\
• `/chime link CODE`: link your Slack account to your Linear account (Chime gives you the code in Linear)\n\
• `/chime settings`: your settings (also on Chime's Home tab)\n\
• `/chime ide-token`: a token for Chime's editor extension (in your DM with Chime; shown once)\n\
• `/chime quiet 18-9` or `/chime quiet off`: no suggestions to you in those hours (your time zone)\n\
• `/chime progress milestones|final`: follow a run's milestones, or see only its result\n\
• `/chime help`: this\n\
Or mention @chime in a thread.";

/// Turns a parsed (or refused) slash command into its plan; a mistake the person can fix is
/// answered, not refused.
pub fn plan_command(
    parsed: Result<Command, ParseError>,
    now_ms: i64,
) -> Result<CommandPlan, ParseError> {
    let cmd = match parsed {
        Ok(c) => c,
        Err(ParseError::Shape(why)) if why.starts_with("mute takes") => {
            return Ok(CommandPlan::Answer(format!(
                "Sorry: {why}. For example `/chime mute 1w`."
            )));
        }
        Err(ParseError::Shape(why))
            if why.starts_with("quiet takes") || why.starts_with("progress takes") =>
        {
            return Ok(CommandPlan::Answer(format!("Sorry: {why}.")));
        }
        Err(e) => return Err(e),
    };
    let author = Author {
        user: cmd.user.clone(),
        external: false,
    };
    let (event, confirm) = match cmd.command {
        SlashCommand::Help => return Ok(CommandPlan::Answer(COMMAND_HELP.into())),
        SlashCommand::Settings => return Ok(CommandPlan::ShowSettings { user: cmd.user }),
        SlashCommand::IdeToken => {
            return Ok(CommandPlan::MintIdeToken {
                team: cmd.team,
                user: cmd.user,
                channel: cmd.channel,
                request: cmd.delivery_id,
            })
        }
        SlashCommand::Quiet(hours) => {
            let confirm = match &hours {
                None => "No quiet hours: Chime may suggest to you at any time.".to_string(),
                Some(h) => format!("Quiet hours {h} (your time zone): no suggestions to you in them."),
            };
            let change = crate::event::Setting::QuietHours { hours };
            (setting(&cmd.team, author, change), confirm)
        }
        SlashCommand::Progress(verbosity) => {
            let confirm = match verbosity {
                crate::settings::Verbosity::Final => "From now on you see only the result of a run, no milestones.",
                crate::settings::Verbosity::Milestones => "From now on a run's status follows its milestones.",
            };
            let change = crate::event::Setting::Verbosity { verbosity };
            (setting(&cmd.team, author, change), confirm.to_string())
        }
        SlashCommand::Request(text) => (
            Event::Request(crate::event::Request {
                place: crate::binding::Place::Slack {
                    team: cmd.team.clone(),
                    channel: cmd.channel.clone(),
                },
                author,
                text,
            }),
            "Got it: I'm starting a thread for this here (or in our direct messages if I cannot post here).".to_string(),
        ),
        SlashCommand::Mute { until_ms } => {
            let confirm = match until_ms {
                None => "Muted: no suggestions on your messages until you `/chime unmute`.".to_string(),
                Some(t) => format!(
                    "Muted: no suggestions on your messages for {}.",
                    if t - now_ms > 2 * 86_400_000 { "a week" } else { "a day" }
                ),
            };
            let mute = crate::event::MuteSuggestions {
                surface: crate::binding::Surface::Slack,
                author,
                until_ms,
                unmute: false,
            };
            (Event::MuteSuggestions(mute), confirm)
        }
        SlashCommand::Link(code) => (
            Event::LinkAccount(crate::event::LinkAccount {
                surface: crate::binding::Surface::Slack,
                author,
                code,
            }),
            "Linking your accounts. If the code was wrong or expired, nothing changes: ask Chime in Linear again for a new one.".to_string(),
        ),
        SlashCommand::Unmute => {
            let mute = crate::event::MuteSuggestions {
                surface: crate::binding::Surface::Slack,
                author,
                until_ms: None,
                unmute: true,
            };
            (
                Event::MuteSuggestions(mute),
                "Unmuted: Chime may suggest on your messages again.".to_string(),
            )
        }
    };
    Ok(CommandPlan::Store {
        inbound: Inbound::Event {
            delivery_id: cmd.delivery_id,
            team: cmd.team,
            event: Box::new(event),
        },
        confirm,
    })
}

fn setting(team: &TeamId, author: Author, change: crate::event::Setting) -> Event {
    Event::SettingChanged(crate::event::SettingChanged {
        surface: crate::binding::Surface::Slack,
        workspace: team.clone(),
        author,
        change,
        from_home: false,
    })
}

fn parse_command_fields(form: &[(String, String)], now_ms: i64) -> Result<Command, ParseError> {
    let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let id = |k: &'static str| {
        field(k)
            .filter(|v| is_id(v))
            .map(str::to_string)
            .ok_or(ParseError::Shape(k))
    };
    let (team, user, channel) = (id("team_id")?, id("user_id")?, id("channel_id")?);
    let trigger = field("trigger_id")
        .filter(|t| {
            !t.is_empty()
                && t.len() <= 100
                && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        })
        .ok_or(ParseError::Shape("trigger_id"))?;
    let text = field("text").unwrap_or_default().trim();
    let mut words = text.split_whitespace();
    let command = match (
        words.next().map(str::to_ascii_lowercase).as_deref(),
        words.next(),
    ) {
        (None | Some("help"), _) => SlashCommand::Help,
        (Some("unmute"), None) => SlashCommand::Unmute,
        (Some("settings"), None) => SlashCommand::Settings,
        (Some("ide-token"), None) => SlashCommand::IdeToken,
        (Some("quiet"), arg) if words.next().is_none() => match arg {
            Some(a) if a.eq_ignore_ascii_case("off") => SlashCommand::Quiet(None),
            Some(a) if crate::settings::QuietHours::parse_hours(a, 0).is_some() => {
                SlashCommand::Quiet(Some(a.to_string()))
            }
            _ => {
                return Err(ParseError::Shape(
                    "quiet takes whole hours from-to, like `/chime quiet 18-9`, or `off`",
                ))
            }
        },
        (Some("progress"), arg) if words.next().is_none() => {
            match arg
                .map(str::to_ascii_lowercase)
                .as_deref()
                .and_then(crate::settings::Verbosity::parse)
            {
                Some(v) => SlashCommand::Progress(v),
                None => {
                    return Err(ParseError::Shape(
                        "progress takes `milestones` or `final`, like `/chime progress final`",
                    ))
                }
            }
        }
        (Some("link"), Some(code))
            if words.next().is_none()
                && code.len() == 10
                && code.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            SlashCommand::Link(code.to_ascii_uppercase())
        }
        (Some("mute"), period) if words.next().is_none() => {
            const DAY: i64 = 86_400_000;
            let until_ms = match period.map(str::to_ascii_lowercase).as_deref() {
                None | Some("1d") => Some(now_ms + DAY),
                Some("1w") => Some(now_ms + 7 * DAY),
                Some("forever") => None,
                Some(_) => return Err(ParseError::Shape("mute takes 1d, 1w or forever")),
            };
            SlashCommand::Mute { until_ms }
        }
        _ => SlashCommand::Request(text.chars().take(4000).collect()),
    };
    Ok(Command {
        team: TeamId(team),
        user: UserId(user),
        channel: ChannelId(channel),
        delivery_id: format!("cmd:{trigger}"),
        command,
    })
}

/// A channel message that does not ask for Chime, for the relevance policy. None when it lacks a
/// valid author, channel or ts, or is Chime's own. Its delivery id differs from a mention's, so
/// the `message` and `app_mention` events of one message never shadow each other.
fn channel_message(
    ev: &MessageEvent,
    team: &str,
    own: Option<&str>,
    is_bot: bool,
) -> Option<Inbound> {
    let author = ev
        .user
        .clone()
        .filter(|u| is_id(u))
        .or_else(|| ev.bot_id.clone().filter(|b| is_id(b)))?;
    if own == Some(author.as_str()) {
        return None;
    }
    let channel = ev.channel.clone().filter(|c| is_id(c))?;
    let ts = ev.ts.clone().filter(|t| is_ts(t))?;
    let thread = match &ev.thread_ts {
        Some(t) if is_ts(t) => t.clone(),
        Some(_) => return None,
        None => ts.clone(),
    };
    let at_ms = ts
        .split('.')
        .next()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(0)
        .saturating_mul(1000);
    let home = ev.user_team.as_deref().or(ev.source_team.as_deref());
    let event = Event::Message(ChannelMessage {
        binding: Binding::SlackThread {
            team: TeamId(team.to_string()),
            channel: ChannelId(channel.clone()),
            thread: ThreadTs(thread.clone()),
        },
        top_level: thread == ts,
        message: ts.clone(),
        author: Author {
            user: UserId(author),
            external: home.is_some_and(|h| h != team),
        },
        author_is_bot: is_bot,
        place_name: String::new(),
        at_ms,
        text: ev.text.clone().unwrap_or_default(),
    });
    Some(Inbound::Event {
        delivery_id: format!("chat:{team}/{channel}/{ts}"),
        team: TeamId(team.to_string()),
        event: Box::new(event),
    })
}

/// Slack ids: short, upper-case letters and digits.
pub fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Slack timestamps: digits with one dot.
pub fn is_ts(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.chars().filter(|c| *c == '.').count() <= 1
}

fn is_token(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn mention(extra: serde_json::Value) -> Vec<u8> {
        let mut ev = json!({
            "type": "app_mention", "user": "U1", "text": "<@UBOT> fix it", "ts": "1700000000.000100",
            "channel": "C1", "event_ts": "1700000000.000100"
        });
        ev.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::to_vec(&json!({
            "type": "event_callback", "team_id": "T1", "event_id": "Ev1", "event": ev,
            "authorizations": [{ "user_id": "UBOT", "is_bot": true, "team_id": "T1" }]
        }))
        .unwrap()
    }

    #[test]
    fn a_mention_becomes_an_event() {
        let Inbound::Event {
            delivery_id, event, ..
        } = parse_event_body(&mention(json!({})), None).unwrap()
        else {
            panic!()
        };
        assert_eq!(delivery_id, "msg:T1/C1/1700000000.000100");
        let Event::Mention(m) = *event else { panic!() };
        assert_eq!(m.text, "fix it");
        assert_eq!(m.binding.to_string(), "slack:T1/C1/1700000000.000100");
        assert!(!m.author.external);
    }

    #[test]
    fn bots_self_and_subtypes_are_ignored() {
        for extra in [
            json!({"bot_id": "B1"}),
            json!({"subtype": "bot_message"}),
            json!({"user": "UBOT"}),
        ] {
            assert!(matches!(
                parse_event_body(&mention(extra), None).unwrap(),
                Inbound::Ignored(_)
            ));
        }
    }

    #[test]
    fn slack_connect_users_are_marked_external() {
        let Inbound::Event { event, .. } =
            parse_event_body(&mention(json!({"user_team": "T9"})), None).unwrap()
        else {
            panic!()
        };
        let Event::Mention(m) = *event else { panic!() };
        assert!(m.author.external);
    }

    #[test]
    fn unknown_types_are_ignored_and_garbage_refused() {
        let body = json!({"type":"event_callback","team_id":"T1","event_id":"Ev2","event":{"type":"reaction_added"}});
        assert!(matches!(
            parse_event_body(body.to_string().as_bytes(), None).unwrap(),
            Inbound::Ignored(_)
        ));
        assert!(parse_event_body(b"{not json", None).is_err());
        assert!(parse_event_body(b"[]", None).is_err());
    }

    #[test]
    fn stop_button_click_is_parsed() {
        let payload = json!({
            "type": "block_actions", "team": {"id": "T1"}, "user": {"id": "U1", "team_id": "T1"},
            "channel": {"id": "C1"}, "message": {"ts": "1700000001.000200", "thread_ts": "1700000000.000100"},
            "actions": [{"action_id": "chime_stop", "value": "abc123", "action_ts": "1700000002.1"}]
        });
        let body = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let Inbound::Event { event, .. } = parse_interaction_body(body.as_bytes()).unwrap() else {
            panic!()
        };
        let Event::ButtonClicked(b) = *event else {
            panic!()
        };
        assert!(b
            .binding
            .unwrap()
            .to_string()
            .ends_with("/1700000000.000100"));
        assert!(matches!(b.action, ButtonAction::Stop { .. }));
    }

    #[test]
    fn form_and_json_interactions_parse_alike() {
        let payload = json!({
            "type": "block_actions", "team": {"id": "T1"}, "user": {"id": "U1", "team_id": "T9"},
            "container": {"type": "message", "channel_id": "C1", "message_ts": "1700000001.000200"},
            "actions": [{"action_id": "chime_retry", "value": "abc123", "action_ts": "1700000002.1"}]
        });
        let form = serde_urlencoded::to_string([("payload", payload.to_string())]).unwrap();
        let from_form = parse_interaction_body(form.as_bytes()).unwrap();
        let from_json = parse_interaction_json(payload.to_string().as_bytes()).unwrap();
        assert_eq!(from_form, from_json);
        let Inbound::Event { event, .. } = from_json else {
            panic!()
        };
        let Event::ButtonClicked(b) = *event else {
            panic!()
        };
        assert!(b.author.external);
        assert!(b
            .binding
            .unwrap()
            .to_string()
            .ends_with("/1700000001.000200"));
        // A form-encoded body is not JSON, and a JSON body has no form field.
        assert!(parse_interaction_json(form.as_bytes()).is_err());
        assert!(parse_interaction_body(payload.to_string().as_bytes()).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_event_body(&body, None);
            let _ = parse_interaction_body(&body);
        }

        #[test]
        fn arbitrary_json_never_panics(v in arb_json()) {
            let body = serde_json::to_vec(&v).unwrap();
            let _ = parse_event_body(&body, Some("UBOT"));
            let wrapped = json!({"type": "event_callback", "team_id": "T1", "event_id": "E1", "event": v});
            let _ = parse_event_body(wrapped.to_string().as_bytes(), None);
            let form = serde_urlencoded::to_string([("payload", v.to_string())]).unwrap();
            let _ = parse_interaction_body(form.as_bytes());
            let _ = parse_interaction_json(&body);
        }
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,40}".prop_map(serde_json::Value::from),
            prop_oneof![
                Just("app_mention"),
                Just("message"),
                Just("event_callback"),
                Just("block_actions"),
                Just("im")
            ]
            .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("type".to_string()),
                        Just("event".to_string()),
                        Just("user".to_string()),
                        Just("channel".to_string()),
                        Just("ts".to_string()),
                        Just("actions".to_string()),
                        Just("team".to_string()),
                        Just("id".to_string()),
                        "[a-z_]{1,10}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn slash_commands_parse_and_hostile_ones_are_refused() {
        let body = |text: &str| {
            serde_urlencoded::to_string([
                ("team_id", "T1"),
                ("user_id", "U1"),
                ("channel_id", "C1"),
                ("trigger_id", "123.456"),
                ("command", "/chime"),
                ("text", text),
            ])
            .unwrap()
        };
        let now = 1_000;
        let cmd = |t: &str| parse_command_body(body(t).as_bytes(), now).map(|c| c.command);
        assert_eq!(cmd("").unwrap(), SlashCommand::Help);
        assert_eq!(cmd("help").unwrap(), SlashCommand::Help);
        assert_eq!(
            cmd("mute").unwrap(),
            SlashCommand::Mute {
                until_ms: Some(now + 86_400_000)
            }
        );
        assert_eq!(
            cmd("mute 1w").unwrap(),
            SlashCommand::Mute {
                until_ms: Some(now + 7 * 86_400_000)
            }
        );
        assert_eq!(
            cmd("MUTE forever").unwrap(),
            SlashCommand::Mute { until_ms: None }
        );
        assert_eq!(cmd("unmute").unwrap(), SlashCommand::Unmute);
        assert!(cmd("mute 1y").is_err());
        assert_eq!(
            cmd("fix the flaky test").unwrap(),
            SlashCommand::Request("fix the flaky test".into())
        );
        assert_eq!(
            parse_command_body(body("x").as_bytes(), now)
                .unwrap()
                .delivery_id,
            "cmd:123.456"
        );
        for bad in [
            "team_id=T1&user_id=U1&channel_id=C1",
            "team_id=T%2F1&user_id=U1&channel_id=C1&trigger_id=1",
            "user_id=U1&channel_id=C1&trigger_id=1",
            "team_id=T1&user_id=U1&channel_id=C1&trigger_id=a%2Fb",
            "%%%",
        ] {
            assert!(parse_command_body(bad.as_bytes(), now).is_err(), "{bad}");
        }
    }

    /// `/chime settings`, `quiet` and `progress`: the forms the help names parse; anything else
    /// is refused with a reason the person sees, never stored as a request.
    #[test]
    fn settings_commands_parse_and_hostile_ones_are_answered() {
        use crate::settings::Verbosity;
        let now = 1_800_000_000_000;
        let body = |t: &str| {
            serde_urlencoded::to_string([
                ("team_id", "T1"),
                ("user_id", "U1"),
                ("channel_id", "C1"),
                ("trigger_id", "1.2"),
                ("text", t),
            ])
            .unwrap()
        };
        let cmd = |t: &str| parse_command_body(body(t).as_bytes(), now).map(|c| c.command);
        assert_eq!(cmd("settings").unwrap(), SlashCommand::Settings);
        assert_eq!(cmd("ide-token").unwrap(), SlashCommand::IdeToken);
        assert_eq!(cmd("IDE-TOKEN").unwrap(), SlashCommand::IdeToken);
        // With more words it is a request like any other, never a token.
        assert!(matches!(
            cmd("ide-token for UOTHER").unwrap(),
            SlashCommand::Request(_)
        ));
        assert_eq!(cmd("quiet off").unwrap(), SlashCommand::Quiet(None));
        assert_eq!(cmd("QUIET OFF").unwrap(), SlashCommand::Quiet(None));
        assert_eq!(
            cmd("quiet 18-9").unwrap(),
            SlashCommand::Quiet(Some("18-9".into()))
        );
        assert_eq!(
            cmd("progress final").unwrap(),
            SlashCommand::Progress(Verbosity::Final)
        );
        assert_eq!(
            cmd("progress Milestones").unwrap(),
            SlashCommand::Progress(Verbosity::Milestones)
        );
        for bad in [
            "quiet",
            "quiet 18-30",
            "quiet 9-9",
            "quiet x-y",
            "progress",
            "progress loud",
        ] {
            let plan = plan_command(parse_command_body(body(bad).as_bytes(), now), now);
            match plan {
                Ok(CommandPlan::Answer(text)) => {
                    assert!(text.starts_with("Sorry"), "{bad}: {text}")
                }
                _ => panic!("{bad} was not answered with a reason"),
            }
        }
        // More words than the setting takes: a request, as any other text.
        assert!(matches!(
            cmd("quiet 18-9 please").unwrap(),
            SlashCommand::Request(_)
        ));
        match plan_command(parse_command_body(body("settings").as_bytes(), now), now) {
            Ok(CommandPlan::ShowSettings { user }) => assert_eq!(user.as_str(), "U1"),
            _ => panic!("settings is answered from the store"),
        }
    }

    /// `app_home_opened` for the Home tab is the person's page; the Messages tab, and a
    /// payload without a valid user, are not.
    #[test]
    fn app_home_opened_and_home_actions() {
        let env = |ev: serde_json::Value| {
            json!({ "type": "event_callback", "team_id": "T1", "event_id": "Ev1", "event": ev })
                .to_string()
        };
        let opened = env(json!({ "type": "app_home_opened", "user": "U1", "tab": "home" }));
        match parse_event_body(opened.as_bytes(), Some("UBOT")).unwrap() {
            Inbound::Event {
                delivery_id, event, ..
            } => {
                assert_eq!(delivery_id, "home:Ev1");
                assert!(
                    matches!(*event, Event::HomeOpened(ref h) if h.author.user.as_str() == "U1")
                );
            }
            other => panic!("{other:?}"),
        }
        let stopped = env(
            json!({ "type": "agent_session_stopped", "user": "U1", "channel": "C1",
            "thread_ts": "1782234671.392669", "streaming_message_ts": [], "event_ts": "1783536983.783769" }),
        );
        match parse_event_body(stopped.as_bytes(), Some("UBOT")).unwrap() {
            Inbound::Event {
                delivery_id, event, ..
            } => {
                assert_eq!(delivery_id, "stop:Ev1");
                match *event {
                    Event::StopRequested(s) => {
                        assert_eq!(s.binding.to_string(), "slack:T1/C1/1782234671.392669");
                        assert_eq!(s.author.user.as_str(), "U1");
                    }
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        }
        let unthreaded =
            env(json!({ "type": "agent_session_stopped", "user": "U1", "channel": "C1" }));
        assert!(matches!(
            parse_event_body(unthreaded.as_bytes(), None).unwrap(),
            Inbound::Ignored(_)
        ));
        for bad in [
            json!({ "type": "agent_session_stopped", "channel": "C1", "thread_ts": "1.2" }),
            json!({ "type": "agent_session_stopped", "user": "U1>", "channel": "C1", "thread_ts": "1.2" }),
            json!({ "type": "agent_session_stopped", "user": "U1", "channel": 5, "thread_ts": "1.2" }),
        ] {
            assert!(
                parse_event_body(env(bad.clone()).as_bytes(), None).is_err(),
                "{bad}"
            );
        }
        let messages = env(json!({ "type": "app_home_opened", "user": "U1", "tab": "messages" }));
        assert!(matches!(
            parse_event_body(messages.as_bytes(), None).unwrap(),
            Inbound::Ignored(_)
        ));
        for bad in [
            json!({ "type": "app_home_opened", "tab": "home" }),
            json!({ "type": "app_home_opened", "tab": "home", "user": "U1>x" }),
            json!({ "type": "app_home_opened", "tab": "home", "user": 7 }),
        ] {
            assert!(
                parse_event_body(env(bad.clone()).as_bytes(), None).is_err(),
                "{bad}"
            );
        }
        // A press on the Home tab changes the presser's own setting.
        let press = |id: &str, value: &str| {
            json!({ "type": "block_actions", "team": { "id": "T1" }, "user": { "id": "U2", "team_id": "T1" },
                "container": { "type": "view", "view_id": "V1" },
                "actions": [{ "action_id": id, "value": value, "action_ts": "1.2" }] })
            .to_string()
        };
        match parse_interaction_json(press("chime_home_mute_1w", "1w").as_bytes()).unwrap() {
            Inbound::Event { event, .. } => match *event {
                Event::SettingChanged(s) => {
                    assert_eq!(s.author.user.as_str(), "U2");
                    assert_eq!(s.change, crate::event::Setting::Mute { days: Some(7) });
                    assert!(s.from_home);
                }
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        for (id, value) in [
            ("chime_home_quiet", "24-1"),
            ("chime_home_quiet", "18-9-1"),
            ("chime_home_verbosity", "everything"),
            ("chime_home_unlink", "slack"),
            ("chime_home_link", ""),
            ("chime_home_nope", "x"),
        ] {
            assert!(
                matches!(
                    parse_interaction_json(press(id, value).as_bytes()).unwrap(),
                    Inbound::Ignored(_)
                ),
                "{id} {value}"
            );
        }
    }

    /// Socket Mode's slash command payload: the same fields as a JSON object. Anything else, and
    /// fields that are not strings, are refused, never guessed.
    #[test]
    fn slash_command_json_and_hostile_payloads() {
        let ok = br#"{"team_id":"T1","user_id":"U1","channel_id":"C1","trigger_id":"9.9","text":"bump serde","extra":{"x":1}}"#;
        let c = parse_command_json(ok, 0).unwrap();
        assert_eq!(c.command, SlashCommand::Request("bump serde".into()));
        assert_eq!(c.delivery_id, "cmd:9.9");
        for bad in [
            &br#"[]"#[..],
            br#""text""#,
            br#"{"team_id":"T1","user_id":"U1","channel_id":"C1","trigger_id":9}"#,
            br#"{"team_id":"T1","user_id":["U1"],"channel_id":"C1","trigger_id":"1"}"#,
            br#"{"team_id":"T1","user_id":"U1","channel_id":"C1/../C2","trigger_id":"1"}"#,
            b"\xff\xfe",
            b"",
        ] {
            assert!(parse_command_json(bad, 0).is_err(), "{bad:?}");
        }
        // A fixable mistake is answered, not refused; help never touches the inbox.
        let plan = |text: &str| {
            let body = format!(
                r#"{{"team_id":"T1","user_id":"U1","channel_id":"C1","trigger_id":"1","text":{}}}"#,
                serde_json::Value::from(text)
            );
            plan_command(parse_command_json(body.as_bytes(), 0), 0).unwrap()
        };
        assert!(
            matches!(plan("mute 2y"), CommandPlan::Answer(t) if t.contains("1d, 1w or forever"))
        );
        assert!(matches!(plan("help"), CommandPlan::Answer(t) if t.contains("/chime <request>")));
        let CommandPlan::Store {
            inbound: Inbound::Event { event, .. },
            ..
        } = plan("fix it <!channel>")
        else {
            panic!("a request is stored")
        };
        let Event::Request(r) = *event else { panic!() };
        assert_eq!(
            r.text, "fix it <!channel>",
            "kept as data; escaped where it is shown"
        );
    }
}
