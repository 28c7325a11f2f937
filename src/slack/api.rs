//! Slack Web API calls, through slack-morphism's client pointed at `SLACK_API_URL`, with Chime's
//! own rate limits (governor) in front and errors sorted by what the caller should do next.

use crate::config::RateLimits;
use crate::ids::UserId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// Connecting to Slack gives up after this long (every call also has an overall timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// conversations.replies is read a page at a time, up to this many pages...
const REPLIES_PAGE: usize = 200;
const REPLIES_MAX_PAGES: usize = 25;
/// ...keeping the newest this many messages.
const REPLIES_KEEP: usize = 1000;

/// slack-morphism's connector pointed at `api_url` (`SLACK_API_URL`, no trailing slash).
pub fn connector(api_url: &str) -> Connector {
    let mut http = HttpConnector::new();
    // The https connector below decides the scheme; a connection that hangs is abandoned.
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    // https_or_http: Slack is https, but tests and self-hosted fakes may be plain http on loopback.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url)
}

/// How a failed call should be handled.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("rate limited by Slack")]
    RateLimited(Option<Duration>),
    #[error("temporary failure: {0}")]
    Transient(String),
    #[error("refused by Slack: {0}")]
    Permanent(String),
}

/// Slack's methods by rate-limit tier, as slack-morphism encodes them.
#[derive(Clone, Copy)]
enum Tier {
    T2,
    T3,
    T4,
}

pub struct SlackApi {
    client: SlackClient<Connector>,
    token: SlackApiToken,
    per_channel_posts: DefaultKeyedRateLimiter<String>,
    tier2: DefaultKeyedRateLimiter<String>,
    tier3: DefaultKeyedRateLimiter<String>,
    tier4: DefaultKeyedRateLimiter<String>,
    members: Mutex<HashMap<String, (Member, Instant)>>,
    /// channel id → its name (conversations.info); renames show after an hour.
    /// conversations.info answers: the channel's name and whether it is private.
    channel_names: Mutex<HashMap<String, (String, bool, Instant)>>,
    /// Every call is abandoned after this long: a stalled Slack must not hold a task, an event or
    /// a thread's outbox queue forever.
    timeout: Duration,
    /// Why no call may be made: the API's host is outside `[network]` allow_hosts.
    refused: Option<crate::egress::Refused>,
}

/// What users.info says about a person, reduced to what trust decisions need.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Member {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub is_bot: bool,
    #[serde(default)]
    pub is_restricted: bool,
    #[serde(default)]
    pub is_ultra_restricted: bool,
    #[serde(default)]
    pub deleted: bool,
    /// The profile's email (with `users:read.email`): Slack verifies it.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// The person's time zone as seconds east of UTC (users.info's `tz_offset`).
    #[serde(default)]
    pub tz_offset: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct Profile {
    #[serde(default)]
    pub email: Option<String>,
}

/// One message of a thread, as conversations.replies returns it.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ThreadMessage {
    pub user: Option<String>,
    pub bot_id: Option<String>,
    pub text: Option<String>,
    pub ts: Option<String>,
    pub metadata: Option<Value>,
}

#[derive(Deserialize)]
struct PostResponse {
    ts: Option<String>,
}

#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
struct RepliesResponse {
    #[serde(default)]
    messages: Vec<ThreadMessage>,
    #[serde(default)]
    has_more: bool,
    response_metadata: Option<ResponseMetadata>,
}

#[derive(Deserialize)]
struct ResponseMetadata {
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ChannelResponse {
    channel: Option<ChannelInfo>,
}

#[derive(Deserialize)]
struct OpenResponse {
    channel: Option<OpenedChannel>,
}

#[derive(Deserialize)]
struct OpenedChannel {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct ChannelInfo {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    is_private: bool,
    #[serde(default)]
    is_im: bool,
    #[serde(default)]
    is_mpim: bool,
}

#[derive(Deserialize)]
struct UserResponse {
    user: Option<Member>,
}

#[derive(Deserialize)]
pub struct AuthTest {
    pub user_id: Option<String>,
    pub bot_id: Option<String>,
    pub team_id: Option<String>,
}

#[derive(Serialize)]
struct PostMessage<'a> {
    channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<&'a str>,
    text: &'a str,
    blocks: &'a Value,
    metadata: Value,
    unfurl_links: bool,
}

#[derive(Serialize)]
struct Ephemeral<'a> {
    channel: &'a str,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thread_ts: Option<&'a str>,
    text: &'a str,
    blocks: &'a Value,
}

