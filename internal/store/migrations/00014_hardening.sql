-- Bytes of call.signal payloads each party of a call has written to the
-- log (chat.Service.Signal): call.signal events are durable, so without a
-- bound one user could fill the disk by signalling on one call. Kept on the
-- call so the bound holds across nodes. Same rules as 00001: SQL that SQLite
-- and PostgreSQL both accept.

--
-- space_probe holds nothing between transactions: a store that ran out of
-- room writes and deletes a row in it to learn whether it has room again
-- (store.Tx.ProbeSpace, for /readyz).

-- +goose Up
ALTER TABLE calls ADD COLUMN caller_signal_bytes BIGINT NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN callee_signal_bytes BIGINT NOT NULL DEFAULT 0;
CREATE TABLE space_probe (b BYTEA);

-- +goose Down
DROP TABLE space_probe;
ALTER TABLE calls DROP COLUMN callee_signal_bytes;
ALTER TABLE calls DROP COLUMN caller_signal_bytes;
