//! The workers: one loop drains the inbox through the router ([`crate::dispatch`]), one runs tasks
//! under leases.

use crate::backend::{BackendError, Checkpoint, Outcome, Progress};
use crate::connector::Connector;
use crate::context::Ctx;
use crate::lease::Lease;
pub use crate::queue::dispatch::run_inbox_loop;
use crate::session::{self, input::build_input, plan::Plan, Claim, Task, TaskState};
use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Milestones edit the status message at most this often; the outbox coalesces the rest.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Claims and runs tasks until `shutdown`; then gives running tasks `grace` to finish before
/// stopping them and handing their leases back.
pub async fn run_task_loop(ctx: Arc<Ctx>, shutdown: CancellationToken, grace: Duration) {
    let slots = Arc::new(Semaphore::new(ctx.config.worker.concurrency));
    let abort = CancellationToken::new();
    let mut running = JoinSet::new();
    let poll = Duration::from_millis(ctx.config.worker.poll_ms);
    let lease_ms = ctx.config.worker.lease_secs as i64 * 1000;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("semaphore is never closed"),
            _ = shutdown.cancelled() => break,
        };
        while running.try_join_next().is_some() {}
        match session::claim_task(&ctx.db, &ctx.worker_id, lease_ms).await {
            Ok(Some(claim)) => {
                let (ctx, abort) = (ctx.clone(), abort.clone());
                running.spawn(async move {
                    run_task(&ctx, claim, abort).await;
                    drop(permit);
                });
            }
            Ok(None) => {
                drop(permit);
                tokio::select! {
                    _ = ctx.task_wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.cancelled() => break,
                }
            }
            Err(e) => {
                drop(permit);
                tracing::error!(error = %format!("{e:#}"), "task claim failed");
                tokio::time::sleep(poll).await;
            }
        }
    }
    if !running.is_empty() {
        tracing::info!(
            tasks = running.len(),
            grace_secs = grace.as_secs(),
            "waiting for running tasks"
        );
        if tokio::time::timeout(grace, async {
            while running.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            abort.cancel();
            while running.join_next().await.is_some() {}
        }
    }
    match session::release_leases(&ctx.db, &ctx.worker_id).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(tasks = n, "handed unfinished tasks back to the queue"),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "could not release leases; they expire on their own")
        }
    }
}

#[tracing::instrument(skip_all, fields(task_id = %claim.task.id, session_id = %claim.task.session_id, turn = claim.task.turn_no, attempt = claim.task.attempts))]
async fn run_task(ctx: &Ctx, claim: Claim, abort: CancellationToken) {
    // The lease is renewed from the claim on: fetching the thread or finishing may take longer
    // than a lease, and an expired lease would let a second runner start the same agent.
    let lease = Lease::start(
        ctx.db.clone(),
        claim.task.id.clone(),
        claim.token.clone(),
        Duration::from_secs(ctx.config.worker.lease_secs),
        abort.clone(),
    );
    if let Err(e) = try_run_task(ctx, &claim, &lease, &abort).await {
        tracing::error!(error = %format!("{e:#}"), "task run failed inside Chime; the lease will expire and it is retried");
    }
    lease.end().await;
}

