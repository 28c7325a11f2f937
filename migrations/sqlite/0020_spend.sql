-- Keep in step with migrations/postgres/0020_spend.sql.

-- What each ended turn used and cost (src/spend.rs), once per task, with where it was asked so
-- budgets and `chime usage` can sum it per workspace, channel, person and backend. `month` is
-- the UTC calendar month it ended in (2026-12); costs are in millionths of a US dollar.
CREATE TABLE task_usage (
    task_id        TEXT    PRIMARY KEY,
    backend        TEXT    NOT NULL,
    requester      TEXT    NOT NULL,
    workspace      TEXT    NOT NULL,
    channel        TEXT    NOT NULL,
    input_tokens   BIGINT  NOT NULL,
    output_tokens  BIGINT  NOT NULL,
    wall_ms        BIGINT  NOT NULL,
    cost_micros    BIGINT  NOT NULL,
    month          TEXT    NOT NULL,
    at             BIGINT  NOT NULL
);
CREATE INDEX task_usage_month ON task_usage (month, workspace);

-- Budget notices sent (at 80%): once per budget and month, whichever replica sees it first.
CREATE TABLE budget_notices (
    budget  TEXT    NOT NULL,
    month   TEXT    NOT NULL,
    at      BIGINT  NOT NULL,
    PRIMARY KEY (budget, month)
);
