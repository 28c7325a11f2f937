//! Linear: agent sessions, delegation and mentions (`[8/12]`). What stands so far: the webhook
//! signature check (`verify.rs`) and the GraphQL operations Chime sends (`graphql/`, each checked
//! against Linear's schema by `tests/linear_graphql.rs`). The webhook route, the agent-session
//! binding and its reporter come next.

pub mod graphql;
pub mod verify;
