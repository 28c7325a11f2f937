-- Keep in step with migrations/postgres/0017_plans.sql.

-- A turn's plan (session::plan, JSON): its steps and their statuses, so that a turn resumed on
-- another replica continues the same list.
ALTER TABLE tasks ADD COLUMN plan TEXT;

-- Workspaces where Slack refused streamed replies (chat.startStream): their progress is an edited
-- status message until `retry_at` (Unix milliseconds, as every timestamp here).
CREATE TABLE slack_stream_fallbacks (
    team        TEXT    PRIMARY KEY,
    reason      TEXT    NOT NULL,
    retry_at    BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL
);

-- The playground's streamed replies keep their plan (Slack's chunks, JSON) beside their blocks.
ALTER TABLE local_messages ADD COLUMN plan TEXT;
