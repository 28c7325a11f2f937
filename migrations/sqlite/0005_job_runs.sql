-- Keep in step with migrations/postgres/0005_job_runs.sql.
-- One row per periodic job and period, claimed by the replica that runs it: the primary key is
-- what makes exactly one replica run each period (see src/jobs.rs).
CREATE TABLE job_runs (
    job           TEXT    NOT NULL,
    period        BIGINT  NOT NULL,
    claimed_by    TEXT    NOT NULL,
    claimed_at    BIGINT  NOT NULL,
    finished_at   BIGINT,
    result        TEXT,
    error         TEXT,
    PRIMARY KEY (job, period)
);
