-- Claims only ever look at open rows; partial indexes keep them fast as done rows pile up.
CREATE INDEX inbox_open ON inbox (id) WHERE state IN ('pending', 'processing');
CREATE INDEX tasks_open ON tasks (created_at) WHERE state IN ('queued', 'running');
CREATE INDEX outbox_open ON outbox (id) WHERE state IN ('pending', 'sending');
CREATE INDEX outbox_open_target ON outbox (target, id) WHERE state IN ('pending', 'sending');
CREATE INDEX outbox_ref ON outbox (ref_key);
