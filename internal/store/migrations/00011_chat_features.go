package migrations

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/pressly/goose/v3"
)

// Migration 00011 adds what the chat app of issue 19 needs: users' bios,
// attachments, Web Push subscriptions and server settings (the VAPID key
// pair), and the full-text index of messages.
//
// It is a Go migration, not a .sql file, because the full-text index is
// each database's own (SQLite FTS5, PostgreSQL tsvector + GIN) and has no
// DDL both accept, and because indexing the messages already stored needs
// the Go normalisation of internal/search. Everything else is SQL both
// databases accept, as in the .sql migrations.
const chatFeaturesVersion = 11

// chatFeaturesShared is the part of 00011 both databases run.
var chatFeaturesShared = []string{
	`ALTER TABLE users ADD COLUMN bio TEXT NOT NULL DEFAULT ''`,
	// The message's attachments as JSON ([{id, name, content_type, size}]):
	// immutable metadata copied from the attachments table when the
	// message is sent, so every place that reads a message row renders
	// its files without a join. NULL when there are none.
	`ALTER TABLE messages ADD COLUMN attachments TEXT`,
	// An upload, attached to at most one message (message_id), by its
	// uploader, in one conversation. data holds the bytes where the store
	// keeps them in the database (PostgreSQL); it is NULL where they are
	// files in the data dir (SQLite).
	`CREATE TABLE attachments (
		id              TEXT PRIMARY KEY,
		conversation_id TEXT NOT NULL REFERENCES conversations (id),
		uploader_id     TEXT NOT NULL,
		message_id      TEXT,
		name            TEXT NOT NULL,
		content_type    TEXT NOT NULL,
		size            BIGINT NOT NULL,
		created_at      BIGINT NOT NULL,
		data            BYTEA
	)`,
	`CREATE INDEX attachments_message ON attachments (message_id)`,
	// Uploads not yet sent: counted per uploader, and collected when old.
	`CREATE INDEX attachments_unattached ON attachments (uploader_id, created_at) WHERE message_id IS NULL`,
	// One push subscription per session; a browser's endpoint belongs to
	// one session at a time. No foreign keys: a session or user removed
	// elsewhere must not be held up by these rows, and a push is only
	// ever sent to a live session.
	`CREATE TABLE push_subscriptions (
		session_id TEXT PRIMARY KEY,
		user_id    TEXT NOT NULL,
		endpoint   TEXT NOT NULL UNIQUE,
		p256dh     TEXT NOT NULL,
		auth       TEXT NOT NULL,
		created_at BIGINT NOT NULL
	)`,
	`CREATE INDEX push_subscriptions_user ON push_subscriptions (user_id)`,
	// Values every node must share, generated once (the VAPID key pair).
	`CREATE TABLE settings (
		name  TEXT PRIMARY KEY,
		value TEXT NOT NULL
	)`,
}

// The full-text index of message bodies, one per database. Only messages
// that are not deleted are in it, and it changes in the same transaction
// as the message, so deleted or edited-away text is never found.
var (
	// SQLite: a contentless FTS5 table (it keeps no copy of the text, only
	// the index) whose rowids message_search maps to message ids, since
	// messages have text keys. contentless_delete lets a row be removed by
	// its rowid alone; secure-delete removes its words from the index at
	// once instead of leaving them until a merge. Prefix indexes of 2 and
	// 3 characters keep short prefix queries from scanning every word.
	searchSQLite = []string{
		`CREATE TABLE message_search (
			id         INTEGER PRIMARY KEY,
			message_id TEXT NOT NULL UNIQUE
		)`,
		`CREATE VIRTUAL TABLE message_fts USING fts5(words, content='', contentless_delete=1,
			tokenize='unicode61 remove_diacritics 0', prefix='2 3')`,
		`INSERT INTO message_fts (message_fts, rank) VALUES ('secure-delete', 1)`,
	}
	// PostgreSQL: a tsvector per message under a GIN index.
	searchPostgres = []string{
		`CREATE TABLE message_search (
			message_id TEXT PRIMARY KEY,
			words      TSVECTOR NOT NULL
		)`,
		`CREATE INDEX message_search_words ON message_search USING GIN (words)`,
	}
)

var chatFeaturesDown = []string{
	`DROP TABLE message_search`,
	`DROP TABLE settings`,
	`DROP TABLE push_subscriptions`,
	`DROP TABLE attachments`,
	`ALTER TABLE messages DROP COLUMN attachments`,
	`ALTER TABLE users DROP COLUMN bio`,
}

// Go returns the Go migrations for dialect. reindex indexes the messages
// already stored; the store passes it, since the queries that keep the
// index are the store's.
func Go(dialect goose.Dialect, reindex func(ctx context.Context, tx *sql.Tx) error) ([]*goose.Migration, error) {
	var search []string
	switch dialect {
	case goose.DialectSQLite3:
		search = searchSQLite
	case goose.DialectPostgres:
		search = searchPostgres
	default:
		return nil, fmt.Errorf("migrations: no full-text index for dialect %q", dialect)
	}
	up := func(ctx context.Context, tx *sql.Tx) error {
		if err := execAll(ctx, tx, chatFeaturesShared); err != nil {
			return err
		}
		if err := execAll(ctx, tx, search); err != nil {
			return err
		}
		return reindex(ctx, tx)
	}
	down := func(ctx context.Context, tx *sql.Tx) error {
		stmts := chatFeaturesDown
		if dialect == goose.DialectSQLite3 {
			stmts = append([]string{`DROP TABLE message_fts`}, stmts...)
		}
		return execAll(ctx, tx, stmts)
	}
	return []*goose.Migration{
		goose.NewGoMigration(chatFeaturesVersion, &goose.GoFunc{RunTx: up}, &goose.GoFunc{RunTx: down}),
	}, nil
}

func execAll(ctx context.Context, tx *sql.Tx, stmts []string) error {
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("migration %05d: %w", chatFeaturesVersion, err)
		}
	}
	return nil
}
