//! The inbox worker: hands each inbox row to the router, different threads concurrently and each
//! thread's rows in order.

use crate::context::Ctx;
use crate::event::Event;
use crate::queue::inbox::{self, InboxRow};
use crate::router;
use futures::FutureExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Inbox rows in hand at once. Rows of different threads are handled concurrently, so one slow
/// lookup (a stalled `users.info`) holds up only its own thread; one thread's rows go in order.
const INBOX_IN_HAND: usize = 64;
/// On shutdown, rows being handled get this long to finish; the rest are retried after restart.
const INBOX_DRAIN: Duration = Duration::from_secs(5);

pub async fn run_inbox_loop(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let poll = Duration::from_millis(ctx.config.worker.poll_ms);
    // Lane (thread) → its rows waiting behind the one being handled. A lane is present while one
    // of its rows is being handled.
    let mut lanes: HashMap<String, VecDeque<InboxRow>> = HashMap::new();
    let mut in_hand: HashSet<i64> = HashSet::new();
    let mut running: JoinSet<(String, i64)> = JoinSet::new();
    while !shutdown.is_cancelled() {
        let room = INBOX_IN_HAND.saturating_sub(in_hand.len());
        let rows = if room == 0 {
            vec![]
        } else {
            match inbox::claim(&ctx.db, room as i64, 60_000).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "inbox claim failed");
                    vec![]
                }
            }
        };
        let claimed = !rows.is_empty();
        for row in rows {
            // A row still in hand whose claim ran out and was claimed again is handled once.
            if !in_hand.insert(row.id) {
                continue;
            }
            let lane = lane_of(&row);
            match lanes.get_mut(&lane) {
                Some(waiting) => waiting.push_back(row),
                None => {
                    lanes.insert(lane.clone(), VecDeque::new());
                    running.spawn(handle_row(ctx.clone(), lane, row));
                }
            }
        }
        if claimed && in_hand.len() < INBOX_IN_HAND {
            continue; // More may be waiting.
        }
        tokio::select! {
            Some(done) = running.join_next(), if !running.is_empty() => {
                row_done(&ctx, &mut lanes, &mut in_hand, &mut running, done);
            }
            _ = ctx.inbox_wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.cancelled() => break,
        }
        while let Some(done) = running.try_join_next() {
            row_done(&ctx, &mut lanes, &mut in_hand, &mut running, done);
        }
    }
    let _ = tokio::time::timeout(INBOX_DRAIN, async {
        while running.join_next().await.is_some() {}
    })
    .await;
}

/// Which rows must be handled one after another: those of one thread, the news of one
/// repository's pull requests (a merge must not overtake the CI result before it), the reports
/// on one turn, and one person's settings.
fn lane_of(row: &InboxRow) -> String {
    let binding = match &row.event {
        Ok(Event::Mention(m)) => Some(&m.binding),
        Ok(Event::ButtonClicked(b)) => b.binding.as_ref(),
        Ok(Event::Message(m)) => Some(&m.binding),
        Ok(Event::StopRequested(s)) => Some(&s.binding),
        Ok(Event::ConversationStarted(c)) => Some(&c.binding),
        Ok(Event::PullRequest(p)) => return format!("pr/{}", p.repo),
        Ok(Event::BackendUpdate(u)) => return format!("task/{}", u.task),
        Ok(Event::RemoteStatus(s)) => return format!("remote/{}", s.remote),
        // One person's settings change in the order they were made (mute, then unmute), and
        // their page is shown after the changes before it.
        Ok(Event::MuteSuggestions(m)) => return format!("person/{}/{}", m.surface, m.author.user),
        Ok(Event::SettingChanged(c)) => return format!("person/{}/{}", c.surface, c.author.user),
        Ok(Event::HomeOpened(h)) => return format!("person/{}/{}", h.surface, h.author.user),
        // One person's editor reports in the order they were sent
        // (across their editors, so the policy counts their suggestions one at a time).
        Ok(Event::IdeSignal(s)) => return format!("ide/{}.{}", s.account_surface, s.author.user),
        Ok(Event::Request(_) | Event::LinkAccount(_) | Event::PostDigest(_)) => None,
        Err(_) => None,
    };
    match binding {
        Some(b) => b.to_string(),
        None => format!("row/{}", row.id),
    }
}

async fn handle_row(ctx: Arc<Ctx>, lane: String, row: InboxRow) -> (String, i64) {
    let id = row.id;
    // A panic in a handler must not take its lane with it: it is caught and the row retried.
    let handled = std::panic::AssertUnwindSafe(router::dispatch(&ctx, &row))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the handler panicked")));
    if let Err(e) = handled {
        // A permanent failure is parked once; telling the person is not possible for the one kind
        // there is today (the event's own surface is not running here).
        let permanent = crate::failure::permanent(&e).is_some() || row.event.is_err();
        if permanent {
            tracing::error!(inbox_id = id, error = %format!("{e:#}"), "event can never be handled; parked as failed");
        } else {
            tracing::error!(inbox_id = id, error = %format!("{e:#}"), "event handling failed; will retry");
        }
        if let Err(e) = inbox::fail(&ctx.db, &row, &format!("{e:#}"), permanent).await {
            tracing::error!(error = %format!("{e:#}"), "recording the failure failed");
        }
    }
    (lane, id)
}

/// After a row is handled: the next row of its lane starts, or the lane closes.
fn row_done(
    ctx: &Arc<Ctx>,
    lanes: &mut HashMap<String, VecDeque<InboxRow>>,
    in_hand: &mut HashSet<i64>,
    running: &mut JoinSet<(String, i64)>,
    done: Result<(String, i64), tokio::task::JoinError>,
) {
    let Ok((lane, id)) = done else {
        return; // Only aborted at shutdown: panics are caught in `handle_row`.
    };
    in_hand.remove(&id);
    match lanes.get_mut(&lane).and_then(VecDeque::pop_front) {
        Some(next) => {
            running.spawn(handle_row(ctx.clone(), lane, next));
        }
        None => {
            lanes.remove(&lane);
        }
    }
}
