-- Keep in step with migrations/postgres/0004_lease_tokens.sql.
-- Each claim of a task writes a fresh lease token; heartbeats and the finish match it, so a runner
-- whose lease expired and was claimed again (even by the same process) can tell it lost the task.
ALTER TABLE tasks ADD COLUMN lease_token TEXT;
-- The state an agent run ended in, recorded before the task is finished: a task claimed again
-- with this set is finished from the record instead of running its agent a second time.
ALTER TABLE tasks ADD COLUMN outcome_state TEXT;
