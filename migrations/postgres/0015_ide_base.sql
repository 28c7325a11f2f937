-- Keep in step with migrations/sqlite/0015_ide_base.sql.

-- Where a session's branch starts when the request came with a workspace (an editor's hand-off
-- or accepted suggestion): the editor's commit, and its branch for when the commit was never
-- pushed. Both NULL: the repository's default branch.
ALTER TABLE sessions ADD COLUMN base_commit TEXT;
ALTER TABLE sessions ADD COLUMN base_branch TEXT;

-- The request that minted a token, when it came from a chat (`/chime ide-token`: Slack's trigger
-- id): a replayed request mints nothing and is not shown a token.
ALTER TABLE ide_tokens ADD COLUMN minted_by TEXT;
CREATE UNIQUE INDEX ide_tokens_minted_by ON ide_tokens (minted_by);
