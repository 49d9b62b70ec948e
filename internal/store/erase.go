package store

import (
	"fmt"
	"slices"

	"github.com/parley-chat/parley"
)

// LiveMessagesBy returns up to limit messages the user sent that are not
// deleted, by conversation and seq: what an erasure turns into tombstones.
func (tx *Tx) LiveMessagesBy(senderID string, limit int) ([]*parley.Message, error) {
	rows, err := tx.query(`SELECT `+messageColumns+` FROM messages WHERE sender_id = ? AND deleted = FALSE
		ORDER BY conversation_id, seq LIMIT ?`, senderID, limit)
	if err != nil {
		return nil, fmt.Errorf("list messages by sender: %w", err)
	}
	defer rows.Close()
	var out []*parley.Message
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// RemoveLog deletes the user's event log: every event, wherever the back
// end keeps it, and its head, so that nothing can be appended to it again
// (AppendLive leaves the user out; Append fails as for an unknown user).
//
// With a tail (SQLite), the tail is merged whole first: its event_batches
// rows hold the user's events together with others', and a merge is what
// moves them into per-user rows that can be deleted; the batch rows it
// empties go with it. A caller with much in the tail drains it in steps
// first (MergeTailStep), as pruning does.
func (tx *Tx) RemoveLog(userID string) error {
	if tx.tail != nil {
		if _, err := tx.mergeTail(tx.tail.All()); err != nil {
			return err
		}
		if _, err := tx.exec(`DELETE FROM event_runs WHERE user_id = ?`, userID); err != nil {
			return fmt.Errorf("delete event runs: %w", err)
		}
	}
	if _, err := tx.exec(`DELETE FROM events WHERE user_id = ?`, userID); err != nil {
		return fmt.Errorf("delete events: %w", err)
	}
	if _, err := tx.exec(`DELETE FROM event_heads WHERE user_id = ?`, userID); err != nil {
		return fmt.Errorf("delete log head: %w", err)
	}
	if tx.heads != nil {
		tx.heads.forget(userID)
		tx.created = slices.DeleteFunc(tx.created, func(u string) bool { return u == userID })
	}
	return nil
}

// Participants returns the client and professional of a conversation, or
// parley.NotFound.
func (tx *Tx) Participants(conversationID string) (clientID, professionalID string, err error) {
	if impossibleKey(conversationID) {
		return "", "", parley.NotFound
	}
	err = tx.queryRow(`SELECT client_id, professional_id FROM conversations WHERE id = ?`, conversationID).
		Scan(&clientID, &professionalID)
	if isNoRows(err) {
		return "", "", parley.NotFound
	}
	return clientID, professionalID, err
}
