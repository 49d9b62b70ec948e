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
		// The rowid from the driver's result rather than RETURNING: an
		// exec costs less than a query, once per message.
		res, err := tx.exec(`INSERT INTO message_search (message_id) VALUES (?)`, id)
		if err != nil {
			return fmt.Errorf("index message: %w", err)
		}
		rowid, err := res.LastInsertId()
		if err != nil {
			return fmt.Errorf("index message: %w", err)
		}
		if err := tx.writeFullText(FullTextWrite{rowid: rowid, words: words}); err != nil {
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

// FullTextWrite is one write to SQLite's FTS5 table: the words of a row, new
// or replacing its old ones, or no words to delete it.
type FullTextWrite struct {
	rowid   int64
	words   string
	replace bool
}

// DeferFullText holds this transaction's FTS5 writes back (FullTextWrites)
// for the back end to make at the end of its group commit (WriteFullText).
// FTS5 flushes the terms it holds to a new segment of its index at every
// statement savepoint, and a statement of the next transaction in the batch
// takes one (an UPDATE … RETURNING does): so each message made a segment
// of its own, and merges of those, where the whole batch can make one.
func (tx *Tx) DeferFullText() { tx.deferFTS = true }

// FullTextWrites returns the FTS5 writes held back, in order.
func (tx *Tx) FullTextWrites() []FullTextWrite { return tx.ftsWrites }

func (tx *Tx) writeFullText(w FullTextWrite) error {
	if tx.deferFTS {
		tx.ftsWrites = append(tx.ftsWrites, w)
		return nil
	}
	return tx.WriteFullText(w)
}

// WriteFullText makes FTS5 writes, in order, one statement each. Not in
// multi-row INSERTs: such a statement opens a savepoint, at which FTS5
// flushes the rows it holds to a segment of their own, so two per commit
// made two segments where one-row statements make one at the COMMIT, and
// the merges cost more than the statements saved (4.3 % of a chat server's
// CPU against 2.2 %, BENCHMARKS.md).
func (tx *Tx) WriteFullText(ws ...FullTextWrite) error {
	for _, w := range ws {
		var err error
		switch {
		case w.words == "":
			_, err = tx.exec(`DELETE FROM message_fts WHERE rowid = ?`, w.rowid)
		case w.replace:
			_, err = tx.exec(`UPDATE message_fts SET words = ? WHERE rowid = ?`, w.words, w.rowid)
		default:
			_, err = tx.exec(`INSERT INTO message_fts (rowid, words) VALUES (?, ?)`, w.rowid, w.words)
		}
		if err != nil {
			return fmt.Errorf("full-text index: %w", err)
		}
	}
	return nil
}

// reindexMessage replaces an edited message's words in the index. With
// FTS5 the row keeps its rowid, which is the order searches walk the index
// in (the order messages were sent).
func (tx *Tx) reindexMessage(id, body string) error {
	if tx.fullText() != FTS5 {
		return tx.indexMessage(id, body) // an upsert
	}
	words := search.IndexText(body)
	var rowid int64
	err := tx.queryRow(`SELECT id FROM message_search WHERE message_id = ?`, id).Scan(&rowid)
	switch {
	case isNoRows(err):
		return tx.indexMessage(id, body)
	case err != nil:
		return fmt.Errorf("reindex message: %w", err)
	case words == "":
		return tx.unindexMessage(id)
	}
	if err := tx.writeFullText(FullTextWrite{rowid: rowid, words: words, replace: true}); err != nil {
		return fmt.Errorf("reindex message: %w", err)
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
			if err := tx.writeFullText(FullTextWrite{rowid: n}); err != nil {
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
// migration that creates the index, in the order they were sent (FTS5
// rowids then follow it). It reads in pages, then writes, since a
// connection cannot write while it is still reading rows.
func (tx *Tx) reindexMessages() error {
	var afterAt int64 = -1
	afterID := ""
	for {
		rows, err := tx.query(`SELECT id, body, created_at FROM messages WHERE deleted = FALSE
			AND (created_at > ? OR (created_at = ? AND id > ?)) ORDER BY created_at, id LIMIT 500`, afterAt, afterAt, afterID)
		if err != nil {
			return fmt.Errorf("reindex messages: %w", err)
		}
		type msg struct {
			id, body string
			at       int64
		}
		var page []msg
		for rows.Next() {
			var m msg
			if err := rows.Scan(&m.id, &m.body, &m.at); err != nil {
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
		afterAt, afterID = page[len(page)-1].at, page[len(page)-1].id
	}
}

// SearchQuery is a full-text search over one user's conversations.
type SearchQuery struct {
	UserID         string
	Words          []string // normalised by search.Words; at least one
	ConversationID string   // "" = all of the user's conversations
	Limit          int
}

// SearchMessages returns the newest messages of the user's conversations
// that contain every word, as a whole word or as the start of one, up to
// q.Limit, and whether more match.
//
// PostgreSQL leaves the plan to its planner (the GIN index, or the user's
// own messages when they are few), newest by created_at. SQLite picks one of
// two plans (docs/chat.md gives the figures); both order by the index's
// rowids, which follow the order messages were sent (an edit keeps its row):
//   - a user with many of the messages (a professional): walk the matches
//     newest first and stop at q.Limit+1 of theirs, so a common word costs
//     about the matches newer than the answer;
//   - one conversation, or a user with few of them (a client): list the
//     matching rowids once and look each of the user's messages up in that
//     list, instead of walking matches that are nearly all someone else's.
func (tx *Tx) SearchMessages(q SearchQuery) ([]*parley.Message, bool, error) {
	if len(q.Words) == 0 || q.Limit <= 0 {
		return []*parley.Message{}, false, nil
	}
	var b strings.Builder
	var args []any
	switch tx.fullText() {
	case FTS5:
		few := q.ConversationID != ""
		if !few {
			// Walking the matches costs about limit × total / mine rows;
			// listing them costs about mine: list when mine² < limit × total.
			var mine, total int64
			err := tx.queryRow(`SELECT COALESCE(SUM(c.last_seq), 0), (SELECT COALESCE(MAX(id), 0) FROM message_search)
				FROM conversation_members m JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = ?`, q.UserID).
				Scan(&mine, &total)
			if err != nil {
				return nil, false, fmt.Errorf("count messages: %w", err)
			}
			few = mine*mine < int64(q.Limit+1)*total
		}
		cols := prefixColumns("messages.", messageColumns)
		if few {
			// The unary + keeps SQLite from driving the lookup with the IN
			// list (a probe per listed rowid per message); the list is
			// built once and probed per message instead.
			b.WriteString(`SELECT ` + cols + ` FROM messages
				JOIN message_search ON message_search.message_id = messages.id
				WHERE +message_search.id IN (SELECT rowid FROM message_fts WHERE message_fts MATCH ?)`)
		} else {
			b.WriteString(`SELECT ` + cols + ` FROM message_fts
				JOIN message_search ON message_search.id = message_fts.rowid
				JOIN messages ON messages.id = message_search.message_id
				WHERE message_fts MATCH ?`)
		}
		b.WriteString(` AND messages.conversation_id IN (SELECT conversation_id FROM conversation_members WHERE user_id = ?)
			AND messages.deleted = FALSE`)
		args = append(args, search.FTS5Query(q.Words), q.UserID)
		if q.ConversationID != "" {
			b.WriteString(` AND messages.conversation_id = ?`)
			args = append(args, q.ConversationID)
		}
		if few {
			b.WriteString(` ORDER BY message_search.id DESC LIMIT ?`)
		} else {
			// By the FTS table's own rowid, which FTS5 walks backwards: no sort.
			b.WriteString(` ORDER BY message_fts.rowid DESC LIMIT ?`)
		}
	case TSVector:
		b.WriteString(`SELECT ` + messageColumns + ` FROM messages
			WHERE id IN (SELECT message_id FROM message_search WHERE words @@ ?::tsquery)
			AND conversation_id IN (SELECT conversation_id FROM conversation_members WHERE user_id = ?)
			AND deleted = FALSE`)
		args = append(args, search.TSQuery(q.Words), q.UserID)
		if q.ConversationID != "" {
			b.WriteString(` AND conversation_id = ?`)
			args = append(args, q.ConversationID)
		}
		b.WriteString(` ORDER BY created_at DESC, id DESC LIMIT ?`)
	default:
		return []*parley.Message{}, false, nil
	}
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

// prefixColumns qualifies each column of a comma-separated list.
func prefixColumns(prefix, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = prefix + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}
