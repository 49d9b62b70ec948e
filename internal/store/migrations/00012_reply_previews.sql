-- Replies show the quoted message's current body: an edit or a delete of a
-- message updates the previews of the replies to it (store.setReplyPreviews),
-- found by this index rather than by reading every message.

-- +goose Up
CREATE INDEX messages_reply_to ON messages (reply_to_id) WHERE reply_to_id IS NOT NULL;

-- +goose Down
DROP INDEX messages_reply_to;
