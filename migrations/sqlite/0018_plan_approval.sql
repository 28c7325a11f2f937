-- Keep in step with migrations/postgres/0018_plan_approval.sql.

-- What a turn is for: 'work' (the agent does the request) or 'plan' (where approval = "plan": the
-- agent only proposes a plan, and nothing is changed until the requester approves it).
ALTER TABLE tasks ADD COLUMN mode TEXT NOT NULL DEFAULT 'work';

-- How each plan was answered, once: approved (and the turn that carries it out) or sent back for
-- revision. The first decision stands; a second press finds it here.
CREATE TABLE plan_decisions (
    task_id     TEXT    PRIMARY KEY,
    decision    TEXT    NOT NULL,
    decided_by  TEXT    NOT NULL,
    decided_at  BIGINT  NOT NULL,
    next_task   TEXT
);
