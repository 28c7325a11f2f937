//! Posting the digest on its schedule, exactly once per period however many replicas run: each
//! target's due time is claimed with a `job_runs` row unique on (digest, due time). A due time
//! missed while no replica was up is posted once, late, and says so (the latest missed one, even
//! when a new due time arrived just as Chime came back); a target's first due time before Chime
//! first ran is skipped, not posted late.

use super::Week;
use crate::binding::Place;
use crate::connector::Connectors;
use crate::db::Db;
use crate::ids::{now_ms, ChannelId, TeamId};
use anyhow::Context;
use chrono::{FixedOffset, TimeZone, Utc};
use chrono_tz::Tz;
use cron::Schedule;
use sqlx::Row;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Where a digest goes: `slack:TEAM/CHANNEL` or `local:CHANNEL`.
pub fn parse_place(s: &str) -> Result<Place, String> {
    let ok =
        |p: &str| !p.is_empty() && p.len() <= 64 && p.chars().all(|c| c.is_ascii_alphanumeric());
    match s.split_once(':') {
        Some(("slack", rest)) => match rest.split_once('/') {
            Some((t, c)) if ok(t) && ok(c) => Ok(Place::Slack {
                team: TeamId::new(t),
                channel: ChannelId::new(c),
            }),
            _ => Err(format!("digest place {s:?} is not slack:TEAM/CHANNEL")),
        },
        Some(("local", c)) if ok(c) => Ok(Place::Local {
            channel: ChannelId::new(c),
        }),
        _ => Err(format!(
            "digest place {s:?} is not slack:TEAM/CHANNEL or local:CHANNEL"
        )),
    }
}

/// A `+HH:MM` / `-HH:MM` offset from UTC.
pub fn parse_offset(s: &str) -> Result<FixedOffset, String> {
    let bad = || format!("utc_offset {s:?} is not like +01:00");
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = rest.split_once(':').ok_or_else(bad)?;
    let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return Err(bad());
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60)).ok_or_else(bad)
}

/// The clock a schedule runs on: a named time zone (with its daylight saving time) or a fixed
/// offset.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Zone {
    Named(Tz),
    Fixed(FixedOffset),
}

/// An IANA time zone name, like `Europe/Berlin`.
pub fn parse_zone(s: &str) -> Result<Tz, String> {
    s.parse::<Tz>()
        .map_err(|_| format!("time_zone {s:?} is not an IANA time zone name like Europe/Berlin"))
}

/// One target, ready to tick.
pub struct Target {
    pub name: String,
    pub place: Place,
    pub schedule: Schedule,
    pub zone: Zone,
}

impl Target {
    /// The target's own time zone, else its fixed offset, else the workspace's (`default_zone`).
    pub fn from_config(
        t: &crate::config::DigestTarget,
        default_zone: &str,
    ) -> Result<Self, String> {
        let zone = match (&t.time_zone, &t.utc_offset) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "digest target {}: give time_zone or utc_offset, not both",
                    t.place
                ))
            }
            (Some(z), None) => Zone::Named(parse_zone(z)?),
            (None, Some(o)) => Zone::Fixed(parse_offset(o)?),
            (None, None) => Zone::Named(parse_zone(default_zone)?),
        };
        Ok(Target {
            name: format!("digest:{}", t.place),
            place: parse_place(&t.place)?,
            schedule: Schedule::from_str(&t.schedule)
                .map_err(|e| format!("digest schedule {:?}: {e}", t.schedule))?,
            zone,
        })
    }

    /// The latest due time at or before `now_ms`, within the last eight days.
    pub fn last_due(&self, now_ms: i64) -> Option<i64> {
        match self.zone {
            Zone::Named(tz) => last_due_in(&self.schedule, &tz, now_ms),
            Zone::Fixed(o) => last_due_in(&self.schedule, &o, now_ms),
        }
    }
}

fn last_due_in<Z: TimeZone>(schedule: &Schedule, zone: &Z, now_ms: i64) -> Option<i64> {
    let now = zone.timestamp_millis_opt(now_ms).single()?;
    let from = now.clone() - chrono::Duration::days(8);
    schedule
        .after(&from)
        .take_while(|t| *t <= now)
        .last()
        .map(|t| t.timestamp_millis())
}

/// Claims `due` for `target`; true when this call won it.
async fn claim(db: &Db, target: &Target, due: i64, owner: &str) -> anyhow::Result<bool> {
    Ok(sqlx::query(
        "INSERT INTO job_runs (job, period, claimed_by, claimed_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (job, period) DO NOTHING",
    )
    .bind(&target.name)
    .bind(due)
    .bind(owner)
    .bind(now_ms())
    .execute(&db.pool)
    .await
    .context("claiming a digest")?
    .rows_affected()
        == 1)
}

