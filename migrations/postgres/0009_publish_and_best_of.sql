-- Keep in step with migrations/sqlite/0009_publish_and_best_of.sql.

-- The branch a pull request was opened from: a later turn of the session pushes to it, and finds
-- its pull request here instead of opening another.
ALTER TABLE pull_requests ADD COLUMN branch TEXT;
CREATE INDEX pull_requests_branch ON pull_requests (repo, branch);

-- A best-of-N turn runs this many attempts, each on its own branch (1: an ordinary turn).
ALTER TABLE tasks ADD COLUMN variants BIGINT NOT NULL DEFAULT 1;
-- The attempt someone chose with Use this one (its pull request is opened, the others deleted).
ALTER TABLE tasks ADD COLUMN chosen_attempt BIGINT;
ALTER TABLE tasks ADD COLUMN chosen_by TEXT;
