//! Failures sorted by what their caller does next: most are transient (the database is busy, a
//! platform is down) and are retried with backoff; a [`Permanent`] one can never succeed however
//! often it is tried, so the work is parked as failed with its reason, and the person told where
//! possible, instead of being retried forever.

use crate::binding::Surface;

#[derive(Debug, thiserror::Error)]
pub enum Permanent {
    /// The work belongs to a surface this process does not run (a playground task after a
    /// restart in Slack-only mode): nothing here can handle it or answer on it.
    #[error("the {} surface is not running in this Chime", .0.as_str())]
    SurfaceNotRunning(Surface),
    /// The event itself can never be acted on (a field no edge would have let through).
    #[error("{0}")]
    BadEvent(String),
}

/// The permanent failure inside `e`, if any (it may be wrapped in context).
pub fn permanent(e: &anyhow::Error) -> Option<&Permanent> {
    e.chain().find_map(|c| c.downcast_ref::<Permanent>())
}
