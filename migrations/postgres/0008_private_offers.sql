-- A suggestion only its author sees (a scope's delivery = "ephemeral"): to whom. Keep in step
-- with migrations/sqlite/0008_private_offers.sql.
ALTER TABLE suggestions ADD COLUMN private_to TEXT;

-- The audience rule asks, for each judged message, whether its author ever asked Chime for work.
CREATE INDEX tasks_requester ON tasks (requester);
