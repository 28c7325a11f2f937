-- Keep in step with migrations/sqlite/0019_limits.sql.

-- One row per workspace whose caps were checked (src/limits.rs): a turn's request updates it
-- before it counts, which holds the row until the request's transaction ends, so replicas asking
-- at the same moment count each other's turns instead of both passing the cap.
CREATE TABLE limit_locks (
    key      TEXT    PRIMARY KEY,
    touched  BIGINT  NOT NULL
);