async fn try_run_task(
    ctx: &Ctx,
    claim: &Claim,
    lease: &Lease,
    abort: &CancellationToken,
) -> anyhow::Result<()> {
    let task = &claim.task;
    let end = |state, outcome, error| finish(ctx, claim, lease, abort, state, outcome, error);
    let connector = match ctx.connectors.for_binding(&task.binding) {
        Ok(c) => c.clone(),
        Err(e) => {
            // Running it would answer nowhere, and claiming it again would loop every lease: it ends
            // here, once (with the outcome an earlier run recorded, if any).
            let why = format!("{e}, so this task can neither run nor answer here");
            tracing::error!(surface = task.binding.surface().as_str(), reason = %why, "failing a task whose surface is not running");
            return match claim.recorded {
                Some(state) => end(state, task.outcome.clone(), task.error.clone()).await,
                None => end(TaskState::Failed, None, Some(why)).await,
            };
        }
    };
    if let Some(state) = claim.recorded {
        // An earlier claim ran the agent to the end but could not finish the task: finish it from
        // the record rather than run the agent again.
        tracing::info!(
            state = state.as_str(),
            "finishing from the outcome an earlier run recorded"
        );
        return end(state, task.outcome.clone(), task.error.clone()).await;
    }
    if task.cancel_requested {
        return end(TaskState::Cancelled, None, None).await;
    }
    if task.attempts > ctx.config.worker.max_attempts {
        let msg = format!(
            "gave up after {} attempts: the worker running it stopped each time",
            task.attempts - 1
        );
        return end(TaskState::Failed, None, Some(msg)).await;
    }
    let Some(backend) = ctx.backends.get(&task.backend).cloned() else {
        let msg = format!("backend {:?} is not configured on this Chime", task.backend);
        return end(TaskState::Failed, None, Some(msg)).await;
    };
    // A turn for a public place does not see what was said in the session's private places.
    let hidden = crate::db::retry("finding the session's places", || {
        session::links::places(&ctx.db, &ctx.connectors, task)
    })
    .await?
    .hidden();
    let history = crate::db::retry("loading the session's history", || {
        session::history(&ctx.db, &task.session_id, task.turn_no, &hidden)
    })
    .await?;
    let context = tokio::select! {
        c = connector.thread_context(&task.binding) => Some(c),
        _ = lease.cancel.cancelled() => None,
    };
    let result = match context {
        Some(context) => {
            let mut input = build_input(
                &ctx.templates,
                &ctx.guard,
                ctx.config.agent.max_history_chars,
                task,
                history,
                context,
                &|user| connector.name_person(user),
            )?;
            input.base = crate::db::retry("reading where the session starts", || {
                session::base(&ctx.db, &task.session_id)
            })
            .await?;
            // A cloud run an earlier claim started is resumed, never launched twice.
            input.remote = crate::db::retry("reading the task's remote run", || {
                session::claim::remote_ref(&ctx.db, &task.id)
            })
            .await?;
            let (db, id, token) = (ctx.db.clone(), task.id.clone(), claim.token.clone());
            input.checkpoint = Checkpoint::new(
                move |remote| {
                    let (db, id, token) = (db.clone(), id.clone(), token.clone());
                    Box::pin(async move {
                        crate::db::retry("recording the task's remote run", || {
                            session::claim::record_remote(&db, &id, &token, &remote)
                        })
                        .await
                    })
                },
                lease.stop_flag(),
            )
            .with_reports({
                let (db, id) = (ctx.db.clone(), task.id.clone());
                move |seq| {
                    let (db, id) = (db.clone(), id.clone());
                    Box::pin(async move { session::claim::reports(&db, &id, seq).await })
                }
            });
            tracing::info!(backend = %task.backend, input_chars = input.rendered.len(), "starting agent");
            let (ptx, prx) = mpsc::channel::<Progress>(64);
            let forwarder = tokio::spawn(forward_progress(
                ctx.db.clone(),
                connector.clone(),
                task.clone(),
                prx,
                ctx.outbox_wake.clone(),
            ));
            // A lost lease, a Stop or shutdown fires `lease.cancel`, which stops the agent.
            let started = std::time::Instant::now();
            let result = backend.run(&input, ptx, lease.cancel.clone()).await;
            let outcome = match &result {
                Ok(_) => "succeeded",
                Err(BackendError::Cancelled) => "cancelled",
                Err(_) => "failed",
            };
            crate::metrics::backend_turn(&task.backend, outcome, started.elapsed().as_secs_f64());
            let _ = forwarder.await;
            result
        }
        // Stopped before the agent started.
        None => Err(BackendError::Cancelled),
    };

    if lease.is_lost() {
        tracing::warn!("lost the task's lease to another claim; leaving the result to it");
        return Ok(());
    }
    match result {
        Ok(outcome) => end(TaskState::Succeeded, Some(outcome), None).await,
        Err(BackendError::Cancelled) if lease.stop_requested() => {
            end(TaskState::Cancelled, None, None).await
        }
        Err(BackendError::Cancelled) => {
            tracing::info!("stopped by shutdown; the task goes back to the queue");
            Ok(())
        }
        Err(e @ BackendError::TimedOut(_)) => {
            end(TaskState::Failed, None, Some(format!("the agent {e}"))).await
        }
        Err(BackendError::Failed(msg)) => end(TaskState::Failed, None, Some(msg)).await,
    }
}

