-- A suggestion only its author sees (a scope's delivery = "ephemeral"): to whom. Keep in step
-- with migrations/postgres/0008_offers_and_remote_runs.sql.
ALTER TABLE suggestions ADD COLUMN private_to TEXT;

-- The audience rule asks, for each judged message, whether its author ever asked Chime for work.
CREATE INDEX tasks_requester ON tasks (requester);

-- A cloud agent's run or session, recorded on the task before anything else happens, so that a
-- restart resumes it instead of launching another.
ALTER TABLE tasks ADD COLUMN remote_ref TEXT;

-- Pull requests Chime's turns opened (reported by the agent or the cloud backend), what GitHub's
-- webhook last said of them, and each transition with its time (for the digest).
CREATE TABLE pull_requests (
    repo           TEXT    NOT NULL,
    number         BIGINT  NOT NULL,
    url            TEXT    NOT NULL,
    session_id     TEXT    NOT NULL,
    task_id        TEXT    NOT NULL,
    binding        TEXT    NOT NULL,
    requester      TEXT    NOT NULL,
    -- open | merged | closed
    state          TEXT    NOT NULL,
    -- the last CI conclusion reported, if any
    checks         TEXT,
    opened_at      BIGINT  NOT NULL,
    merged_at      BIGINT,
    closed_at      BIGINT,
    PRIMARY KEY (repo, number)
);
CREATE TABLE pull_request_events (
    repo           TEXT    NOT NULL,
    number         BIGINT  NOT NULL,
    -- opened | merged | closed | checks:<conclusion>
    kind           TEXT    NOT NULL,
    at             BIGINT  NOT NULL
);
CREATE INDEX pull_request_events_at ON pull_request_events (at);

-- What a `webhook` backend's service reported on a turn (its signed callbacks), read in order by
-- the worker running the turn.
CREATE TABLE backend_updates (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id        TEXT    NOT NULL,
    -- progress | result | error
    kind           TEXT    NOT NULL,
    text           TEXT    NOT NULL,
    pr_url         TEXT,
    branch         TEXT,
    remote         TEXT,
    at             BIGINT  NOT NULL
);
CREATE INDEX backend_updates_task ON backend_updates (task_id, seq);
