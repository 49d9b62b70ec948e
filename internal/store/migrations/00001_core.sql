-- Core schema: accounts, sessions and the per-user event log.
-- Written in the SQL that SQLite and PostgreSQL both accept, so the two stores
-- share one schema and cannot drift. Times are Unix microseconds (BIGINT).

-- +goose Up
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen     BIGINT
);
CREATE INDEX users_role_username ON users (role, username);

CREATE TABLE sessions (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    created_at  BIGINT NOT NULL,
    last_active BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX sessions_user ON sessions (user_id);

-- The head row is locked by each append, which is what keeps a user's ids
-- contiguous when several writers (or several nodes) append at once.
CREATE TABLE event_heads (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    last_id BIGINT NOT NULL
);

CREATE TABLE events (
    user_id    TEXT NOT NULL,
    id         BIGINT NOT NULL,
    type       TEXT NOT NULL,
    data       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, id)
);

-- +goose Down
DROP TABLE events;
DROP TABLE event_heads;
DROP TABLE sessions;
DROP TABLE users;
