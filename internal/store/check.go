package store

import (
	"fmt"
)

// The offline check of a store with a tail (`parley check`, in package
// sqlite): rows that cannot be decoded, and the one repair that needs no
// invented events.

// CheckRuns decodes every event_runs row and reports each one that does
// not decode. It returns how many rows it read.
func (tx *Tx) CheckRuns(report func(*CorruptRunError)) (int, error) {
	rows, err := tx.query(`SELECT user_id, first_id, last_id, created_at, events FROM event_runs ORDER BY user_id, last_id`)
	if err != nil {
		return 0, fmt.Errorf("read event runs: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var user string
		var first, last, at int64
		var b []byte
		if err := rows.Scan(&user, &first, &last, &at, &b); err != nil {
			return n, fmt.Errorf("read event runs: %w", err)
		}
		n++
		if _, err := decodeRun(user, first, last, at, b); err != nil {
			report(&CorruptRunError{UserID: user, FirstID: first, LastID: last, Err: err})
		}
	}
	return n, rows.Err()
}

// CheckBatches decodes every event_batches row (the tail a back end
// reloads when it opens, which fails on such a row) and reports each one
// that does not decode. It returns how many rows it read.
func (tx *Tx) CheckBatches(report func(seq int64, err error)) (int, error) {
	rows, err := tx.query(`SELECT seq, created_at, events FROM event_batches ORDER BY seq`)
	if err != nil {
		return 0, fmt.Errorf("read event batches: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var seq, at int64
		var b []byte
		if err := rows.Scan(&seq, &at, &b); err != nil {
			return n, fmt.Errorf("read event batches: %w", err)
		}
		n++
		if _, err := decodeBatch(b, FromMicros(at)); err != nil {
			report(seq, err)
		}
	}
	return n, rows.Err()
}

// DropRun repairs a user's log that holds a corrupt run ending at lastID.
// The run's events cannot be read, and a log must not have a hole in the
// middle, so the log's start moves past the run: the run and every older
// event of the user are deleted, as retention pruning deletes old events.
// A client resuming from before lastID then gets a reset (SPEC §3: its
// position is older than the retained log) and reloads its state over
// REST; clients at or past lastID see no difference. The head row is
// first brought up to the log's true head, so that no id is handed out
// again. It returns how many events the log lost.
func (tx *Tx) DropRun(userID string, lastID int64) (int64, error) {
	var head int64
	switch err := tx.queryRow(`SELECT `+headOfRuns+` FROM event_heads h WHERE h.user_id = ?`, userID).Scan(&head); {
	case isNoRows(err):
		// No such user any more: only the rows go.
	case err != nil:
		return 0, fmt.Errorf("read log head of %s: %w", userID, err)
	default:
		if _, err := tx.exec(`UPDATE event_heads SET last_id = ? WHERE user_id = ?`, max(head, lastID), userID); err != nil {
			return 0, fmt.Errorf("update log head of %s: %w", userID, err)
		}
	}
	var runs, events int64
	if err := tx.queryRow(`SELECT COALESCE(SUM(last_id - first_id + 1), 0) FROM event_runs WHERE user_id = ? AND last_id <= ?`,
		userID, lastID).Scan(&runs); err != nil {
		return 0, fmt.Errorf("count dropped runs: %w", err)
	}
	if _, err := tx.exec(`DELETE FROM event_runs WHERE user_id = ? AND last_id <= ?`, userID, lastID); err != nil {
		return 0, fmt.Errorf("delete event runs: %w", err)
	}
	res, err := tx.exec(`DELETE FROM events WHERE user_id = ? AND id <= ?`, userID, lastID)
	if err != nil {
		return 0, fmt.Errorf("delete events: %w", err)
	}
	if events, err = res.RowsAffected(); err != nil {
		return 0, err
	}
	return runs + events, nil
}
