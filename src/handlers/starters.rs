//! A new conversation with Chime: a few starters that fit what is going on (a pull request of the
//! person's whose CI failed, a suggestion still waiting in the channel they were viewing), and the
//! answer to the "Show my open sessions" starter.

use crate::binding::{Binding, Place};
use crate::connector::{Connector, Membership, Reporter, Starter};
use crate::context::Ctx;
use crate::event::{ConversationStarted, Mention};
use crate::ids::now_ms;
use crate::queue::inbox;
use sqlx::{AnyConnection, Row};

/// The starter that lists the person's open sessions, and the request that asks for them.
pub const OPEN_SESSIONS: &str = "Show my open sessions";
/// Slack shows at most four starters.
const MAX: usize = 4;
/// Titles are a button's worth of text.
const TITLE_CHARS: usize = 60;
/// A suggestion older than this is no longer what is going on.
const RECENT_MS: i64 = 2 * 86_400_000;
/// CI conclusions that mean a pull request needs fixing.
const FAILED_CHECKS: &str = "('failure', 'timed_out', 'startup_failure', 'action_required')";

#[tracing::instrument(skip_all, fields(user = %c.author.user))]
pub async fn handle_conversation_started(
    ctx: &Ctx,
    inbox_id: i64,
    c: ConversationStarted,
) -> anyhow::Result<()> {
    let connector = ctx.connectors.for_binding(&c.binding)?.clone();
    // Someone who may not use Chime here gets no starters: they would name work of others.
    let allowed = connector
        .check_member(&c.binding.location(), &c.author)
        .await
        == Membership::Allowed;
    let mut tx = ctx.db.begin().await?;
    if allowed {
        let starters = starters(&mut tx, ctx, &c).await?;
        connector
            .reporter()
            .offer_starters(
                &mut tx,
                &c.binding,
                &format!("starters:{inbox_id}"),
                &starters,
            )
            .await?;
        tracing::info!(count = starters.len(), "offered starters");
    } else {
        tracing::info!("no starters for someone who may not use Chime here");
    }
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    ctx.wake();
    Ok(())
}

/// The starters for `c`: failing CI first, then waiting suggestions, then the open sessions.
async fn starters(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    c: &ConversationStarted,
) -> anyhow::Result<Vec<Starter>> {
    let surface = c.binding.surface().as_str();
    let mut out = vec![];
    for r in sqlx::query(&format!(
        "SELECT repo, number, url FROM pull_requests WHERE requester = $1 AND binding LIKE $2 \
         AND state = 'open' AND checks IN {FAILED_CHECKS} ORDER BY opened_at DESC LIMIT 2"
    ))
    .bind(c.author.user.as_str())
    .bind(format!("{surface}:%"))
    .fetch_all(&mut *conn)
    .await?
    {
        let (repo, number, url): (String, i64, String) =
            (r.get("repo"), r.get("number"), r.get("url"));
        out.push(starter(
            &format!("Fix the failing CI on {repo}#{number}"),
            format!("Fix the failing CI on {url}"),
        ));
    }
    if let Some(place) = &c.context {
        suggested_here(conn, ctx, c, place, &mut out).await?;
    }
    out.truncate(MAX - 1);
    out.push(starter(OPEN_SESSIONS, OPEN_SESSIONS.to_string()));
    Ok(out)
}

/// Suggestions the policy offered in `place` lately that nobody answered (and that this person
/// may see): the thread they point at is linked, never quoted, so a hostile message cannot
/// write the person's request.
async fn suggested_here(
    conn: &mut AnyConnection,
    ctx: &Ctx,
    c: &ConversationStarted,
    place: &Place,
    out: &mut Vec<Starter>,
) -> anyhow::Result<()> {
    let channel = match place {
        Place::Slack { channel, .. } | Place::Local { channel } => channel.as_str(),
        _ => return Ok(()),
    };
    let rows = sqlx::query(
        "SELECT thread, button, place_name FROM suggestions WHERE state = 'offered' AND place = $1 \
         AND decided_at >= $2 AND (private_to IS NULL OR private_to = $3) \
         ORDER BY decided_at DESC LIMIT 2",
    )
    .bind(channel)
    .bind(now_ms() - RECENT_MS)
    .bind(c.author.user.as_str())
    .fetch_all(&mut *conn)
    .await?;
    for r in rows {
        let thread: Binding = r.get::<String, _>("thread").parse()?;
        let (button, name): (String, String) = (r.get("button"), r.get("place_name"));
        let Some(link) = ctx.connectors.link(&thread) else {
            continue;
        };
        let title = if name.is_empty() {
            button.clone()
        } else {
            format!("{button} in #{name}")
        };
        out.push(starter(&title, format!("{button}: {link}")));
    }
    Ok(())
}

fn starter(title: &str, message: String) -> Starter {
    Starter {
        title: crate::templates::truncate_chars(title, TITLE_CHARS),
        message,
    }
}

/// Whether `m` asks for the person's open sessions (the starter's text, as sent).
pub fn asks_open_sessions(m: &Mention) -> bool {
    m.text
        .trim()
        .trim_end_matches(['.', '!', '?'])
        .eq_ignore_ascii_case(OPEN_SESSIONS)
}

/// Lists the person's open sessions to them: in place where only they read it (their direct
/// conversation with Chime), else privately.
pub async fn answer_open_sessions(
    tx: &mut AnyConnection,
    ctx: &Ctx,
    connector: &dyn Connector,
    reporter: &dyn Reporter,
    m: &Mention,
    source_event: &str,
) -> anyhow::Result<()> {
    let surface = m.binding.surface().as_str();
    let user = m.author.user.as_str();
    let accounts = crate::identity::accounts(tx, surface, user).await?;
    let sessions = crate::home::sessions_of(tx, &ctx.connectors, &accounts, true).await?;
    let text = if sessions.is_empty() {
        "You have no open sessions. Ask me for something here, or mention me in a channel."
            .to_string()
    } else {
        let mut t = format!("Your open sessions ({}):", sessions.len());
        for s in &sessions {
            let request: String = s.request.chars().take(80).collect();
            let state = s.state.replace('_', " ");
            t.push_str(&format!("\n• {request} ({state})"));
            if let Some(link) = &s.link {
                t.push_str(&format!(" {link}"));
            }
        }
        t
    };
    let key = format!("open-sessions:{source_event}");
    if connector.is_private(&m.binding).await {
        reporter
            .tell(tx, &m.binding, &key, &m.author.user, &text)
            .await
    } else {
        reporter
            .tell_privately(tx, &m.binding, &key, &m.author.user, &text)
            .await
    }
}
