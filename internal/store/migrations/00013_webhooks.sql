-- The webhook outbox (docs/webhooks.md). A row is written in the same
-- transaction as the change it reports, so a crash between commit and
-- delivery loses nothing: the sender (internal/webhook) finds it again.
-- id is the webhook-id header, fixed here so every retry carries the same
-- one; ord orders the rows of one conversation, which are sent one at a
-- time in that order; lease_until lets several nodes share the table (a
-- node claims a row until then, and a node that died mid-delivery leaves
-- it to the others once it passes). Delivered rows are deleted; failed
-- ones are kept for GET /api/server/webhooks/failed. message_id names the
-- message whose text a row carries, so that deleting the message drops the
-- rows not yet sent (no old text stays readable). retry_from is when
-- the retries started (created_at, or a manual retry), for the max age.
--
-- webhook_unread holds the pending message.unread per conversation and
-- recipient: armed by a message, cancelled by a read, fired once (fired
-- = TRUE) until the recipient reads the conversation again.
-- Same rules as 00001: SQL that SQLite and PostgreSQL both accept.

-- +goose Up
CREATE TABLE webhooks (
    id              TEXT PRIMARY KEY,
    ord             BIGINT NOT NULL,
    type            TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    message_id      TEXT NOT NULL DEFAULT '',
    body            BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    retry_from      BIGINT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         BIGINT NOT NULL,
    lease_until     BIGINT NOT NULL DEFAULT 0,
    last_status     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX webhooks_due ON webhooks (state, next_at);
CREATE INDEX webhooks_conversation ON webhooks (conversation_id, ord);
CREATE INDEX webhooks_message ON webhooks (message_id) WHERE message_id <> '';

CREATE TABLE webhook_unread (
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    due_at          BIGINT NOT NULL,
    fired           BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX webhook_unread_due ON webhook_unread (fired, due_at);

-- +goose Down
DROP TABLE webhook_unread;
DROP TABLE webhooks;
