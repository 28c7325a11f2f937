//! Slack's request signing is the crate's v0 scheme ([`crate::signing`]), with Slack's headers
//! (`X-Slack-Signature`, `X-Slack-Request-Timestamp`).

pub use crate::signing::{sign, verify, VerifyError, MAX_SKEW_SECS};
