-- Suggestions and what the relevance policy remembers. Keep in step with migrations/postgres/0007_suggestions.sql.

-- One row per thread where the policy offered (or waits to offer) an action. The thread is
-- unique: at most one suggestion per thread, even with several replicas deciding.
CREATE TABLE suggestions (
    id             TEXT    PRIMARY KEY,
    thread         TEXT    NOT NULL UNIQUE,
    place          TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    author         TEXT    NOT NULL,
    author_is_bot  BIGINT  NOT NULL,
    place_name     TEXT    NOT NULL,
    text           TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    button         TEXT    NOT NULL,
    score_milli    BIGINT  NOT NULL,
    reasons        TEXT    NOT NULL,
    -- pending (in its grace window) | offered | quiet (the window ended without an offer)
    -- | accepted | dismissed | muted
    state          TEXT    NOT NULL,
    decide_at      BIGINT  NOT NULL,
    lease_until    BIGINT  NOT NULL DEFAULT 0,
    created_at     BIGINT  NOT NULL,
    decided_at     BIGINT,
    answered_by    TEXT,
    task_id        TEXT
);
CREATE INDEX suggestions_due ON suggestions (state, decide_at);
CREATE INDEX suggestions_place ON suggestions (place, decided_at);

-- What a thread has said so far, as far as the policy cares (see src/policy/judge.rs).
CREATE TABLE policy_threads (
    thread         TEXT    PRIMARY KEY,
    human_replies  BIGINT  NOT NULL DEFAULT 0,
    claimed        BIGINT  NOT NULL DEFAULT 0,
    answered       BIGINT  NOT NULL DEFAULT 0,
    resolved       BIGINT  NOT NULL DEFAULT 0,
    updated_at     BIGINT  NOT NULL
);

-- "Don't suggest this here": an action kind muted in a place until someone unmutes it.
CREATE TABLE policy_mutes (
    place          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    muted_by       TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    PRIMARY KEY (place, action)
);

-- `/chime mute [1d|1w|forever]`: no suggestions on this person's messages until then.
CREATE TABLE policy_person_mutes (
    surface        TEXT    NOT NULL,
    person         TEXT    NOT NULL,
    until_ms       BIGINT,
    created_at     BIGINT  NOT NULL,
    PRIMARY KEY (surface, person)
);

-- What feedback taught: how far an action kind's threshold has moved in a place (within the
-- bounds its policy sets; see src/policy/live.rs).
CREATE TABLE policy_thresholds (
    place          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    shift_milli    BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (place, action)
);
