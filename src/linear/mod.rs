//! Linear: agent sessions, delegation and mentions (`[8/12]`). `http.rs` verifies webhooks
//! (`verify.rs`, held to `@linear/sdk`'s verifier) and finishes OAuth installs; `events.rs` turns
//! payloads into Chime's events; `store.rs` keeps each workspace's token and each session's issue;
//! `reporter.rs` answers as agent activities (or comments), `sender.rs` delivers them through
//! `api.rs` with the operations in `graphql/`, each checked against Linear's schema by
//! `tests/linear_graphql.rs`.

pub mod api;
pub mod connector;
pub mod events;
pub mod graphql;
pub mod http;
pub mod reporter;
pub mod sender;
pub mod store;
pub mod verify;

pub use connector::LinearConnector;
