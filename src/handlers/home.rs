//! A person's own page and settings: showing it when they open it (Slack's App Home), and
//! applying a setting they change there or with `/chime` (then showing the page again).

use crate::connector::Connector;
use crate::context::Ctx;
use crate::event::{HomeOpened, Setting, SettingChanged};
use crate::ids::{now_ms, TeamId, UserId};
use crate::policy::live;
use crate::queue::inbox;
use crate::settings::{self, QuietHours};
use sqlx::AnyConnection;
use std::sync::Arc;

const DAY_MS: i64 = 86_400_000;

pub async fn handle_home_opened(ctx: &Ctx, inbox_id: i64, h: HomeOpened) -> anyhow::Result<()> {
    let connector = ctx.connectors.get(h.surface)?.clone();
    let mut tx = ctx.db.begin().await?;
    show(
        &mut tx,
        ctx,
        &connector,
        &h.workspace,
        &h.author.user,
        inbox_id,
        None,
    )
    .await?;
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    Ok(())
}

#[tracing::instrument(skip_all, fields(user = %s.author.user, change = ?s.change))]
pub async fn handle_setting(ctx: &Ctx, inbox_id: i64, s: SettingChanged) -> anyhow::Result<()> {
    let connector = ctx.connectors.get(s.surface)?.clone();
    let surface = s.surface.as_str();
    let user = s.author.user.as_str();
    // What needs the platform (a time zone, an account found by email) is asked before the
    // transaction, so no platform call holds it open.
    let mut notice = None;
    let mut quiet = None;
    match &s.change {
        Setting::QuietHours { hours: Some(h) } => {
            let offset = connector.utc_offset_of(user).await.unwrap_or(0);
            quiet = Some(QuietHours::parse_hours(h, offset).ok_or_else(|| {
                anyhow::anyhow!("quiet hours {h:?} were checked at the edge and are invalid now")
            })?);
        }
        Setting::Link { surface: other } => {
            match other.parse().ok().and_then(|o| ctx.connectors.get(o).ok()) {
                Some(o)
                    if crate::identity::link_by_email(
                        &ctx.db,
                        connector.as_ref(),
                        &[o.as_ref()],
                        user,
                    )
                    .await? =>
                {
                    notice = Some(format!(
                        "Linked your {other} account by your verified email."
                    ));
                }
                Some(_) => {
                    notice = Some(format!(
                    "No {other} account has the email your Slack profile verifies. Ask Chime in {other} for a code, then send `/chime link CODE` here."
                ));
                }
                None => notice = Some(format!("{other} is not connected to this Chime.")),
            }
        }
        _ => {}
    }
    let mut tx = ctx.db.begin().await?;
    match &s.change {
        Setting::Mute { days } => {
            let mute = crate::event::MuteSuggestions {
                surface: s.surface,
                author: s.author.clone(),
                until_ms: days.map(|d| now_ms() + i64::from(d) * DAY_MS),
                unmute: false,
            };
            live::mute_person(&mut tx, &mute).await?;
        }
        Setting::Unmute => {
            let mute = crate::event::MuteSuggestions {
                surface: s.surface,
                author: s.author.clone(),
                until_ms: None,
                unmute: true,
            };
            live::mute_person(&mut tx, &mute).await?;
        }
        Setting::Verbosity { verbosity } => {
            settings::set_verbosity(&mut tx, surface, user, *verbosity).await?
        }
        Setting::QuietHours { .. } => settings::set_quiet(&mut tx, surface, user, quiet).await?,
        Setting::Unlink { surface: other } => {
            if !crate::identity::unlink(&mut tx, surface, user, other).await? {
                notice = Some(format!("No {other} account was linked."));
            }
        }
        Setting::Link { .. } => {}
    }
    if s.from_home {
        let key = inbox_id;
        show(
            &mut tx,
            ctx,
            &connector,
            &s.workspace,
            &s.author.user,
            key,
            notice,
        )
        .await?;
    }
    inbox::complete_in(&mut tx, inbox_id).await?;
    tx.commit().await?;
    tracing::info!("setting changed");
    Ok(())
}

/// Builds the person's page and queues it for their surface.
async fn show(
    tx: &mut AnyConnection,
    ctx: &Ctx,
    connector: &Arc<dyn Connector>,
    workspace: &TeamId,
    user: &UserId,
    inbox_id: i64,
    notice: Option<String>,
) -> anyhow::Result<()> {
    let surface = connector.surface();
    let mut home =
        crate::home::build(tx, &ctx.connectors, surface.as_str(), user, now_ms()).await?;
    home.notice = notice;
    let key = format!("home:{user}:{inbox_id}");
    connector
        .reporter()
        .show_home(tx, workspace, &key, &home)
        .await
}
