-- Chat schema: conversations, their two members' markers, messages and calls.
-- Same rules as 00001: SQL that SQLite and PostgreSQL both accept, times in
-- Unix microseconds, ids as TEXT.

-- +goose Up
-- last_seq is the per-conversation message counter: a send increments it in
-- its transaction (UPDATE … RETURNING), which also serialises concurrent sends
-- to one conversation so that seq order is commit order.
CREATE TABLE conversations (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL REFERENCES users (id),
    professional_id TEXT NOT NULL REFERENCES users (id),
    subject         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    last_seq        BIGINT NOT NULL,
    last_activity   BIGINT NOT NULL
);

-- One row per participant: what they have read and what has reached them.
-- peer_id saves a join on every membership check.
CREATE TABLE conversation_members (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    user_id         TEXT NOT NULL REFERENCES users (id),
    peer_id         TEXT NOT NULL,
    read_seq        BIGINT NOT NULL,
    delivered_seq   BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_members_user ON conversation_members (user_id);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    seq             BIGINT NOT NULL,
    sender_id       TEXT NOT NULL,
    body            TEXT NOT NULL,
    client_id       TEXT,
    reply_to_id     TEXT,
    reply_sender_id TEXT,
    reply_preview   TEXT,
    created_at      BIGINT NOT NULL,
    edited_at       BIGINT,
    deleted         BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE UNIQUE INDEX messages_conversation_seq ON messages (conversation_id, seq);
-- The safe-retry key. Both databases let any number of rows have a NULL
-- client_id under a unique index.
CREATE UNIQUE INDEX messages_sender_client ON messages (sender_id, client_id);

CREATE TABLE calls (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    caller_id       TEXT NOT NULL,
    callee_id       TEXT NOT NULL,
    media           TEXT NOT NULL,
    state           TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    answered_at     BIGINT,
    ended_at        BIGINT
);
-- At most one live call per conversation, enforced by the database so that
-- two concurrent starts (on two nodes) cannot both succeed.
CREATE UNIQUE INDEX calls_live ON calls (conversation_id) WHERE state IN ('ringing', 'active');
CREATE INDEX calls_state_created ON calls (state, created_at);

-- +goose Down
DROP TABLE calls;
DROP TABLE messages;
DROP TABLE conversation_members;
DROP TABLE conversations;
