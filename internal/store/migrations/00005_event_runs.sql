-- Runs of one user's log, merged from the tail by a store with a single
-- writer (SQLite): a row per user per merge step instead of a row per event
-- (store/runs.go says why, and gives the encoding). PostgreSQL writes
-- events straight into the events table and leaves this one empty.

-- +goose Up
CREATE TABLE event_runs (
    user_id    TEXT NOT NULL,
    first_id   BIGINT NOT NULL,
    last_id    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    events     BYTEA NOT NULL,
    PRIMARY KEY (user_id, last_id)
);

-- +goose Down
DROP TABLE event_runs;