async fn finish(db: &Db, target: &Target, due: i64, result: &str) -> anyhow::Result<()> {
    sqlx::query("UPDATE job_runs SET finished_at = $1, result = $2 WHERE job = $3 AND period = $4")
        .bind(now_ms())
        .bind(result)
        .bind(&target.name)
        .bind(due)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// One tick for one target at `now`: posts its digest if it is due and unclaimed.
pub async fn tick(
    db: &Db,
    connectors: &Connectors,
    target: &Target,
    owner: &str,
    now: i64,
    late_ms: i64,
) -> anyhow::Result<bool> {
    let Some(due) = target.last_due(now) else {
        return Ok(false);
    };
    let latest: Option<i64> = sqlx::query("SELECT MAX(period) AS p FROM job_runs WHERE job = $1")
        .bind(&target.name)
        .fetch_one(&db.pool)
        .await?
        .get("p");
    let mut posted = false;
    // A restart just after a new due time must not swallow the one missed before it: the
    // latest due time before this one, newer than anything claimed, is posted (late) too. When
    // this due time was missed as well, it is the one late digest, and the older one is skipped.
    if let (Some(latest), Some(prev)) = (latest, target.last_due(due - 1)) {
        if prev > latest && claim(db, target, prev, owner).await? {
            if now - due > late_ms {
                finish(
                    db,
                    target,
                    prev,
                    "skipped: a later missed digest is posted instead",
                )
                .await?;
            } else {
                posted |= post(db, connectors, target, prev, now, late_ms).await?;
            }
        }
    }
    if !claim(db, target, due, owner).await? {
        return Ok(posted);
    }
    if latest.is_none() && now - due > late_ms {
        // Due before this target ever ran here: not a missed digest.
        finish(db, target, due, "skipped: due before Chime first ran").await?;
        return Ok(posted);
    }
    posted |= post(db, connectors, target, due, now, late_ms).await?;
    Ok(posted)
}

/// Posts the digest due at `due` (claimed by the caller), saying so when it is late.
async fn post(
    db: &Db,
    connectors: &Connectors,
    target: &Target,
    due: i64,
    now: i64,
    late_ms: i64,
) -> anyhow::Result<bool> {
    // The digest posted on a Monday is last week's.
    let week = Week::of(due).previous();
    let (this, before) = (
        super::stats::compute(db, week, now).await?,
        super::stats::compute(db, week.previous(), now).await?,
    );
    let mut text = super::render_text(&this, &before)?;
    let late = now - due > late_ms;
    if late {
        let at = Utc
            .timestamp_millis_opt(due)
            .single()
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_default();
        text = format!("_Late: this digest was due at {at}, while Chime was down._\n\n{text}");
    }
    let connector = connectors
        .get(target.place.surface())
        .context("the digest's surface is not running here")?;
    let key = format!("{}:{due}", target.name);
    let mut tx = db.begin().await?;
    connector
        .reporter()
        .post_digest(&mut tx, &target.place, &key, &text)
        .await?;
    tx.commit().await?;
    finish(db, target, due, &format!("posted {week}")).await?;
    tracing::info!(target = %target.name, %week, late, "digest queued");
    Ok(true)
}

/// Ticks every target every `every` until `shutdown`.
pub async fn run(
    db: Db,
    connectors: Arc<Connectors>,
    targets: Vec<Target>,
    owner: String,
    (every, late): (Duration, Duration),
    wake: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let late_ms = late.as_millis() as i64;
    loop {
        for t in &targets {
            match tick(&db, &connectors, t, &owner, now_ms(), late_ms).await {
                Ok(true) => wake.notify_one(),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(target = %t.name, error = %format!("{e:#}"), "digest tick failed")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_offsets_and_due_times() {
        assert!(matches!(
            parse_place("slack:T1/C1"),
            Ok(Place::Slack { .. })
        ));
        assert!(matches!(
            parse_place("local:CGENERAL"),
            Ok(Place::Local { .. })
        ));
        for bad in [
            "",
            "slack:T1",
            "slack:T1/C/1",
            "linear:x",
            "local:",
            "local:C 1",
        ] {
            assert!(parse_place(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_offset("+01:30").unwrap().local_minus_utc(), 5400);
        assert_eq!(parse_offset("-05:00").unwrap().local_minus_utc(), -18000);
        for bad in ["", "01:00", "+1", "+25:00", "+01:60"] {
            assert!(parse_offset(bad).is_err(), "{bad:?}");
        }
        let target = |tz: Option<&str>, offset: Option<&str>| {
            Target::from_config(
                &crate::config::DigestTarget {
                    place: "local:CGENERAL".into(),
                    schedule: "0 0 9 * * Mon".into(),
                    time_zone: tz.map(Into::into),
                    utc_offset: offset.map(Into::into),
                },
                "UTC",
            )
        };
        let t = target(None, Some("+01:00")).unwrap();
        // Monday 30 November 2026 at 08:30 UTC is 09:30 at +01:00: due at 08:00 UTC that day.
        let now = 1_796_027_400_000;
        assert_eq!(t.last_due(now), Some(1_796_025_600_000));
        // Europe/Berlin is +01:00 in November: the same due time.
        let berlin = target(Some("Europe/Berlin"), None).unwrap();
        assert_eq!(berlin.last_due(now), Some(1_796_025_600_000));
        // ... and +02:00 in summer: Monday 6 July 2026 09:00 there is 07:00 UTC.
        let july = 1_783_328_400_000; // 2026-07-06 09:00 UTC
        assert_eq!(berlin.last_due(july), Some(july - 2 * 3_600_000));
        // Without its own zone, the workspace's (UTC here): 09:00 UTC.
        assert_eq!(
            target(None, None).unwrap().last_due(now),
            Some(1_796_029_200_000 - 7 * 86_400_000)
        );
        assert!(target(Some("Mars/Olympus"), None).is_err());
        assert!(target(Some("UTC"), Some("+01:00")).is_err());
    }
}
