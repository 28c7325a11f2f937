//! `chime digest preview`: a week's digest from the database, printed, not posted.

use crate::db::Db;
use crate::digest::{self, Week};
use crate::ids::now_ms;

/// The digest of `week` (this week when None) as text; `main.rs` turns it into Block Kit for
/// `--format blocks` (only the wiring names a connector).
pub async fn preview(db: &Db, week: Option<Week>) -> anyhow::Result<String> {
    let week = week.unwrap_or_else(|| Week::of(now_ms()));
    digest::preview(db, week, now_ms()).await
}
