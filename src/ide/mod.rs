//! The IDE connector: editors connect to `GET /ide/stream` (a WebSocket) with a per-person token
//! and speak the protocol in `integrations/ide/PROTOCOL.md`. Each client message is stored in
//! the inbox (deduplicated on the token and the message id) before it is acknowledged.

pub mod connector;
pub mod protocol;
pub mod reporter;
pub mod stream;

pub use connector::IdeConnector;
