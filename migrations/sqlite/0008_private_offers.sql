-- A suggestion only its author sees (a scope's delivery = "ephemeral"): to whom. Keep in step
-- with migrations/postgres/0008_private_offers.sql.
ALTER TABLE suggestions ADD COLUMN private_to TEXT;
