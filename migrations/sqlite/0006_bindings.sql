-- Typed bindings and a surface-neutral outbox. Keep in step with migrations/postgres/0006_bindings.sql.
--
-- A binding's text form is '<surface>:<key>' (see src/binding.rs): Slack threads are
-- 'slack:T/C/ts', playground threads 'local:C/ts'. Rows written before this migration held the
-- bare key, with the surface in another column (the session's, for tasks).

-- Each task records the binding it answers to (it used to borrow its session's first surface).
ALTER TABLE tasks RENAME COLUMN thread_key TO binding;
UPDATE tasks SET binding = (SELECT s.surface FROM sessions s WHERE s.id = tasks.session_id) || ':' || binding;
UPDATE tasks SET binding = REPLACE(binding, 'local:TLOCAL/', 'local:') WHERE binding LIKE 'local:TLOCAL/%';

-- A session may have several bindings; each row names its binding in full.
ALTER TABLE session_bindings RENAME COLUMN external_key TO binding;
UPDATE session_bindings SET binding = surface || ':' || binding;
UPDATE session_bindings SET binding = REPLACE(binding, 'local:TLOCAL/', 'local:') WHERE binding LIKE 'local:TLOCAL/%';

-- Outbox rows: the target is a binding, and the last edit of a message is a column, not a
-- pattern matched in the connector's payload.
UPDATE outbox SET target = surface || ':' || target;
UPDATE outbox SET target = REPLACE(target, 'local:TLOCAL/', 'local:') WHERE target LIKE 'local:TLOCAL/%';
ALTER TABLE outbox ADD COLUMN last BIGINT NOT NULL DEFAULT 0;
UPDATE outbox SET last = 1 WHERE payload LIKE '%"last":true%';
