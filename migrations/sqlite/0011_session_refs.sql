-- Keep in step with migrations/postgres/0011_session_refs.sql.

-- Work items a session is about (a Linear issue key such as ENG-123), so that every place that
-- names one (a Slack thread, the issue's agent session) joins the same session.
CREATE TABLE session_refs (
    ref TEXT PRIMARY KEY,
    session_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX session_refs_session ON session_refs (session_id);
