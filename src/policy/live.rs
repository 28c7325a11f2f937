//! The policy on live events: each channel message is judged as it is handled, with what the
//! store remembers (the thread so far, offers made, mutes, who used Chime). A bot alert that
//! could be offered first waits out its grace window as a `pending` suggestion row, so a restart
//! inside the window neither loses it nor offers twice, and two replicas decide it once.

use super::judge::{self, Decision, Memory, Message, ThreadState};
use super::Policy;
use crate::binding::Binding;
use crate::context::Ctx;
use crate::event::ChannelMessage;
use crate::ids::now_ms;
use anyhow::Context;
use sqlx::{AnyConnection, Row};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A suggestion as a reporter shows it.
#[derive(Clone, Debug)]
pub struct Offer {
    pub id: String,
    /// The thread it is offered in.
    pub binding: Binding,
    /// The message it answers.
    pub message: String,
    /// Only this person sees it (a scope's `delivery = "ephemeral"`); None: everyone in the thread.
    pub private_to: Option<crate::ids::UserId>,
    pub action: String,
    pub button: String,
    pub reasons: Vec<String>,
}

/// How someone answered a suggestion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OfferAnswer {
    Accepted { by: crate::ids::UserId },
    NotNow { by: crate::ids::UserId },
    Muted { by: crate::ids::UserId },
}

/// A suggestion row.
#[derive(Clone, Debug)]
pub struct Suggestion {
    pub offer: Offer,
    pub place: String,
    pub message: String,
    pub author: String,
    pub text: String,
    pub state: String,
}

fn judged<'a>(m: &'a ChannelMessage, thread: &'a str) -> Message<'a> {
    Message {
        id: thread,
        place: m.binding.place(),
        place_name: &m.place_name,
        author: m.author.user.as_str(),
        author_is_bot: m.author_is_bot,
        // Live decisions are made now, on the same clock as the offers they are counted
        // against (a platform's own timestamps may be skewed or, in a replayed event, old).
        at_ms: now_ms(),
        thread: (!m.top_level).then_some(thread),
        text: &m.text,
        mentions_chime: false,
        from_chime: false,
    }
}

async fn thread_state(conn: &mut AnyConnection, thread: &str) -> anyhow::Result<ThreadState> {
    let row = sqlx::query(
        "SELECT human_replies, claimed, answered, resolved FROM policy_threads WHERE thread = $1",
    )
    .bind(thread)
    .fetch_optional(conn)
    .await?;
    Ok(row.map_or_else(ThreadState::default, |r| ThreadState {
        human_replies: r.get::<i64, _>("human_replies") as u32,
        claimed: r.get::<i64, _>("claimed") != 0,
        answered: r.get::<i64, _>("answered") != 0,
        resolved: r.get::<i64, _>("resolved") != 0,
    }))
}

