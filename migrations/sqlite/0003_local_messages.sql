-- The local playground's messages: the stand-in for a Slack workspace when Chime runs without one.
CREATE TABLE local_messages (
    ts          TEXT    PRIMARY KEY,
    channel     TEXT    NOT NULL,
    thread_ts   TEXT,
    user_id     TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    blocks      TEXT,
    reactions   TEXT    NOT NULL DEFAULT '[]',
    chime_key   TEXT    UNIQUE,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);
CREATE INDEX local_messages_channel ON local_messages (channel, thread_ts, ts);
