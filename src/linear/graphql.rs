//! The GraphQL operations Chime sends to Linear, one per file in `graphql/`, each validated
//! against Linear's published schema by `tests/linear_graphql.rs`.

/// Every operation, by file name, as sent.
pub const OPERATIONS: &[(&str, &str)] = &[
    ("agent_activity_create", AGENT_ACTIVITY_CREATE),
    ("agent_session_update", AGENT_SESSION_UPDATE),
    ("issue_context", ISSUE_CONTEXT),
    ("issue_update", ISSUE_UPDATE),
    ("viewer", VIEWER),
    ("users_by_email", USERS_BY_EMAIL),
    ("comment_create", COMMENT_CREATE),
    ("user_email", USER_EMAIL),
];

pub const AGENT_ACTIVITY_CREATE: &str = include_str!("graphql/agent_activity_create.graphql");
pub const AGENT_SESSION_UPDATE: &str = include_str!("graphql/agent_session_update.graphql");
pub const ISSUE_CONTEXT: &str = include_str!("graphql/issue_context.graphql");
pub const ISSUE_UPDATE: &str = include_str!("graphql/issue_update.graphql");
pub const VIEWER: &str = include_str!("graphql/viewer.graphql");
pub const USERS_BY_EMAIL: &str = include_str!("graphql/users_by_email.graphql");
pub const USER_EMAIL: &str = include_str!("graphql/user_email.graphql");
pub const COMMENT_CREATE: &str = include_str!("graphql/comment_create.graphql");
