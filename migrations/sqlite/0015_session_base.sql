-- Keep in step with migrations/postgres/0015_session_base.sql.

-- Where a session's branch starts when the request came with a workspace (an editor's hand-off
-- or accepted suggestion): the editor's commit, and its branch for when the commit was never
-- pushed. Both NULL: the repository's default branch.
ALTER TABLE sessions ADD COLUMN base_commit TEXT;
ALTER TABLE sessions ADD COLUMN base_branch TEXT;
