-- Users of an app that signs its own tokens (SPEC §9.1) and their erasure
-- (§9.2). Same rules as 00001: SQL that SQLite and PostgreSQL both accept.
--
-- An app's user has an external_id (its token's sub) and no username, and
-- a system message has no sender; yet users.username and
-- messages.sender_id are NOT NULL. Dropping those constraints would need a
-- table rebuild on SQLite (it has no ALTER COLUMN), and rebuilding users,
-- which four tables reference, differs between the two databases. The
-- store keeps a value no real one can take instead, and maps it to null
-- where rows are read (store/users.go, store/chat.go): a username
-- '~' || id (usernames are [a-z0-9_.-]), and a sender_id '' (ids are never
-- empty). The unique index on username still holds, and '' keeps system
-- messages' client_ids unique for safe retries just as a sender's are.

-- +goose Up
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN erased_at BIGINT;
-- Any number of NULLs (Parley's own users) is allowed under it.
CREATE UNIQUE INDEX users_external_id ON users (external_id);

-- +goose Down
DROP INDEX users_external_id;
ALTER TABLE users DROP COLUMN erased_at;
ALTER TABLE users DROP COLUMN external_id;
