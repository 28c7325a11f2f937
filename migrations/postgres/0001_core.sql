-- Chime core schema (Postgres). Keep in step with migrations/sqlite/0001_core.sql.
-- Timestamps are Unix milliseconds; booleans are 0/1 integers so both databases read them alike.

CREATE TABLE inbox (
    id            BIGSERIAL PRIMARY KEY,
    source        TEXT    NOT NULL,
    delivery_id   TEXT    NOT NULL,
    payload       TEXT    NOT NULL,
    received_at   BIGINT  NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending',
    attempts      BIGINT  NOT NULL DEFAULT 0,
    lease_until   BIGINT  NOT NULL DEFAULT 0,
    last_error    TEXT,
    UNIQUE (source, delivery_id)
);
CREATE INDEX inbox_pending ON inbox (state, id);

CREATE TABLE sessions (
    id            TEXT    PRIMARY KEY,
    surface       TEXT    NOT NULL,
    requester     TEXT    NOT NULL,
    repo          TEXT,
    backend       TEXT    NOT NULL,
    remote_ref    TEXT,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE TABLE session_bindings (
    session_id    TEXT    NOT NULL REFERENCES sessions (id),
    surface       TEXT    NOT NULL,
    external_key  TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    UNIQUE (surface, external_key)
);
CREATE INDEX session_bindings_session ON session_bindings (session_id);

CREATE TABLE tasks (
    id               TEXT    PRIMARY KEY,
    session_id       TEXT    NOT NULL REFERENCES sessions (id),
    turn_no          BIGINT  NOT NULL,
    source_event     TEXT    NOT NULL UNIQUE,
    prompt           TEXT    NOT NULL,
    requester        TEXT    NOT NULL,
    repo             TEXT,
    backend          TEXT    NOT NULL,
    thread_key       TEXT    NOT NULL,
    message_ts       TEXT,
    state            TEXT    NOT NULL,
    attempts         BIGINT  NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until      BIGINT  NOT NULL DEFAULT 0,
    heartbeat_at     BIGINT  NOT NULL DEFAULT 0,
    cancel_requested BIGINT  NOT NULL DEFAULT 0,
    cancelled_by     TEXT,
    result           TEXT,
    error            TEXT,
    created_at       BIGINT  NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    UNIQUE (session_id, turn_no)
);
CREATE INDEX tasks_claim ON tasks (state, created_at);

CREATE TABLE outbox (
    id               BIGSERIAL PRIMARY KEY,
    surface          TEXT    NOT NULL,
    target           TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    idempotency_key  TEXT    NOT NULL UNIQUE,
    ref_key          TEXT,
    state            TEXT    NOT NULL DEFAULT 'pending',
    attempts         BIGINT  NOT NULL DEFAULT 0,
    next_at          BIGINT  NOT NULL DEFAULT 0,
    lease_until      BIGINT  NOT NULL DEFAULT 0,
    external_ref     TEXT,
    last_error       TEXT,
    created_at       BIGINT  NOT NULL,
    sent_at          BIGINT
);
CREATE INDEX outbox_claim ON outbox (state, id);
CREATE INDEX outbox_target ON outbox (target, id);
