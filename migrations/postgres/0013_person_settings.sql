-- Keep in step with migrations/sqlite/0013_person_settings.sql.

-- A person's own settings, changed on their App Home (or with /chime): how much of a run's
-- progress they see, and quiet hours in which Chime offers them nothing. Muting suggestions
-- stays in policy_person_mutes. Quiet hours are minutes after midnight in the person's time,
-- which is UTC + utc_offset_min (read from the platform when they were set).
CREATE TABLE person_settings (
    surface TEXT NOT NULL,
    user_id TEXT NOT NULL,
    verbosity TEXT NOT NULL DEFAULT 'milestones',
    quiet_start_min BIGINT,
    quiet_end_min BIGINT,
    utc_offset_min BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (surface, user_id)
);
