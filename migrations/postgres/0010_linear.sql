-- Keep in step with migrations/sqlite/0010_linear.sql.

-- Linear workspaces Chime is installed in (OAuth with actor=app): the token it acts with there.
-- LINEAR_ACCESS_TOKEN stands in for a single workspace without a row here.
CREATE TABLE linear_orgs (
    org_id TEXT PRIMARY KEY,
    access_token TEXT NOT NULL,
    app_user_id TEXT,
    installed_at BIGINT NOT NULL
);

-- What the Linear connector knows of each agent session (or issue answered with comments) it
-- is bound to, written at the edge before the event is stored: the issue a turn is built from.
CREATE TABLE linear_threads (
    binding TEXT PRIMARY KEY,
    org_id TEXT NOT NULL,
    issue_id TEXT NOT NULL,
    issue_identifier TEXT NOT NULL,
    issue_title TEXT NOT NULL,
    issue_url TEXT NOT NULL,
    team_key TEXT NOT NULL,
    prompt_context TEXT,
    delegated BIGINT NOT NULL DEFAULT 0,
    -- A `repo: owner/name` line in the issue's description.
    repo_hint TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX linear_threads_issue ON linear_threads (issue_identifier);

-- Workspaces that have sent an agent-session event: there, a mention or an assignment arrives as
-- an agent session, so the plain Issue and Comment webhooks about the same thing are ignored.
CREATE TABLE linear_agent_orgs (
    org_id TEXT PRIMARY KEY,
    first_at BIGINT NOT NULL
);