async fn save_thread(
    conn: &mut AnyConnection,
    thread: &str,
    s: &ThreadState,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO policy_threads (thread, human_replies, claimed, answered, resolved, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (thread) DO UPDATE SET human_replies = $2, \
         claimed = $3, answered = $4, resolved = $5, updated_at = $6",
    )
    .bind(thread)
    .bind(i64::from(s.human_replies))
    .bind(i64::from(s.claimed))
    .bind(i64::from(s.answered))
    .bind(i64::from(s.resolved))
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

const OFFERED: &str = "('offered', 'accepted', 'dismissed', 'muted')";

/// What the store remembers that bears on a decision about `m`.
pub(crate) async fn memory(
    conn: &mut AnyConnection,
    policy: &Policy,
    m: &Message<'_>,
) -> anyhow::Result<Memory> {
    let mut mem = Memory::default();
    let since = m.at_ms - 2 * 86_400_000;
    let sql = format!(
        "SELECT thread, place, author, author_is_bot, decided_at FROM suggestions \
         WHERE state IN {OFFERED} AND (thread = $1 OR ((place = $2 OR author = $3) AND decided_at >= $4))"
    );
    for r in sqlx::query(&sql)
        .bind(m.root())
        .bind(m.place)
        .bind(m.author)
        .bind(since)
        .fetch_all(&mut *conn)
        .await?
    {
        let (thread, place, author): (String, String, String) =
            (r.get("thread"), r.get("place"), r.get("author"));
        let at: i64 = r.get::<Option<i64>, _>("decided_at").unwrap_or(0);
        let day = judge::day(policy, at);
        *mem.per_thread.entry(thread).or_default() += 1;
        if place == m.place {
            *mem.per_place_day.entry((place.clone(), day)).or_default() += 1;
            let last = mem.last_offer_in_place.entry(place).or_insert(at);
            *last = (*last).max(at);
        }
        if r.get::<i64, _>("author_is_bot") == 0 {
            *mem.per_person_day.entry((author, day)).or_default() += 1;
        }
    }
    // Separate small queries, not one UNION: Postgres plans a UNION of four afresh on each call
    // (about 1.3 ms), longer than the three extra round trips take.
    for r in sqlx::query("SELECT action FROM policy_mutes WHERE place = $1")
        .bind(m.place)
        .fetch_all(&mut *conn)
        .await?
    {
        mem.muted.insert((m.place.to_string(), r.get("action")));
    }
    for r in sqlx::query("SELECT action, shift_milli FROM policy_thresholds WHERE place = $1")
        .bind(m.place)
        .fetch_all(&mut *conn)
        .await?
    {
        let shift = r.get::<i64, _>("shift_milli") as f64 / 1000.0;
        mem.threshold_shift
            .insert((m.place.to_string(), r.get("action")), shift);
    }
    let muted = sqlx::query(
        "SELECT 1 AS x FROM policy_person_mutes WHERE person = $1 AND (until_ms IS NULL OR until_ms > $2)",
    )
    .bind(m.author)
    .bind(m.at_ms.max(now_ms()))
    .fetch_optional(&mut *conn)
    .await?;
    // Muted, or in their quiet hours (their own settings): the same to the policy.
    if muted.is_some()
        || crate::settings::in_quiet_hours(conn, m.author, m.at_ms.max(now_ms())).await?
    {
        mem.muted_people.insert(m.author.to_string());
    }
    let used = sqlx::query("SELECT 1 AS x FROM tasks WHERE requester = $1 LIMIT 1")
        .bind(m.author)
        .fetch_optional(&mut *conn)
        .await?;
    if used.is_some() {
        mem.users.insert(m.author.to_string());
    }
    Ok(mem)
}

/// Whether anything Chime remembers could make `m` an offer: its relevance with every threshold
/// as low as the policy's bounds let feedback move it. Learnt thresholds are the only memory
/// relevance reads; budgets, mutes and the audience rule can only turn an offer down.
fn could_suggest(policy: &Policy, m: &Message, thread: &ThreadState) -> bool {
    let mut lowest = Memory::default();
    for a in &policy.actions {
        lowest
            .threshold_shift
            .insert((m.place.to_string(), a.kind.clone()), f64::NEG_INFINITY);
    }
    judge::relevance(policy, m, thread, &lowest).suggests()
}

/// A suggestion recorded as offered, for [`offer`] to show.
#[derive(Debug)]
pub struct ToOffer {
    id: String,
    private_to: Option<String>,
    decision: Decision,
}

/// Judges one channel message inside the handler's transaction: records what it says about its
/// thread, then starts a grace window, stays quiet, or records an offer to show now.
pub async fn judge_message(
    tx: &mut AnyConnection,
    policy: &Policy,
    m: &ChannelMessage,
) -> anyhow::Result<Option<ToOffer>> {
    let mut to_offer = None;
    let thread = m.binding.to_string();
    let msg = judged(m, &thread);
    let mut state = thread_state(tx, &thread).await?;
    if !could_suggest(policy, &msg, &state) {
        // Most messages: nothing Chime remembers could make them an offer, so it is not read.
        judge::observe(policy, &mut state, &msg);
        save_thread(tx, &thread, &state).await?;
        return Ok(None);
    }
    let grace = judge::scope_of(policy, &msg)
        .ok()
        .filter(|s| s.bots && msg.author_is_bot && msg.thread.is_none())
        .map(|s| (s.grace_minutes * 60_000.0) as i64)
        .filter(|g| *g > 0);
    let mut mem = memory(tx, policy, &msg).await?;
    let relevant = judge::relevance(policy, &msg, &state, &mem);
    match grace {
        Some(g) if relevant.suggests() => {
            // The window runs from when Chime hears of the alert: one delivered late (after
            // downtime) still gives people their full window, and their replies, delivered
            // late too, are handled before it ends.
            insert(tx, m, &thread, &relevant, "pending", now_ms() + g, None).await?;
            tracing::info!(thread = %thread, action = ?relevant.action, "alert waits out its grace window");
        }
        _ => {
            let d = judge::decide(policy, &msg, &state, &mut mem, false);
            if d.suggests() {
                // Only a person can be shown something privately; an alert's offer is public.
                let private_to = judge::scope_of(policy, &msg)
                    .ok()
                    .filter(|s| s.delivery == "ephemeral" && !m.author_is_bot)
                    .map(|_| m.author.user.as_str());
                to_offer = record(tx, m, &thread, d, private_to).await?;
            } else {
                tracing::debug!(thread = %thread, reasons = ?d.reasons, "quiet");
            }
        }
    }
    judge::observe(policy, &mut state, &msg);
    save_thread(tx, &thread, &state).await?;
    Ok(to_offer)
}

/// Records decision `d` about `m` as an offer to show now; None when its thread already has one.
pub(crate) async fn record(
    tx: &mut AnyConnection,
    m: &ChannelMessage,
    thread: &str,
    d: Decision,
    private_to: Option<&str>,
) -> anyhow::Result<Option<ToOffer>> {
    let id = insert(tx, m, thread, &d, "offered", now_ms(), private_to).await?;
    Ok(id.map(|id| ToOffer {
        id,
        private_to: private_to.map(str::to_string),
        decision: d,
    }))
}

/// Inserts a suggestion row; None when the thread already has one.
async fn insert(
    tx: &mut AnyConnection,
    m: &ChannelMessage,
    thread: &str,
    d: &Decision,
    state: &str,
    decide_at: i64,
    private_to: Option<&str>,
) -> anyhow::Result<Option<String>> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let now = now_ms();
    let n = sqlx::query(
        "INSERT INTO suggestions (id, thread, place, message, author, author_is_bot, place_name, text, action, \
         button, score_milli, reasons, state, decide_at, created_at, decided_at, private_to) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
         ON CONFLICT (thread) DO NOTHING",
    )
    .bind(&id)
    .bind(thread)
    .bind(m.binding.place())
    .bind(&m.message)
    .bind(m.author.user.as_str())
    .bind(i64::from(m.author_is_bot))
    .bind(&m.place_name)
    .bind(crate::db::storable(&m.text).as_ref())
    .bind(d.action.as_deref().unwrap_or_default())
    .bind(d.button.as_deref().unwrap_or_default())
    .bind((d.score * 1000.0) as i64)
    .bind(serde_json::to_string(&d.reasons)?)
    .bind(state)
    .bind(decide_at)
    .bind(now)
    .bind((state != "pending").then_some(now))
    .bind(private_to)
    .execute(tx)
    .await
    .context("recording a suggestion")?
    .rows_affected();
    Ok((n == 1).then_some(id))
}

