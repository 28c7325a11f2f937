-- Keep in step with migrations/sqlite/0014_ide.sql.

-- Per-person tokens for the IDE stream (GET /ide/stream). Only a SHA-256 hash of each token is
-- kept; the token itself is shown once, when it is minted.
CREATE TABLE ide_tokens (
    id            BIGSERIAL PRIMARY KEY,
    token_hash    TEXT    NOT NULL UNIQUE,
    surface       TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX ide_tokens_owner ON ide_tokens (surface, user_id);

-- What each person's editor last said about its workspace (the hello message).
CREATE TABLE ide_workspaces (
    token_id      BIGINT  PRIMARY KEY,
    client        TEXT    NOT NULL,
    remote        TEXT    NOT NULL,
    branch        TEXT    NOT NULL,
    head          TEXT    NOT NULL,
    updated_at    BIGINT  NOT NULL
);

-- Signals from editors (test runs, diagnostics, failed commands), for the relevance policy.
CREATE TABLE ide_signals (
    id            BIGSERIAL PRIMARY KEY,
    surface       TEXT    NOT NULL,
    user_id       TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    -- what makes two signals the same (a failing test's name, a file, a command)
    subject       TEXT    NOT NULL,
    detail        TEXT    NOT NULL,
    at            BIGINT  NOT NULL
);
CREATE INDEX ide_signals_subject ON ide_signals (surface, user_id, kind, subject, at);

-- What Chime says to a person's editors (suggestion, session_update, result, error), in order:
-- each connection sends the rows after the last seq its client saw (its hello's last_seq).
CREATE TABLE ide_outbound (
    seq           BIGSERIAL PRIMARY KEY,
    account       TEXT    NOT NULL,
    -- the outbox row it came from: a resent row is appended once
    outbox_key    TEXT    NOT NULL UNIQUE,
    payload       TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL
);
CREATE INDEX ide_outbound_account ON ide_outbound (account, seq);
