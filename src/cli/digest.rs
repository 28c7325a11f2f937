//! `chime digest preview`: a week's digest from the database, printed, not posted.

use crate::db::Db;
use crate::digest::{self, Week};
use crate::ids::now_ms;

/// The digest of `week` (this week when None) as text, or as a Slack Block Kit message.
pub async fn preview(db: &Db, week: Option<Week>, format: &str) -> anyhow::Result<String> {
    let week = week.unwrap_or_else(|| Week::of(now_ms()));
    let text = digest::preview(db, week, now_ms()).await?;
    Ok(match format {
        "blocks" => format!(
            "{}\n",
            serde_json::to_string_pretty(&crate::slack::blocks::text_message(&text))?
        ),
        _ => text,
    })
}
