-- Appends by a store with a single writer (SQLite): each row is one append,
-- its events and their payloads (stored once) in a binary encoding
-- (store/batch.go), until a merge moves them into the events table in bulk
-- (store/tail.go says why). PostgreSQL writes events straight into the
-- events table and leaves this one empty; it is here so that both stores
-- keep one schema.

-- +goose Up
CREATE TABLE event_batches (
    seq        INTEGER PRIMARY KEY,
    created_at BIGINT NOT NULL,
    events     BYTEA NOT NULL
);

-- +goose Down
DROP TABLE event_batches;