/// Shows a recorded offer on its connector (an outbox row in the same transaction).
pub async fn offer_now(
    ctx: &Ctx,
    tx: &mut AnyConnection,
    m: &ChannelMessage,
    o: ToOffer,
) -> anyhow::Result<()> {
    offer(ctx, tx, &o.id, m, o.private_to.as_deref(), &o.decision).await
}

async fn offer(
    ctx: &Ctx,
    tx: &mut AnyConnection,
    id: &str,
    m: &ChannelMessage,
    private_to: Option<&str>,
    d: &Decision,
) -> anyhow::Result<()> {
    let binding = &m.binding;
    let connector = ctx.connectors.for_binding(binding)?;
    let offer = Offer {
        id: id.to_string(),
        binding: binding.clone(),
        message: m.message.clone(),
        private_to: private_to.map(|u| crate::ids::UserId(u.to_string())),
        action: d.action.clone().unwrap_or_default(),
        button: d.button.clone().unwrap_or_default(),
        reasons: d.reasons.iter().map(|r| r.to_string()).collect(),
    };
    connector.reporter().offer(tx, &offer).await?;
    tracing::info!(suggestion = id, binding = %binding, action = %offer.action, score = d.score, private = private_to.is_some(), "offered a suggestion");
    Ok(())
}