/// Ends the task and posts its final card in one transaction, if this claim still holds it.
///
/// The outcome is recorded on the task first, so that a runner that cannot finish (the database
/// refuses for longer than its lease, or the process dies) leaves the next claim something to
/// finish from instead of an agent to run again. Finishing is then retried for as long as the
/// lease is held: the heartbeat keeps renewing it meanwhile.
async fn finish(
    ctx: &Ctx,
    claim: &Claim,
    lease: &Lease,
    abort: &CancellationToken,
    state: TaskState,
    outcome: Option<Outcome>,
    error: Option<String>,
) -> anyhow::Result<()> {
    let task = &claim.task;
    let mut recorded = claim.recorded.is_some();
    let mut delay = Duration::from_millis(100);
    for attempt in 1u32.. {
        if !recorded {
            match session::record_outcome(
                &ctx.db,
                &task.id,
                &claim.token,
                state,
                outcome.as_ref(),
                error.as_deref(),
            )
            .await
            {
                Ok(_) => recorded = true,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "could not record the outcome yet")
                }
            }
        }
        let e = match finish_once(ctx, claim, state, outcome.clone(), error.clone()).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if lease.is_lost() {
            tracing::error!(error = %format!("{e:#}"), recorded, "could not end the task before losing its lease; the next claim finishes it");
            return Ok(());
        }
        if abort.is_cancelled() && attempt > 3 {
            return Err(e.context("ending the task at shutdown; the next claim finishes it"));
        }
        tracing::warn!(error = %format!("{e:#}"), attempt, "ending the task failed; retrying while the lease is held");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = abort.cancelled(), if !abort.is_cancelled() => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    unreachable!("the loop returns")
}

async fn finish_once(
    ctx: &Ctx,
    claim: &Claim,
    state: TaskState,
    outcome: Option<Outcome>,
    error: Option<String>,
) -> anyhow::Result<()> {
    let task = &claim.task;
    // Without its connector (see `try_run_task`) the task still ends; only its card is not shown.
    let connector = ctx.connectors.for_binding(&task.binding).ok();
    // One session across tools: the end shows in the session's other places too (asked before
    // the transaction: whether a place is private may take a platform call).
    let mirror = &ctx.config.mirror;
    let mirror_to = if mirror.result || mirror.pr_link {
        session::links::places(&ctx.db, &ctx.connectors, task)
            .await?
            .mirror_to()
            .into_iter()
            .cloned()
            .collect()
    } else {
        vec![]
    };
    let mut tx = ctx.db.begin().await?;
    if !session::finish_task(
        &mut tx,
        &task.id,
        Some(&claim.token),
        state,
        outcome.as_ref(),
        error.as_deref(),
    )
    .await?
    {
        tracing::warn!("task was no longer ours to finish");
        return Ok(());
    }
    let done = session::get_task(&mut tx, &task.id)
        .await?
        .context("task vanished")?;
    // What it cost, and the admins' notice when that takes a budget past 80% this month.
    let notices = crate::spend::record(&mut tx, &ctx.config, &done).await?;
    if let Some(c) = &connector {
        for (key, text) in &notices {
            tracing::warn!(notice = %text, "budget notice");
            for admin in c.admins() {
                c.reporter()
                    .tell_directly(&mut tx, &admin, &format!("{key}:{admin}"), text)
                    .await?;
            }
        }
    }
    if let Some(url) = done.outcome.as_ref().and_then(|o| o.pr_url.as_deref()) {
        // GitHub's webhook reports its merge and CI back to this thread.
        session::pulls::track(&mut tx, &done, url, None).await?;
    }
    // A plan changes nothing: there is nothing to push until its work turn ran.
    if state == TaskState::Succeeded && task.mode == session::TurnMode::Work {
        // Pushed and opened by the outbox once this commits, never by the turn itself.
        let link = ctx.connectors.link(&task.binding);
        session::publish::queue_for_turn(&mut tx, &ctx.guard, &ctx.config, &done, link).await?;
    }
    if let Some(connector) = connector {
        connector.reporter().show_result(&mut tx, &done).await?;
    }
    for at in &mirror_to {
        if let Ok(there) = ctx.connectors.for_binding(at) {
            let origin = task.binding.surface().display_name();
            there
                .reporter()
                .show_mirrored(&mut tx, at, &done, origin, mirror.result)
                .await?;
        }
    }
    session::direct::tell_person(ctx, &mut tx, &done).await?;
    tx.commit().await?;
    tracing::info!(state = state.as_str(), "task finished");
    ctx.wake();
    Ok(())
}

