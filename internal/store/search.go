package store

import (
	"fmt"
	"strings"

	"github.com/pressly/goose/v3"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/search"
)

// FullText names a database's own full-text search.
type FullText int

// The full-text searches of the two back ends.
const (
	FTS5     FullText = iota + 1 // SQLite: FTS5 table message_fts, rowids mapped by message_search
	TSVector                     // PostgreSQL: message_search.words under a GIN index
)

// Searcher is the capability of a back end whose database indexes message
// text: which index it has. Both back ends implement it; with a Dialect
// that does not, messages are not indexed and searches find nothing.
type Searcher interface {
	FullText() FullText
}

func (tx *Tx) fullText() FullText {
	if s, ok := tx.d.(Searcher); ok {
		return s.FullText()
	}
	return 0
}

// indexMessage adds a message's body to the full-text index. It is called
// wherever a message row gets text, in the same transaction, so the index
// can never lag behind a message (or keep text it lost).
func (tx *Tx) indexMessage(id, body string) error {
	switch tx.fullText() {
	case FTS5:
		words := search.IndexText(body)
		if words == "" {
			return nil
		}
		var rowid int64
		if err := tx.queryRow(`INSERT INTO message_search (message_id) VALUES (?) RETURNING id`, id).Scan(&rowid); err != nil {
			return fmt.Errorf("index message: %w", err)
		}
		if _, err := tx.exec(`INSERT INTO message_fts (rowid, words) VALUES (?, ?)`, rowid, words); err != nil {
			return fmt.Errorf("index message: %w", err)
		}
	case TSVector:
		words := search.TSVector(body)
		if words == "" {
			return nil
		}
		if _, err := tx.exec(`INSERT INTO message_search (message_id, words) VALUES (?, ?::tsvector)
			ON CONFLICT (message_id) DO UPDATE SET words = EXCLUDED.words`, id, words); err != nil {
			return fmt.Errorf("index message: %w", err)
		}
	}
	return nil
}

// unindexMessage removes a message from the full-text index, if it is in it.
func (tx *Tx) unindexMessage(id string) error {
	switch tx.fullText() {
	case FTS5:
		rows, err := tx.query(`DELETE FROM message_search WHERE message_id = ? RETURNING id`, id)
		if err != nil {
			return fmt.Errorf("unindex message: %w", err)
		}
		var ids []int64
		for rows.Next() {
			var n int64
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, n)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, n := range ids {
			if _, err := tx.exec(`DELETE FROM message_fts WHERE rowid = ?`, n); err != nil {
				return fmt.Errorf("unindex message: %w", err)
			}
		}
	case TSVector:
		if _, err := tx.exec(`DELETE FROM message_search WHERE message_id = ?`, id); err != nil {
			return fmt.Errorf("unindex message: %w", err)
		}
	}
	return nil
}

// reindexMessages indexes every message that is not deleted, for the
// migration that creates the index. It reads in pages, then writes, since a
// connection cannot write while it is still reading rows.
func (tx *Tx) reindexMessages() error {
	after := ""
	for {
		rows, err := tx.query(`SELECT id, body FROM messages WHERE deleted = FALSE AND id > ? ORDER BY id LIMIT 500`, after)
		if err != nil {
			return fmt.Errorf("reindex messages: %w", err)
		}
		type msg struct{ id, body string }
		var page []msg
		for rows.Next() {
			var m msg
			if err := rows.Scan(&m.id, &m.body); err != nil {
				rows.Close()
				return err
			}
			page = append(page, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, m := range page {
			if err := tx.indexMessage(m.id, m.body); err != nil {
				return err
			}
		}
		if len(page) < 500 {
			return nil
		}
		after = page[len(page)-1].id
	}
}

// SearchQuery is a full-text search over one user's conversations.
type SearchQuery struct {
	UserID         string
	Words          []string // normalised by search.Words; at least one
	ConversationID string   // "" = all of the user's conversations
	Limit          int
}

// SearchMessages returns the newest messages (by created_at, then id) of the
// user's conversations that contain every word, as a whole word or as the
// start of one, up to q.Limit, and whether more match.
func (tx *Tx) SearchMessages(q SearchQuery) ([]*parley.Message, bool, error) {
	var match string
	var arg string
	switch tx.fullText() {
	case FTS5:
		match = `SELECT s.message_id FROM message_fts JOIN message_search s ON s.id = message_fts.rowid WHERE message_fts MATCH ?`
		arg = search.FTS5Query(q.Words)
	case TSVector:
		match = `SELECT message_id FROM message_search WHERE words @@ ?::tsquery`
		arg = search.TSQuery(q.Words)
	default:
		return []*parley.Message{}, false, nil
	}
	if len(q.Words) == 0 || q.Limit <= 0 {
		return []*parley.Message{}, false, nil
	}
	var b strings.Builder
	b.WriteString(`SELECT ` + messageColumns + ` FROM messages WHERE id IN (` + match + `)
		AND conversation_id IN (SELECT conversation_id FROM conversation_members WHERE user_id = ?)
		AND deleted = FALSE`)
	args := []any{arg, q.UserID}
	if q.ConversationID != "" {
		b.WriteString(` AND conversation_id = ?`)
		args = append(args, q.ConversationID)
	}
	b.WriteString(` ORDER BY created_at DESC, id DESC LIMIT ?`)
	args = append(args, q.Limit+1)
	rows, err := tx.query(b.String(), args...)
	if err != nil {
		return nil, false, fmt.Errorf("search messages: %w", err)
	}
	defer rows.Close()
	out := make([]*parley.Message, 0, min(q.Limit+1, 64))
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, false, fmt.Errorf("scan message: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, false, err
	}
	more := len(out) > q.Limit
	if more {
		out = out[:q.Limit]
	}
	return out, more, nil
}

// migrationDialect is the Dialect of a migration's transaction, known only
// by goose's name for the database.
type migrationDialect struct{ d goose.Dialect }

func (m migrationDialect) Rebind(q string) string {
	if m.d == goose.DialectPostgres {
		return DollarRebind(q)
	}
	return q
}

func (migrationDialect) IsUniqueViolation(error) bool { return false }

func (m migrationDialect) FullText() FullText {
	if m.d == goose.DialectPostgres {
		return TSVector
	}
	return FTS5
}
