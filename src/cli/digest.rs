//! `chime digest preview` prints a week's digest from the database; `chime digest post` has a
//! running Chime post it now (through the inbox, like any event), and waits to see it sent.

use crate::binding::Place;
use crate::db::Db;
use crate::digest::{self, Week};
use crate::event::{Event, PostDigest};
use crate::ids::now_ms;
use crate::queue::inbox::InboxWriter;
use std::time::Duration;

/// The digest of `week` (this week when None) as text; `main.rs` turns it into Block Kit for
/// `--format blocks` (only the wiring names a connector).
pub async fn preview(db: &Db, week: Option<Week>) -> anyhow::Result<String> {
    let week = week.unwrap_or_else(|| Week::of(now_ms()));
    digest::preview(db, week, now_ms()).await
}

/// Where `chime digest post` posts: the places given, else every `[[digest.targets]]` place.
pub fn places(config: &crate::config::Config, to: &[String]) -> anyhow::Result<Vec<Place>> {
    let named: Vec<&str> = if to.is_empty() {
        config
            .digest
            .targets
            .iter()
            .map(|t| t.place.as_str())
            .collect()
    } else {
        to.iter().map(String::as_str).collect()
    };
    if named.is_empty() {
        anyhow::bail!(
            "nowhere to post: give --to slack:TEAM/CHANNEL (or local:CHANNEL), or configure [[digest.targets]]"
        );
    }
    named
        .into_iter()
        .map(|p| digest::schedule::parse_place(p).map_err(anyhow::Error::msg))
        .collect()
}

/// Queues the digest of `week` (the week before this one when None: what the schedule posts on a
/// Monday) for each place, then waits up to `wait` for a running Chime to send them. Returns a
/// line per place.
pub async fn post(
    db: &Db,
    places: &[Place],
    week: Option<Week>,
    wait: Duration,
) -> anyhow::Result<Vec<String>> {
    let week = week.unwrap_or_else(|| Week::of(now_ms()).previous());
    let inbox = InboxWriter::spawn(db.clone(), Default::default());
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut keys = Vec::new();
    for (i, place) in places.iter().enumerate() {
        let delivery = format!("digest-post-{run}-{i}");
        let event = Event::PostDigest(PostDigest {
            place: place.clone(),
            week: week.to_string(),
        });
        inbox.accept("cli", &delivery, &event).await?;
        keys.push(crate::handlers::digest::post_key(&format!(
            "cli:{delivery}"
        )));
    }
    let deadline = tokio::time::Instant::now() + wait;
    let mut lines = Vec::new();
    for (place, key) in places.iter().zip(&keys) {
        let label = place_label(place);
        loop {
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM outbox WHERE idempotency_key = $1")
                    .bind(key)
                    .fetch_optional(&db.pool)
                    .await?;
            match state.as_deref() {
                Some("done") => {
                    lines.push(format!("posted the {week} digest to {label}"));
                    break;
                }
                Some("failed") => {
                    lines.push(format!("could not post the {week} digest to {label}: the platform refused it (see `chime inspect failed` and the server log)"));
                    break;
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    lines.push(format!("queued the {week} digest for {label}; no running Chime has sent it yet (it will once one runs with that surface)"));
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    Ok(lines)
}

fn place_label(p: &Place) -> String {
    match p {
        Place::Slack { team, channel } => format!("slack:{team}/{channel}"),
        Place::Local { channel } => format!("local:{channel}"),
        Place::Linear { org } => format!("linear:{org}"),
        Place::Ide { account } => format!("ide:{account}"),
    }
}
