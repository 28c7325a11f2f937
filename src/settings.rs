//! A person's own settings: muted suggestions, quiet hours, and how much of a run's progress
//! they see. Changed on their home (Slack's App Home) or with `/chime`, and read where they
//! matter (the relevance policy, progress updates) every time, so a change takes effect with the
//! next message, on every replica.

use crate::ids::now_ms;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

/// How much of a run someone sees while it works on their request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verbosity {
    /// The status message follows the run's milestones (the default).
    #[default]
    Milestones,
    /// The status message stays as posted until the result replaces it.
    Final,
}

impl Verbosity {
    pub fn as_str(self) -> &'static str {
        match self {
            Verbosity::Milestones => "milestones",
            Verbosity::Final => "final",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "milestones" => Some(Verbosity::Milestones),
            "final" => Some(Verbosity::Final),
            _ => None,
        }
    }
}

/// Hours in which Chime offers someone no suggestions: from `start_min` to `end_min` (minutes
/// after midnight, possibly across midnight) in their own time, UTC + `utc_offset_min`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuietHours {
    pub start_min: u16,
    pub end_min: u16,
    pub utc_offset_min: i32,
}

const DAY_MIN: i64 = 24 * 60;

impl QuietHours {
    /// Whole hours, `start` to `end` (0–23 each, different), in a time zone.
    pub fn hours(start: u8, end: u8, utc_offset_min: i32) -> Option<Self> {
        (start < 24 && end < 24 && start != end && utc_offset_min.abs() <= 14 * 60).then_some(
            Self {
                start_min: u16::from(start) * 60,
                end_min: u16::from(end) * 60,
                utc_offset_min,
            },
        )
    }

    /// Parses `18-9` (whole hours, as `/chime quiet` and the home's menu give them).
    pub fn parse_hours(s: &str, utc_offset_min: i32) -> Option<Self> {
        let (a, b) = s.split_once('-')?;
        let hour = |h: &str| h.trim().parse::<u8>().ok();
        Self::hours(hour(a)?, hour(b)?, utc_offset_min)
    }

    /// Whether `at_ms` falls inside these hours.
    pub fn contains(&self, at_ms: i64) -> bool {
        let local = (at_ms.div_euclid(60_000) + i64::from(self.utc_offset_min)).rem_euclid(DAY_MIN);
        let (s, e) = (i64::from(self.start_min), i64::from(self.end_min));
        if s < e {
            (s..e).contains(&local)
        } else {
            local >= s || local < e
        }
    }

    /// `18:00–09:00 (UTC+01:00)`.
    pub fn label(&self) -> String {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        let o = self.utc_offset_min;
        let sign = if o < 0 { '-' } else { '+' };
        format!(
            "{}–{} (UTC{sign}{:02}:{:02})",
            hm(self.start_min),
            hm(self.end_min),
            o.abs() / 60,
            o.abs() % 60
        )
    }

    /// The `18-9` form, when the hours are whole.
    pub fn short(&self) -> String {
        format!("{}-{}", self.start_min / 60, self.end_min / 60)
    }
}

/// Whether suggestions to someone are muted, and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Muted {
    No,
    Until(i64),
    Forever,
}

/// Everything a person set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub verbosity: Verbosity,
    pub quiet: Option<QuietHours>,
    pub muted: Muted,
}

/// Someone's settings on `surface` as of `now_ms` (defaults when they set nothing).
pub async fn get(
    conn: &mut AnyConnection,
    surface: &str,
    user: &str,
    now_ms: i64,
) -> anyhow::Result<Settings> {
    let row = sqlx::query(
        "SELECT verbosity, quiet_start_min, quiet_end_min, utc_offset_min FROM person_settings \
         WHERE surface = $1 AND user_id = $2",
    )
    .bind(surface)
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    let (verbosity, quiet) = match row {
        None => (Verbosity::default(), None),
        Some(r) => {
            let v: String = r.get("verbosity");
            let start: Option<i64> = r.get("quiet_start_min");
            let end: Option<i64> = r.get("quiet_end_min");
            let quiet = match (start, end) {
                (Some(s), Some(e)) => Some(QuietHours {
                    start_min: u16::try_from(s)?,
                    end_min: u16::try_from(e)?,
                    utc_offset_min: i32::try_from(r.get::<i64, _>("utc_offset_min"))?,
                }),
                _ => None,
            };
            let verbosity = Verbosity::parse(&v)
                .ok_or_else(|| anyhow::anyhow!("unknown verbosity {v:?} in person_settings"))?;
            (verbosity, quiet)
        }
    };
    let mute: Option<Option<i64>> = sqlx::query_scalar(
        "SELECT until_ms FROM policy_person_mutes WHERE surface = $1 AND person = $2 \
         AND (until_ms IS NULL OR until_ms > $3)",
    )
    .bind(surface)
    .bind(user)
    .bind(now_ms)
    .fetch_optional(&mut *conn)
    .await?;
    let muted = match mute {
        None => Muted::No,
        Some(None) => Muted::Forever,
        Some(Some(t)) => Muted::Until(t),
    };
    Ok(Settings {
        verbosity,
        quiet,
        muted,
    })
}