#[derive(Serialize)]
struct Update<'a> {
    channel: &'a str,
    ts: &'a str,
    text: &'a str,
    blocks: &'a Value,
}

#[derive(Serialize)]
struct React<'a> {
    channel: &'a str,
    timestamp: &'a str,
    name: &'a str,
}

/// The message metadata type Chime stamps on its posts, so a post can be found again after a crash.
pub const METADATA_TYPE: &str = "chime_message";

fn keyed(per_min: u32) -> DefaultKeyedRateLimiter<String> {
    let n = NonZeroU32::new(per_min.max(1)).unwrap_or(NonZeroU32::MIN);
    // A full minute's allowance may go out at once, as Slack tolerates bursts within a window.
    RateLimiter::keyed(Quota::per_minute(n).allow_burst(n))
}

impl SlackApi {
    pub fn new(
        api_url: &str,
        token: &SecretString,
        limits: &RateLimits,
        timeout: Duration,
        egress: &crate::egress::Egress,
    ) -> anyhow::Result<Self> {
        let per_sec = NonZeroU32::new(limits.post_message_per_channel_per_sec.max(1))
            .unwrap_or(NonZeroU32::MIN);
        Ok(Self {
            client: SlackClient::new(connector(api_url)),
            token: SlackApiToken::new(SlackApiTokenValue(token.expose_secret().to_string())),
            per_channel_posts: RateLimiter::keyed(Quota::per_second(per_sec)),
            tier2: keyed(limits.tier2_per_min),
            tier3: keyed(limits.tier3_per_min),
            tier4: keyed(limits.tier4_per_min),
            members: Mutex::new(HashMap::new()),
            channel_names: Mutex::new(HashMap::new()),
            timeout,
            refused: egress.check(api_url).err(),
        })
    }

    async fn throttle(&self, team: &str, method: &str, tier: Tier) {
        let limiter = match tier {
            Tier::T2 => &self.tier2,
            Tier::T3 => &self.tier3,
            Tier::T4 => &self.tier4,
        };
        limiter.until_key_ready(&format!("{team}:{method}")).await;
    }

