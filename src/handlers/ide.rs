//! What editors report over the IDE stream: the signals the relevance policy reads (failing tests, errors that persist, failed commands),
//! recorded per person with their time, then judged by the relevance policy's `[[ide]]` rules,
//! which may offer one suggestion in the person's editors.

use crate::context::Ctx;
use crate::db::storable;
use crate::event::{IdeReport, IdeSignal};
use crate::ids::now_ms;
use crate::policy::{ide as rules, live};
use crate::queue::inbox;
use sqlx::AnyConnection;

pub async fn handle_ide_signal(ctx: &Ctx, inbox_id: i64, s: IdeSignal) -> anyhow::Result<()> {
    let mut tx = ctx.db.begin().await?;
    let who = (s.account_surface.as_str(), s.author.user.as_str());
    // (kind, subject, detail) of each signal, for the policy.
    let mut signals: Vec<(&str, &str, String)> = Vec::new();
    match &s.report {
        // The stream recorded the workspace before it read the connection's next message, so a
        // hand-off right behind its hello finds it.
        IdeReport::Hello { .. } => {}
        IdeReport::TestRun { failures, .. } => {
            for (name, output) in failures {
                signal(&mut tx, who, "test_failed", name, output).await?;
                signals.push(("test_failed", name, output.clone()));
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
            signals.push(("diagnostics", file, detail));
        }
        IdeReport::Diagnostics { file, .. } => {
            // A clean report ends the file's stretch of errors.
            signal(&mut tx, who, "diagnostics_clear", file, "").await?;
        }
        IdeReport::CommandFailed {
            command,
            exit_code,
            output_tail,
        } => {
            let detail = format!("exit {exit_code}\n{output_tail}");
            signal(&mut tx, who, "command_failed", command, &detail).await?;
            signals.push(("command_failed", command, detail));
        }
    }
    if let (Some(policy), false) = (ctx.policy.clone(), signals.is_empty()) {
        let account = format!("{}.{}", s.account_surface, s.author.user);
        let workspace = workspace(&mut tx, s.token).await?;
        for (kind, subject, detail) in &signals {
            let signal = rules::Signal {
                account: &account,
                surface: &s.account_surface,
                author: &s.author,
                kind,
                subject,
                detail,
                workspace: &workspace,
            };
            if let Some((message, offer)) = rules::judge_signal(&mut tx, &policy, &signal).await? {
                live::offer_now(ctx, &mut tx, &message, offer).await?;
                break;
            }
        }
    }
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    ctx.wake();
    Ok(())
}

/// "acme/api on main at 1a2b3c4" from the editor's last hello.
async fn workspace(conn: &mut AnyConnection, token: i64) -> anyhow::Result<String> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT remote, branch, head FROM ide_workspaces WHERE token_id = $1")
            .bind(token)
            .fetch_optional(conn)
            .await?;
    Ok(match row {
        Some((remote, branch, head)) => format!(
            "{} on {} at {}",
            crate::templates::one_line(&remote, 200),
            crate::templates::one_line(&branch, 100),
            crate::templates::one_line(&head, 40)
        ),
        None => "workspace unknown: the editor sent no hello".into(),
    })
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
