//! A person's own page (Slack's App Home): their recent sessions, their settings, their linked
//! accounts and this week's numbers, read fresh from the store each time it is shown.

use crate::connector::Connectors;
use crate::digest::week::Week;
use crate::ids::UserId;
use crate::settings::{self, Settings};
use serde::Serialize;
use sqlx::{AnyConnection, Row};

/// How many sessions the page lists.
const SESSIONS: i64 = 10;
/// Accounts on these surfaces can be linked to a person (GitHub has no link flow yet: its
/// accounts are shown, and can be unlinked, when linked some other way).
pub const LINKABLE: &[&str] = &["linear"];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Home {
    pub user: UserId,
    pub sessions: Vec<HomeSession>,
    pub settings: Settings,
    /// The person's accounts on other surfaces.
    pub accounts: Vec<Account>,
    /// Surfaces running here on which an account could still be linked.
    pub can_link: Vec<String>,
    pub week: PersonalWeek,
    /// What the last change did, when it needs saying (a link that could not be made).
    pub notice: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HomeSession {
    /// The request that opened it (untrusted text).
    pub request: String,
    /// Its latest turn's state: `queued`, `running`, `succeeded`, ….
    pub state: String,
    pub link: Option<String>,
    pub updated_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Account {
    pub surface: String,
    pub user: String,
}

/// The person's own numbers for the current week.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PersonalWeek {
    pub week: String,
    pub asked: i64,
    pub completed: i64,
    pub failed: i64,
    pub prs_opened: i64,
    pub prs_merged: i64,
    pub suggestions_accepted: i64,
}

/// The page of `user` on `surface`, as of `now_ms`.
pub async fn build(
    conn: &mut AnyConnection,
    connectors: &Connectors,
    surface: &str,
    user: &UserId,
    now_ms: i64,
) -> anyhow::Result<Home> {
    let accounts = crate::identity::accounts(conn, surface, user.as_str()).await?;
    let settings = settings::get(conn, surface, user.as_str(), now_ms).await?;
    let sessions = sessions_of(conn, connectors, &accounts, false).await?;
    let week = personal_week(conn, &accounts, now_ms).await?;
    let others: Vec<Account> = accounts
        .iter()
        .skip(1)
        .map(|(s, u)| Account {
            surface: s.clone(),
            user: u.clone(),
        })
        .collect();
    let can_link = LINKABLE
        .iter()
        .filter(|s| **s != surface && !others.iter().any(|a| a.surface == **s))
        .filter(|s| s.parse().is_ok_and(|s| connectors.is_running(s)))
        .map(|s| s.to_string())
        .collect();
    Ok(Home {
        user: user.clone(),
        sessions,
        settings,
        accounts: others,
        can_link,
        week,
        notice: None,
    })
}

async fn personal_week(
    conn: &mut AnyConnection,
    accounts: &[(String, String)],
    now_ms: i64,
) -> anyhow::Result<PersonalWeek> {
    let week = Week::of(now_ms);
    let (start, end) = week.range_ms();
    let mut w = PersonalWeek {
        week: week.to_string(),
        ..PersonalWeek::default()
    };
    for (s, u) in accounts {
        let like = format!("{s}:%");
        for r in sqlx::query(
            "SELECT state FROM tasks WHERE requester = $1 AND binding LIKE $2 \
             AND created_at >= $3 AND created_at < $4",
        )
        .bind(u)
        .bind(&like)
        .bind(start)
        .bind(end)
        .fetch_all(&mut *conn)
        .await?
        {
            w.asked += 1;
            match r.get::<String, _>("state").as_str() {
                "succeeded" => w.completed += 1,
                "failed" => w.failed += 1,
                _ => {}
            }
        }
        for r in sqlx::query(
            "SELECT opened_at, merged_at FROM pull_requests WHERE requester = $1 AND binding LIKE $2",
        )
        .bind(u)
        .bind(&like)
        .fetch_all(&mut *conn)
        .await?
        {
            let in_week = |t: i64| (start..end).contains(&t);
            w.prs_opened += i64::from(in_week(r.get("opened_at")));
            w.prs_merged += i64::from(r.get::<Option<i64>, _>("merged_at").is_some_and(in_week));
        }
        w.suggestions_accepted += sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM suggestions WHERE answered_by = $1 AND state = 'accepted' \
             AND thread LIKE $2 AND decided_at >= $3 AND decided_at < $4",
        )
        .bind(u)
        .bind(&like)
        .bind(start)
        .bind(end)
        .fetch_one(&mut *conn)
        .await?;
    }
    Ok(w)
}

/// Which states a session is open in: its latest turn waits or works.
const OPEN: &str = "('awaiting_repo', 'queued', 'running')";

/// The person's sessions (on every account of theirs), newest first, at most [`SESSIONS`];
/// only the open ones when `open_only`.
pub async fn sessions_of(
    conn: &mut AnyConnection,
    connectors: &Connectors,
    accounts: &[(String, String)],
    open_only: bool,
) -> anyhow::Result<Vec<HomeSession>> {
    let filter = if open_only {
        format!("AND t.state IN {OPEN}")
    } else {
        String::new()
    };
    let sql = format!(
        "SELECT t.binding, t.state, t.created_at, t.finished_at, f.prompt FROM tasks t \
         JOIN tasks f ON f.session_id = t.session_id AND f.turn_no = 1 \
         WHERE t.requester = $1 AND t.binding LIKE $2 {filter} \
         AND t.turn_no = (SELECT MAX(turn_no) FROM tasks l WHERE l.session_id = t.session_id AND l.requester = $1) \
         ORDER BY t.created_at DESC LIMIT $3"
    );
    let mut sessions = Vec::new();
    for (s, u) in accounts {
        let rows = sqlx::query(&sql)
            .bind(u)
            .bind(format!("{s}:%"))
            .bind(SESSIONS)
            .fetch_all(&mut *conn)
            .await?;
        for r in rows {
            let binding: crate::binding::Binding = r.get::<String, _>("binding").parse()?;
            let created: i64 = r.get("created_at");
            sessions.push(HomeSession {
                request: r.get("prompt"),
                state: r.get("state"),
                link: connectors.link(&binding),
                updated_ms: r.get::<Option<i64>, _>("finished_at").unwrap_or(created),
            });
        }
    }
    sessions.sort_by_key(|s| std::cmp::Reverse(s.updated_ms));
    sessions.truncate(SESSIONS as usize);
    Ok(sessions)
}