    async fn post<RQ: Serialize + Send + Sync, RS: for<'de> Deserialize<'de> + Send>(
        &self,
        method: &str,
        body: &RQ,
    ) -> Result<RS, SendError> {
        self.allowed(method)?;
        let session = self.client.open_session(&self.token);
        let call = session.http_session_api.http_post(method, body, None);
        counted(match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(self.timed_out(method)),
        })
    }

    /// Refuses every call when the API's host is outside the network allowlist.
    fn allowed(&self, method: &str) -> Result<(), SendError> {
        match &self.refused {
            Some(refused) => {
                tracing::warn!(method, host = %refused.host, "refused a Slack call outside the network allowlist");
                Err(SendError::Permanent(format!("{method}: {refused}")))
            }
            None => Ok(()),
        }
    }

    fn timed_out(&self, method: &str) -> SendError {
        tracing::warn!(
            method,
            timeout_secs = self.timeout.as_secs_f64(),
            "Slack call timed out"
        );
        SendError::Transient(format!("{method} timed out after {:?}", self.timeout))
    }

    async fn get<RS: for<'de> Deserialize<'de> + Send>(
        &self,
        method: &str,
        params: Vec<(&str, Option<String>)>,
    ) -> Result<RS, SendError> {
        self.allowed(method)?;
        let session = self.client.open_session(&self.token);
        let call = session.http_session_api.http_get(method, &params, None);
        counted(match tokio::time::timeout(self.timeout, call).await {
            Ok(r) => r.map_err(classify),
            Err(_) => Err(self.timed_out(method)),
        })
    }

    /// Posts a threaded message stamped with `key` in its metadata; returns its ts.
    #[tracing::instrument(skip(self, text, blocks))]
    pub async fn post_message(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: &Value,
        key: &str,
    ) -> Result<Option<String>, SendError> {
        self.per_channel_posts
            .until_key_ready(&channel.to_string())
            .await;
        let body = PostMessage {
            channel,
            thread_ts,
            text,
            blocks,
            metadata: serde_json::json!({ "event_type": METADATA_TYPE, "event_payload": { "chime_key": key } }),
            unfurl_links: false,
        };
        let r: PostResponse = self.post("chat.postMessage", &body).await?;
        Ok(r.ts)
    }

    /// A message only `user` sees (`chat.postEphemeral`, tier 4). It cannot be edited or found
    /// again, so it is sent at most once per outbox row and never adopted.
    #[tracing::instrument(skip(self, text, blocks))]
    pub async fn post_ephemeral(
        &self,
        team: &str,
        channel: &str,
        user: &str,
        thread_ts: Option<&str>,
        text: &str,
        blocks: &Value,
    ) -> Result<(), SendError> {
        self.throttle(team, "chat.postEphemeral", Tier::T4).await;
        let _: Empty = self
            .post(
                "chat.postEphemeral",
                &Ephemeral {
                    channel,
                    user,
                    thread_ts,
                    text,
                    blocks,
                },
            )
            .await?;
        Ok(())
    }

    /// Publishes `user`'s Home tab (`views.publish`, tier 4), replacing what it showed.
    #[tracing::instrument(skip(self, view))]
    pub async fn publish_home(
        &self,
        team: &str,
        user: &str,
        view: &Value,
    ) -> Result<(), SendError> {
        self.throttle(team, "views.publish", Tier::T4).await;
        let body = serde_json::json!({ "user_id": user, "view": view });
        let _: Empty = self.post("views.publish", &body).await?;
        Ok(())
    }

    #[tracing::instrument(skip(self, text, blocks))]
    pub async fn update_message(
        &self,
        team: &str,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: &Value,
    ) -> Result<(), SendError> {
        self.throttle(team, "chat.update", Tier::T3).await;
        let _: Empty = self
            .post(
                "chat.update",
                &Update {
                    channel,
                    ts,
                    text,
                    blocks,
                },
            )
            .await?;
        Ok(())
    }

    #[tracing::instrument(skip(self))]
    pub async fn add_reaction(
        &self,
        team: &str,
        channel: &str,
        ts: &str,
        name: &str,
    ) -> Result<(), SendError> {
        self.throttle(team, "reactions.add", Tier::T3).await;
        match self
            .post::<_, Empty>(
                "reactions.add",
                &React {
                    channel,
                    timestamp: ts,
                    name,
                },
            )
            .await
        {
            Err(SendError::Permanent(code)) if code == "already_reacted" => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Sets the agent session status of a thread (`agents.sessions.setStatus`): `processing`
    /// while a turn runs (Slack shows its own stop button), `active` once it answered.
    pub async fn set_agent_status(
        &self,
        team: &str,
        channel: &str,
        thread_ts: &str,
        status: &str,
    ) -> Result<(), SendError> {
        self.throttle(team, "agents.sessions.setStatus", Tier::T3)
            .await;
        self.post::<_, Empty>(
            "agents.sessions.setStatus",
            &serde_json::json!({ "channel_id": channel, "thread_ts": thread_ts, "status": status }),
        )
        .await
        .map(|_| ())
    }

    /// Sets the starters atop an assistant thread (`assistant.threads.setSuggestedPrompts`,
    /// tier 4).
    #[tracing::instrument(skip(self, prompts))]
    pub async fn set_suggested_prompts(
        &self,
        team: &str,
        channel: &str,
        thread_ts: &str,
        title: &str,
        prompts: &[(String, String)],
    ) -> Result<(), SendError> {
        self.throttle(team, "assistant.threads.setSuggestedPrompts", Tier::T4)
            .await;
        let prompts = prompts
            .iter()
            .map(|(t, m)| SlackAssistantPrompt::new(t.clone(), m.clone()))
            .collect();
        let req = SlackApiAssistantThreadsSetSuggestedPromptsRequest::new(
            channel.into(),
            thread_ts.into(),
            prompts,
        )
        .with_title(title.to_string());
        self.post::<_, Empty>("assistant.threads.setSuggestedPrompts", &req)
            .await
            .map(|_| ())
    }

    /// Starts a streamed reply in a thread (`chat.startStream`, tier 2) showing a plan; its ts.
    #[tracing::instrument(skip(self, chunks))]
    pub async fn start_stream(
        &self,
        team: &str,
        channel: &str,
        thread_ts: &str,
        recipient_user: &str,
        recipient_team: Option<&str>,
        chunks: &[SlackStreamChunk],
    ) -> Result<String, SendError> {
        // Starting a stream never waits for its tier: a turn whose stream would start late shows
        // the status card at once instead (the sender treats this like Slack's own 429).
        if self
            .tier2
            .check_key(&format!("{team}:chat.startStream"))
            .is_err()
        {
            return Err(SendError::RateLimited(None));
        }
        let req = SlackApiChatStartStreamRequest::new(channel.into())
            .with_thread_ts(thread_ts.into())
            .with_recipient_user_id(recipient_user.into())
            .opt_recipient_team_id(recipient_team.map(Into::into))
            .with_task_display_mode(SlackStreamTaskDisplayMode::Plan)
            .with_chunks(chunks.to_vec());
        let r: SlackApiChatStartStreamResponse = self.post("chat.startStream", &req).await?;
        Ok(r.ts.to_string())
    }

    /// Appends chunks to a streamed reply (`chat.appendStream`, tier 4).
    #[tracing::instrument(skip(self, chunks))]
    pub async fn append_stream(
        &self,
        team: &str,
        channel: &str,
        ts: &str,
        chunks: &[SlackStreamChunk],
    ) -> Result<(), SendError> {
        self.throttle(team, "chat.appendStream", Tier::T4).await;
        let req = SlackApiChatAppendStreamRequest::new(channel.into(), ts.into())
            .with_chunks(chunks.to_vec());
        let _: SlackApiChatAppendStreamResponse = self.post("chat.appendStream", &req).await?;
        Ok(())
    }

    /// Ends a streamed reply (`chat.stopStream`, tier 2) with its last chunks and the final card.
    #[tracing::instrument(skip(self, chunks, text, blocks))]
    pub async fn stop_stream(
        &self,
        team: &str,
        channel: &str,
        ts: &str,
        chunks: &[SlackStreamChunk],
        text: &str,
        blocks: &Value,
    ) -> Result<(), SendError> {
        self.throttle(team, "chat.stopStream", Tier::T2).await;
        // Chime's cards are Block Kit it has measured; one that slack-morphism cannot read is a
        // card Slack would refuse too.
        let blocks: Vec<SlackBlock> = serde_json::from_value(blocks.clone())
            .map_err(|e| SendError::Permanent(format!("invalid_blocks: {e}")))?;
        let content = SlackMessageContent::new()
            .with_text(text.to_string())
            .with_blocks(blocks);
        let mut req = SlackApiChatStopStreamRequest::new(channel.into(), ts.into(), content);
        if !chunks.is_empty() {
            req = req.with_chunks(chunks.to_vec());
        }
        let _: SlackApiChatStopStreamResponse = self.post("chat.stopStream", &req).await?;
        Ok(())
    }

    /// A thread's messages, oldest first, metadata included (for thread context, and to find
    /// Chime's own posts after a crash). Slack pages replies from the oldest, so every page is read
    /// (up to a bound) and the newest `REPLIES_KEEP` are kept.
    #[tracing::instrument(skip(self))]
    pub async fn replies(
        &self,
        team: &str,
        channel: &str,
        thread_ts: &str,
    ) -> Result<Vec<ThreadMessage>, SendError> {
        let mut kept = std::collections::VecDeque::new();
        let mut cursor: Option<String> = None;
        for page in 1..=REPLIES_MAX_PAGES {
            self.throttle(team, "conversations.replies", Tier::T3).await;
            let r: RepliesResponse = self
                .get(
                    "conversations.replies",
                    vec![
                        ("channel", Some(channel.to_string())),
                        ("ts", Some(thread_ts.to_string())),
                        ("limit", Some(REPLIES_PAGE.to_string())),
                        ("include_all_metadata", Some("true".to_string())),
                        ("cursor", cursor.take()),
                    ],
                )
                .await?;
            for m in r.messages {
                if kept.len() == REPLIES_KEEP {
                    kept.pop_front();
                }
                kept.push_back(m);
            }
            cursor = r
                .response_metadata
                .and_then(|m| m.next_cursor)
                .filter(|c| !c.is_empty());
            if !r.has_more || cursor.is_none() {
                break;
            }
            if page == REPLIES_MAX_PAGES {
                tracing::warn!(
                    pages = page,
                    "thread is longer than Chime reads; its newest replies are left out"
                );
            }
        }
        Ok(kept.into())
    }

    /// users.info, cached for ten minutes.
    #[tracing::instrument(skip(self))]
    pub async fn member(&self, team: &str, user: &UserId) -> Result<Member, SendError> {
        if let Some((m, at)) = self
            .members
            .lock()
            .ok()
            .and_then(|c| c.get(user.as_str()).cloned())
        {
            if at.elapsed() < Duration::from_secs(600) {
                return Ok(m);
            }
        }
        self.throttle(team, "users.info", Tier::T4).await;
        let r: UserResponse = self
            .get("users.info", vec![("user", Some(user.to_string()))])
            .await?;
        let m = r
            .user
            .ok_or_else(|| SendError::Permanent("users.info returned no user".into()))?;
        if let Ok(mut c) = self.members.lock() {
            c.insert(user.to_string(), (m.clone(), Instant::now()));
        }
        Ok(m)
    }

    /// The person with this email (users.lookupByEmail; needs `users:read.email`); None when
    /// nobody in the workspace has it.
    #[tracing::instrument(skip(self, email))]
    pub async fn user_by_email(
        &self,
        team: &str,
        email: &str,
    ) -> Result<Option<String>, SendError> {
        self.throttle(team, "users.lookupByEmail", Tier::T3).await;
        match self
            .get::<UserResponse>(
                "users.lookupByEmail",
                vec![("email", Some(email.to_string()))],
            )
            .await
        {
            Ok(r) => Ok(r.user.and_then(|u| u.id)),
            Err(SendError::Permanent(e)) if e.contains("users_not_found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The direct conversation between Chime and `user` (conversations.open; needs `im:write`).
    #[tracing::instrument(skip(self))]
    pub async fn open_dm(&self, team: &str, user: &UserId) -> Result<String, SendError> {
        self.throttle(team, "conversations.open", Tier::T3).await;
        let r: OpenResponse = self
            .post(
                "conversations.open",
                &serde_json::json!({ "users": user.as_str() }),
            )
            .await?;
        r.channel
            .and_then(|c| c.id)
            .ok_or_else(|| SendError::Permanent("conversations.open returned no channel".into()))
    }

    /// A channel's name (conversations.info), cached for an hour.
    #[tracing::instrument(skip(self))]
    pub async fn channel_name(&self, team: &str, channel: &str) -> Result<String, SendError> {
        self.channel_info(team, channel).await.map(|(name, _)| name)
    }

    /// A channel's name and whether it is private (a private channel, a DM or a group DM),
    /// cached for an hour.
    pub async fn channel_info(
        &self,
        team: &str,
        channel: &str,
    ) -> Result<(String, bool), SendError> {
        if let Some((name, private, at)) = self
            .channel_names
            .lock()
            .ok()
            .and_then(|c| c.get(channel).cloned())
        {
            if at.elapsed() < Duration::from_secs(3600) {
                return Ok((name, private));
            }
        }
        self.throttle(team, "conversations.info", Tier::T3).await;
        let r: ChannelResponse = self
            .get(
                "conversations.info",
                vec![("channel", Some(channel.to_string()))],
            )
            .await?;
        let info = r
            .channel
            .ok_or_else(|| SendError::Permanent("conversations.info returned no channel".into()))?;
        let private = info.is_private || info.is_im || info.is_mpim;
        let name = info
            .name
            .ok_or_else(|| SendError::Permanent("conversations.info returned no name".into()))?;
        if let Ok(mut c) = self.channel_names.lock() {
            c.insert(channel.to_string(), (name.clone(), private, Instant::now()));
        }
        Ok((name, private))
    }

    pub async fn auth_test(&self) -> Result<AuthTest, SendError> {
        self.throttle("-", "auth.test", Tier::T2).await;
        self.post("auth.test", &serde_json::json!({})).await
    }
}

/// Counts a Web API call's result for `/metrics`.
fn counted<T>(r: Result<T, SendError>) -> Result<T, SendError> {
    let result = match &r {
        Ok(_) => "ok",
        Err(SendError::RateLimited(_)) => "rate_limited",
        Err(_) => "error",
    };
    crate::metrics::api_call("slack", result);
    r
}

fn classify(e: SlackClientError) -> SendError {
    match e {
        SlackClientError::RateLimitError(r) => SendError::RateLimited(r.retry_after),
        SlackClientError::ApiError(a) => match a.code.as_str() {
            "ratelimited" | "rate_limited" => SendError::RateLimited(None),
            "internal_error"
            | "fatal_error"
            | "service_unavailable"
            | "request_timeout"
            | "team_added_to_org" => SendError::Transient(a.code),
            _ => SendError::Permanent(a.code),
        },
        SlackClientError::HttpError(h) if h.status_code.is_server_error() => {
            SendError::Transient(format!("HTTP {}", h.status_code))
        }
        SlackClientError::HttpError(h) => SendError::Permanent(format!("HTTP {}", h.status_code)),
        other => SendError::Transient(other.to_string()),
    }
}