/// Reads a suggestion.
pub async fn get(conn: &mut AnyConnection, id: &str) -> anyhow::Result<Option<Suggestion>> {
    let row = sqlx::query(
        "SELECT id, thread, place, message, author, text, action, button, reasons, state, private_to FROM suggestions WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| {
        Ok(Suggestion {
            offer: Offer {
                id: r.get("id"),
                binding: r.get::<String, _>("thread").parse()?,
                message: r.get("message"),
                private_to: r
                    .get::<Option<String>, _>("private_to")
                    .map(crate::ids::UserId),
                action: r.get("action"),
                button: r.get("button"),
                reasons: serde_json::from_str(&r.get::<String, _>("reasons"))
                    .context("reading a suggestion's reasons")?,
            },
            place: r.get("place"),
            message: r.get("message"),
            author: r.get("author"),
            text: r.get("text"),
            state: r.get("state"),
        })
    })
    .transpose()
}

/// Moves an offered suggestion to `state` (accepted, dismissed, muted), once: returns whether
/// this call did.
pub async fn answer(
    conn: &mut AnyConnection,
    id: &str,
    state: &str,
    by: &str,
    task: Option<&str>,
) -> anyhow::Result<bool> {
    let n = sqlx::query(
        "UPDATE suggestions SET state = $1, answered_by = $2, task_id = $3 WHERE id = $4 AND state = 'offered'",
    )
    .bind(state)
    .bind(by)
    .bind(task)
    .bind(id)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// An acceptance makes an action kind a little more eager in a place; a "Not now" makes it a
/// little more reserved. The move is bounded: the judge clamps the threshold to the bounds the
/// policy sets, and the stored shift never exceeds their width.
pub async fn learn(
    conn: &mut AnyConnection,
    policy: &Policy,
    place: &str,
    action: &str,
    accepted: bool,
) -> anyhow::Result<()> {
    let Some(a) = policy.actions.iter().find(|a| a.kind == action) else {
        return Ok(());
    };
    let step = (if accepted { a.steps.0 } else { a.steps.1 } * 1000.0).round() as i64;
    let (lo, hi) = (
        ((a.bounds.0 - a.threshold) * 1000.0).round() as i64,
        ((a.bounds.1 - a.threshold) * 1000.0).round() as i64,
    );
    let old: i64 =
        sqlx::query("SELECT shift_milli FROM policy_thresholds WHERE place = $1 AND action = $2")
            .bind(place)
            .bind(action)
            .fetch_optional(&mut *conn)
            .await?
            .map_or(0, |r| r.get("shift_milli"));
    let new = (old + step).clamp(lo, hi);
    if new == old {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO policy_thresholds (place, action, shift_milli, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (place, action) DO UPDATE SET shift_milli = $3, updated_at = $4",
    )
    .bind(place)
    .bind(action)
    .bind(new)
    .bind(now_ms())
    .execute(conn)
    .await?;
    tracing::info!(
        place,
        action,
        accepted,
        from = a.threshold + old as f64 / 1000.0,
        to = a.threshold + new as f64 / 1000.0,
        "threshold moved by feedback"
    );
    Ok(())
}

/// Offered, accepted, dismissed and muted suggestions per action kind and place, with how far
/// feedback moved each threshold (`chime policy stats`).
pub async fn stats(db: &crate::db::Db) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let rows = sqlx::query(
        "SELECT s.action, s.place, \
         SUM(CASE WHEN s.state IN ('offered', 'accepted', 'dismissed', 'muted') THEN 1 ELSE 0 END) AS offered, \
         SUM(CASE WHEN s.state = 'accepted' THEN 1 ELSE 0 END) AS accepted, \
         SUM(CASE WHEN s.state = 'dismissed' THEN 1 ELSE 0 END) AS dismissed, \
         SUM(CASE WHEN s.state = 'muted' THEN 1 ELSE 0 END) AS muted, \
         COALESCE(MAX(t.shift_milli), 0) AS shift \
         FROM suggestions s LEFT JOIN policy_thresholds t ON t.place = s.place AND t.action = s.action \
         GROUP BY s.action, s.place ORDER BY s.action, s.place",
    )
    .fetch_all(&db.pool)
    .await
    .context("reading suggestions")?;
    let mut out = format!(
        "{:<20} {:<24} {:>8} {:>8} {:>9} {:>6} {:>10}\n",
        "action", "place", "offered", "accepted", "dismissed", "muted", "threshold"
    );
    for r in rows {
        let shift = r.get::<i64, _>("shift") as f64 / 1000.0;
        let _ = writeln!(
            out,
            "{:<20} {:<24} {:>8} {:>8} {:>9} {:>6} {:>+10.2}",
            crate::templates::one_line(&r.get::<String, _>("action"), 20),
            crate::templates::one_line(&r.get::<String, _>("place"), 24),
            r.get::<i64, _>("offered"),
            r.get::<i64, _>("accepted"),
            r.get::<i64, _>("dismissed"),
            r.get::<i64, _>("muted"),
            shift,
        );
    }
    Ok(out)
}

/// "Don't suggest this here".
pub async fn mute(
    conn: &mut AnyConnection,
    place: &str,
    action: &str,
    by: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO policy_mutes (place, action, muted_by, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (place, action) DO NOTHING",
    )
    .bind(place)
    .bind(action)
    .bind(by)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

/// `/chime mute` and `/chime unmute`.
pub async fn mute_person(
    conn: &mut AnyConnection,
    m: &crate::event::MuteSuggestions,
) -> anyhow::Result<()> {
    if m.unmute {
        sqlx::query("DELETE FROM policy_person_mutes WHERE surface = $1 AND person = $2")
            .bind(m.surface.as_str())
            .bind(m.author.user.as_str())
            .execute(conn)
            .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO policy_person_mutes (surface, person, until_ms, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (surface, person) DO UPDATE SET until_ms = $3, created_at = $4",
    )
    .bind(m.surface.as_str())
    .bind(m.author.user.as_str())
    .bind(m.until_ms)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

/// Decides suggestions whose grace window has ended, until `shutdown`. Each is claimed for a
/// short lease and moved out of `pending` in the same transaction that queues its offer, so it is
/// decided exactly once, here or on another replica, and again after a crash mid-decision.
pub async fn run_due(ctx: Arc<Ctx>, policy: Arc<Policy>, shutdown: CancellationToken) {
    let poll = Duration::from_millis(ctx.config.worker.poll_ms.max(50));
    loop {
        match decide_one_due(&ctx, &policy).await {
            Ok(true) => continue,
            Ok(false) => {}
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "deciding a suggestion failed; retried shortly")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn decide_one_due(ctx: &Ctx, policy: &Policy) -> anyhow::Result<bool> {
    let now = now_ms();
    let claimed = sqlx::query(
        "UPDATE suggestions SET lease_until = $1 WHERE id = (SELECT id FROM suggestions \
         WHERE state = 'pending' AND decide_at <= $2 AND lease_until < $2 ORDER BY decide_at LIMIT 1) \
         AND state = 'pending' AND lease_until < $2 \
         RETURNING id, thread, place, place_name, message, author, author_is_bot, text, decide_at",
    )
    .bind(now + 30_000)
    .bind(now)
    .fetch_optional(&ctx.db.pool)
    .await
    .context("claiming a due suggestion")?;
    let Some(r) = claimed else { return Ok(false) };
    let id: String = r.get("id");
    let thread: String = r.get("thread");
    let binding: Binding = thread.parse()?;
    let author: String = r.get("author");
    let m = ChannelMessage {
        binding: binding.clone(),
        message: r.get("message"),
        author: crate::event::Author {
            user: crate::ids::UserId(author),
            external: false,
        },
        author_is_bot: r.get::<i64, _>("author_is_bot") != 0,
        place_name: r.get("place_name"),
        top_level: true,
        at_ms: r.get("decide_at"),
        text: r.get("text"),
    };
    let mut tx = ctx.db.begin().await?;
    let msg = judged(&m, &thread);
    let state = thread_state(&mut tx, &thread).await?;
    let mut mem = memory(&mut tx, policy, &msg).await?;
    let mut d = judge::decide(policy, &msg, &state, &mut mem, false);
    d.reasons.push("decided when its grace window ended".into());
    let new_state = if d.suggests() { "offered" } else { "quiet" };
    let moved = sqlx::query(
        "UPDATE suggestions SET state = $1, decided_at = $2, reasons = $3, score_milli = $4 \
         WHERE id = $5 AND state = 'pending'",
    )
    .bind(new_state)
    .bind(now_ms())
    .bind(serde_json::to_string(&d.reasons)?)
    .bind((d.score * 1000.0) as i64)
    .bind(&id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 1 && d.suggests() {
        offer(ctx, &mut tx, &id, &m, None, &d).await?;
    }
    tx.commit().await?;
    if moved == 1 {
        tracing::info!(suggestion = %id, decision = new_state, reasons = ?d.reasons, "grace window ended");
        ctx.wake();
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shortcut that skips reading the store must never hide an offer that learning made
    /// possible: a score under the shipped threshold but over its lowest bound could suggest.
    #[test]
    fn could_suggest_allows_for_learnt_thresholds() {
        let policy =
            Policy::parse("default.toml", include_str!("../../policies/default.toml")).unwrap();
        let m = |text| Message {
            id: "slack:T1/C1/1.1",
            place: "C1",
            place_name: "backend",
            author: "U1",
            author_is_bot: false,
            at_ms: 0,
            thread: None,
            text,
            mentions_chime: false,
            from_chime: false,
        };
        let state = ThreadState::default();
        // fix_ci: 0.5 for "build … failed", under its threshold 0.6, over its lowest 0.45.
        let borderline = m("the build failed again");
        let d = judge::relevance(&policy, &borderline, &state, &Memory::default());
        assert!(!d.suggests() && (d.score - 0.5).abs() < 1e-9, "{d:?}");
        assert!(could_suggest(&policy, &borderline, &state));
        let mut learnt = Memory::default();
        learnt
            .threshold_shift
            .insert(("C1".into(), "fix_ci".into()), -0.1);
        assert!(judge::relevance(&policy, &borderline, &state, &learnt).suggests());
        // Nothing any threshold could offer, and what is handled already, are skipped.
        assert!(!could_suggest(&policy, &m("lunch at 12:30?"), &state));
        let claimed = ThreadState {
            claimed: true,
            ..ThreadState::default()
        };
        assert!(!could_suggest(&policy, &borderline, &claimed));
    }
}