/// Makes the row for `(surface, user)` exist, with the defaults.
async fn ensure_row(conn: &mut AnyConnection, surface: &str, user: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO person_settings (surface, user_id, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (surface, user_id) DO NOTHING",
    )
    .bind(surface)
    .bind(user)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_verbosity(
    conn: &mut AnyConnection,
    surface: &str,
    user: &str,
    v: Verbosity,
) -> anyhow::Result<()> {
    ensure_row(conn, surface, user).await?;
    sqlx::query(
        "UPDATE person_settings SET verbosity = $1, updated_at = $2 WHERE surface = $3 AND user_id = $4",
    )
    .bind(v.as_str())
    .bind(now_ms())
    .bind(surface)
    .bind(user)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_quiet(
    conn: &mut AnyConnection,
    surface: &str,
    user: &str,
    quiet: Option<QuietHours>,
) -> anyhow::Result<()> {
    ensure_row(conn, surface, user).await?;
    sqlx::query(
        "UPDATE person_settings SET quiet_start_min = $1, quiet_end_min = $2, utc_offset_min = $3, \
         updated_at = $4 WHERE surface = $5 AND user_id = $6",
    )
    .bind(quiet.map(|q| i64::from(q.start_min)))
    .bind(quiet.map(|q| i64::from(q.end_min)))
    .bind(quiet.map_or(0, |q| i64::from(q.utc_offset_min)))
    .bind(now_ms())
    .bind(surface)
    .bind(user)
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether `at_ms` is inside `user`'s quiet hours (an account id names one surface's person, as
/// the policy's mutes do).
pub async fn in_quiet_hours(
    conn: &mut AnyConnection,
    user: &str,
    at_ms: i64,
) -> anyhow::Result<bool> {
    let rows = sqlx::query(
        "SELECT quiet_start_min, quiet_end_min, utc_offset_min FROM person_settings \
         WHERE user_id = $1 AND quiet_start_min IS NOT NULL AND quiet_end_min IS NOT NULL",
    )
    .bind(user)
    .fetch_all(conn)
    .await?;
    for r in rows {
        let q = QuietHours {
            start_min: u16::try_from(r.get::<i64, _>("quiet_start_min"))?,
            end_min: u16::try_from(r.get::<i64, _>("quiet_end_min"))?,
            utc_offset_min: i32::try_from(r.get::<i64, _>("utc_offset_min"))?,
        };
        if q.contains(at_ms) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// How much of a run `user` wants to see.
pub async fn verbosity(
    conn: &mut AnyConnection,
    surface: &str,
    user: &str,
) -> anyhow::Result<Verbosity> {
    let v: Option<String> = sqlx::query_scalar(
        "SELECT verbosity FROM person_settings WHERE surface = $1 AND user_id = $2",
    )
    .bind(surface)
    .bind(user)
    .fetch_optional(conn)
    .await?;
    Ok(v.as_deref().and_then(Verbosity::parse).unwrap_or_default())
}

/// The settings in words, for `/chime settings` and the home.
pub fn describe(s: &Settings) -> String {
    let muted = match s.muted {
        Muted::No => "suggestions: on".to_string(),
        Muted::Forever => "suggestions: muted until you unmute them".to_string(),
        Muted::Until(t) => format!("suggestions: muted until {}", utc_time(t)),
    };
    let quiet = match s.quiet {
        None => "quiet hours: none".to_string(),
        Some(q) => format!("quiet hours: {}", q.label()),
    };
    let progress = match s.verbosity {
        Verbosity::Milestones => "progress: milestones as the agent works",
        Verbosity::Final => "progress: the final result only",
    };
    format!("{muted}\n{quiet}\n{progress}")
}

/// `2026-11-30 18:00 UTC`.
pub fn utc_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "a time out of range".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn quiet_hours_cross_midnight_in_the_persons_time() {
        // 18:00–09:00 at UTC+02:00: 16:00 UTC is 18:00 there (quiet), 06:59 UTC is 08:59.
        let q = QuietHours::parse_hours("18-9", 120).unwrap();
        let day = 20_000 * 24 * H;
        assert!(q.contains(day + 16 * H));
        assert!(q.contains(day + 7 * H - 60_000));
        assert!(!q.contains(day + 7 * H));
        assert!(!q.contains(day + 12 * H));
        // Within one day: 09–17 UTC.
        let q = QuietHours::parse_hours("9-17", 0).unwrap();
        assert!(q.contains(day + 9 * H) && !q.contains(day + 17 * H) && !q.contains(day));
        assert_eq!(q.label(), "09:00–17:00 (UTC+00:00)");
        assert_eq!(
            QuietHours::parse_hours("22-7", -330).unwrap().label(),
            "22:00–07:00 (UTC-05:30)"
        );
    }

    #[test]
    fn hostile_hours_are_refused() {
        for bad in [
            "",
            "18",
            "18-18",
            "24-1",
            "-1-5",
            "a-b",
            "18-9-3",
            "99999999999-1",
        ] {
            assert!(QuietHours::parse_hours(bad, 0).is_none(), "{bad}");
        }
        assert!(QuietHours::parse_hours("18-9", 15 * 60).is_none());
        assert!(Verbosity::parse("loud").is_none());
    }
}