async fn forward_progress(
    db: crate::db::Db,
    connector: Arc<dyn Connector>,
    task: Task,
    mut rx: mpsc::Receiver<Progress>,
    wake: Arc<tokio::sync::Notify>,
) {
    // Someone who asked for the final result only sees no milestones (their own setting).
    let wants = async {
        let mut conn = db.pool.acquire().await?;
        crate::settings::verbosity(&mut conn, task.binding.surface().as_str(), &task.requester)
            .await
    };
    if matches!(wants.await, Ok(crate::settings::Verbosity::Final)) {
        while rx.recv().await.is_some() {}
        return;
    }
    // The plan goes on where an earlier claim of this turn left it (a restart, another replica).
    let loaded = async {
        let mut conn = db.pool.acquire().await?;
        Plan::load(&mut conn, &task.id).await
    };
    let mut plan = loaded.await.unwrap_or_else(|e| {
        tracing::warn!(error = %format!("{e:#}"), "could not read the turn's plan; starting a new one");
        Plan::starting()
    });
    let mut last_sent = tokio::time::Instant::now() - PROGRESS_EVERY;
    let mut pending: Option<String> = None;
    loop {
        let next = tokio::time::timeout_at(last_sent + PROGRESS_EVERY, rx.recv()).await;
        match next {
            Ok(Some(p)) => {
                plan.advance(&p);
                pending = Some(p.text);
            }
            Ok(None) => {
                // The final card replaces whatever milestone was still waiting; its plan has
                // every step.
                if pending.is_some() {
                    let saved = async {
                        let mut conn = db.pool.acquire().await?;
                        plan.save(&mut conn, &task.id).await
                    };
                    if let Err(e) = saved.await {
                        tracing::warn!(error = %format!("{e:#}"), "could not save the turn's plan");
                    }
                }
                return;
            }
            Err(_) => {}
        }
        if tokio::time::Instant::now() >= last_sent + PROGRESS_EVERY {
            if let Some(text) = pending.take() {
                last_sent = tokio::time::Instant::now();
                // Milestones come no faster than PROGRESS_EVERY, each with the whole plan: the
                // coalescing Slack's tiers ask for, and no step lost in between.
                let task = Task {
                    plan: Some(plan.clone()),
                    ..task.clone()
                };
                let write = async {
                    let mut conn = db.pool.acquire().await?;
                    plan.save(&mut conn, &task.id).await?;
                    connector
                        .reporter()
                        .update_status(&mut conn, &task, &text)
                        .await
                };
                match write.await {
                    Ok(()) => wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "could not queue a progress update")
                    }
                }
            }
        }
    }
}
