-- Lets a node find the sessions that ended in a time window (revoked, idle,
-- or expired) with index lookups, instead of re-reading every session that
-- has a stream open.

-- +goose Up
ALTER TABLE sessions ADD COLUMN revoked_at BIGINT;
CREATE INDEX sessions_last_active ON sessions (last_active);
CREATE INDEX sessions_revoked_at ON sessions (revoked_at);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

-- +goose Down
DROP INDEX sessions_expires_at;
DROP INDEX sessions_revoked_at;
DROP INDEX sessions_last_active;
ALTER TABLE sessions DROP COLUMN revoked_at;
