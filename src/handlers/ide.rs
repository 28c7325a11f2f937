//! What editors report over the IDE stream: the workspace they are in (`hello`), and the
//! signals the relevance policy reads (failing tests, errors that persist, failed commands),
//! recorded per person with their time.

use crate::context::Ctx;
use crate::db::storable;
use crate::event::{IdeReport, IdeSignal};
use crate::ids::now_ms;
use crate::queue::inbox;
use sqlx::AnyConnection;

pub async fn handle_ide_signal(ctx: &Ctx, inbox_id: i64, s: IdeSignal) -> anyhow::Result<()> {
    let mut tx = ctx.db.begin().await?;
    let who = (s.account_surface.as_str(), s.author.user.as_str());
    match &s.report {
        IdeReport::Hello {
            client,
            remote,
            branch,
            head,
        } => {
            sqlx::query(
                "INSERT INTO ide_workspaces (token_id, client, remote, branch, head, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (token_id) DO UPDATE SET \
                 client = $2, remote = $3, branch = $4, head = $5, updated_at = $6",
            )
            .bind(s.token)
            .bind(client)
            .bind(remote)
            .bind(branch)
            .bind(head)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        }
        IdeReport::TestRun { failures, .. } => {
            for (name, output) in failures {
                signal(&mut tx, who, "test_failed", name, output).await?;
            }
        }
        IdeReport::Diagnostics {
            file,
            errors,
            first,
        } if *errors > 0 => {
            let detail = format!(
                "{errors} errors; first: {}",
                first.as_deref().unwrap_or("—")
            );
            signal(&mut tx, who, "diagnostics", file, &detail).await?;
        }
        IdeReport::Diagnostics { .. } => {}
        IdeReport::CommandFailed {
            command,
            exit_code,
            output_tail,
        } => {
            let detail = format!("exit {exit_code}\n{output_tail}");
            signal(&mut tx, who, "command_failed", command, &detail).await?;
        }
    }
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    Ok(())
}

async fn signal(
    conn: &mut AnyConnection,
    (surface, user): (&str, &str),
    kind: &str,
    subject: &str,
    detail: &str,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO ide_signals (surface, user_id, kind, subject, detail, at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(surface)
    .bind(user)
    .bind(kind)
    .bind(storable(subject).as_ref())
    .bind(storable(detail).as_ref())
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}
