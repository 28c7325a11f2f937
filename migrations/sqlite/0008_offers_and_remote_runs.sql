-- A suggestion only its author sees (a scope's delivery = "ephemeral"): to whom. Keep in step
-- with migrations/postgres/0008_offers_and_remote_runs.sql.
ALTER TABLE suggestions ADD COLUMN private_to TEXT;

-- The audience rule asks, for each judged message, whether its author ever asked Chime for work.
CREATE INDEX tasks_requester ON tasks (requester);

-- A cloud agent's run or session, recorded on the task before anything else happens, so that a
-- restart resumes it instead of launching another.
ALTER TABLE tasks ADD COLUMN remote_ref TEXT;
