-- Keep in step with migrations/sqlite/0016_feedback.sql.

-- Thumbs up (positive = 1) or down on a turn's result, one vote per person and turn (pressing
-- the other button changes it).
CREATE TABLE task_feedback (
    task_id     TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    positive    BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (task_id, user_id)
);
CREATE INDEX task_feedback_updated ON task_feedback (updated_at);
