//! **Use this one** on a best-of-N comparison: the first choice of a finished turn stands. Its
//! attempt's pull request is opened and the other attempts' branches are deleted, both by the
//! outbox's code-host lane; the thread is told which attempt was chosen, and by whom.

use crate::connector::Reporter;
use crate::context::Ctx;
use crate::ids::UserId;
use crate::session::{self, publish, Task};
use sqlx::AnyConnection;

pub async fn handle(
    ctx: &Ctx,
    tx: &mut AnyConnection,
    reporter: &dyn Reporter,
    task: &Task,
    n: u32,
    by: &UserId,
) -> anyhow::Result<()> {
    let offered = task
        .outcome
        .as_ref()
        .and_then(|o| o.attempts.iter().find(|a| a.n == n))
        .is_some_and(|a| a.error.is_none() && a.branch.is_some());
    let key = format!("choose:{}:{}", task.id, by.as_str());
    if !offered {
        // A forged value, or an attempt that failed: nothing to use.
        tracing::info!(task_id = %task.id, attempt = n, "choice of an attempt that has no work; refused");
        let text = format!("Attempt {n} has no work to use.");
        return reporter.tell(tx, &task.binding, &key, by, &text).await;
    }
    if !session::choose_attempt(tx, &task.id, n, by.as_str()).await? {
        let text = match task.chosen_attempt {
            Some(k) => format!("Attempt {k} was already chosen for this turn."),
            None => "An attempt was already chosen for this turn.".to_string(),
        };
        return reporter.tell(tx, &task.binding, &key, by, &text).await;
    }
    let link = ctx.connectors.link(&task.binding);
    publish::queue_choice(tx, &ctx.guard, &ctx.config, task, n, link).await?;
    tracing::info!(task_id = %task.id, attempt = n, by = %by.as_str(), "attempt chosen");
    let next = if publish::enabled(&ctx.config) {
        "Opening its pull request; the other attempts' branches are deleted."
    } else {
        "The other attempts' branches are deleted (set GITHUB_TOKEN for Chime to open pull requests)."
    };
    let text = format!("Using attempt {n}, as chosen. {next}");
    let key = format!("chosen:{}", task.id);
    reporter.tell(tx, &task.binding, &key, by, &text).await
}
