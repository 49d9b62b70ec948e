package store

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/parley-chat/parley"
)

// An event_runs row holds a run of one user's log: up to maxRun events with
// consecutive ids, first_id to last_id, created_at the newest one's time.
// A back end with a tail (SQLite) merges into event_runs rather than into
// events, because a row per event made the merge the costliest part of a
// fan-out (a third of the server's CPU): one insert, one index entry and
// five bound arguments per delivery. A merge step holds ~10 events per user,
// so a row per user per step is a tenth of that work. The events table
// keeps what was merged before event_runs existed, and PostgreSQL's events.
//
// The encoding (runVersion) is:
//
//	version byte (2)
//	uvarint event count, then per event, in id order: uvarint length + type,
//	uvarint length + data, varint created_at minus the event's time (µs)
const (
	runVersion = 2
	// maxRun bounds what a replay decodes to reach the newest events of a
	// user who was offline for a long backlog.
	maxRun = 64
)

func encodeRun(events []parley.Event, createdAt int64) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, e := range events {
		n += len(e.Type) + len(e.Data) + 3*binary.MaxVarintLen64
	}
	b := make([]byte, 0, n)
	b = append(b, runVersion)
	b = binary.AppendUvarint(b, uint64(len(events)))
	for _, e := range events {
		b = appendBytes(b, e.Type)
		b = appendBytes(b, string(e.Data))
		b = binary.AppendVarint(b, createdAt-Micros(e.Time.Time))
	}
	return b
}

// decodeRun is the inverse of encodeRun for the row (user, first, last,
// createdAt, b).
func decodeRun(user string, first, last, createdAt int64, b []byte) ([]parley.Event, error) {
	r := batchReader{b: b}
	if v := r.byte(); v != runVersion {
		return nil, fmt.Errorf("%w: run version %d", errBadBatch, v)
	}
	n := r.count()
	if first < 1 || last > 1<<62 || int64(n) != last-first+1 {
		return nil, fmt.Errorf("%w: %d events for ids %d to %d", errBadBatch, n, first, last)
	}
	events := make([]parley.Event, 0, n)
	for i := range n {
		typ := string(r.bytes())
		data := slices.Clone(r.bytes())
		age := r.varint()
		if r.err != nil {
			break
		}
		events = append(events, parley.Event{UserID: user, ID: first + int64(i), Type: typ, Data: data,
			Time: parley.T(FromMicros(createdAt - age))})
	}
	if r.err == nil && len(r.b) > 0 {
		r.err = fmt.Errorf("%w: %d bytes left over", errBadBatch, len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return events, nil
}

// CorruptRunError is a read that met an event_runs row it cannot decode.
// Every read of the user's log through that row fails the same way until
// the row is dropped: `parley check --repair` does it (DropRun).
type CorruptRunError struct {
	UserID          string
	FirstID, LastID int64
	Err             error
}

func (e *CorruptRunError) Error() string {
	return fmt.Sprintf("corrupt event_runs row (user %s, ids %d to %d): %v", e.UserID, e.FirstID, e.LastID, e.Err)
}

func (e *CorruptRunError) Unwrap() error { return e.Err }

// splitRuns cuts events (by user, then by id) into runs: a user's events
// with consecutive ids, at most maxRun of them.
func splitRuns(events []parley.Event) [][]parley.Event {
	var runs [][]parley.Event
	for len(events) > 0 {
		n := 1
		for n < len(events) && n < maxRun && events[n].UserID == events[0].UserID && events[n].ID == events[n-1].ID+1 {
			n++
		}
		runs = append(runs, events[:n])
		events = events[n:]
	}
	return runs
}

// insertRuns writes events (by user, then by id) as event_runs rows.
func (tx *Tx) insertRuns(events []parley.Event) error {
	for part := range chunks(splitRuns(events), rowChunk) {
		args := make([]any, 0, 5*len(part))
		for _, run := range part {
			first, last := run[0], run[len(run)-1]
			at := Micros(last.Time.Time)
			args = append(args, first.UserID, first.ID, last.ID, at, encodeRun(run, at))
		}
		q := `INSERT INTO event_runs (user_id, first_id, last_id, created_at, events) VALUES (?, ?, ?, ?, ?)` +
			strings.Repeat(`, (?, ?, ?, ?, ?)`, len(part)-1)
		if _, err := tx.exec(q, args...); err != nil {
			return fmt.Errorf("insert event runs: %w", err)
		}
	}
	return nil
}

// notMerged leaves out of events (by user, then by id) those a merge cut
// short by a crash wrote already: a merge takes all of a user's unmerged
// events, so the tables hold each log up to some id.
func (tx *Tx) notMerged(events []parley.Event) ([]parley.Event, error) {
	var users []string
	for i, e := range events {
		if i == 0 || e.UserID != events[i-1].UserID {
			users = append(users, e.UserID)
		}
	}
	merged := make(map[string]int64, len(users))
	for part := range chunks(users, headChunk) {
		in, args := inList(part)
		args = append(args, args...)
		rows, err := tx.query(`SELECT user_id, MAX(last) FROM (
			SELECT user_id, MAX(id) AS last FROM events WHERE user_id IN `+in+` GROUP BY user_id
			UNION ALL SELECT user_id, MAX(last_id) FROM event_runs WHERE user_id IN `+in+` GROUP BY user_id
		) GROUP BY user_id`, args...)
		if err != nil {
			return nil, fmt.Errorf("read merged heads: %w", err)
		}
		if err := scanHeads(rows, merged); err != nil {
			return nil, fmt.Errorf("read merged heads: %w", err)
		}
	}
	return slices.DeleteFunc(slices.Clone(events), func(e parley.Event) bool {
		return e.ID <= merged[e.UserID]
	}), nil
}

// runsAfter returns up to limit of the user's events in event_runs with ids
// above after.
func (tx *Tx) runsAfter(userID string, after int64, limit, maxBytes int) ([]parley.Event, error) {
	// Each row holds at least one event that is wanted.
	rows, err := tx.query(`SELECT first_id, last_id, created_at, events FROM event_runs WHERE user_id = ? AND last_id > ? ORDER BY last_id LIMIT ?`,
		userID, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []parley.Event
	size := 0
	for len(out) < limit && !full(size, maxBytes) && rows.Next() {
		var first, last, at int64
		var b []byte
		if err := rows.Scan(&first, &last, &at, &b); err != nil {
			return nil, err
		}
		run, err := decodeRun(userID, first, last, at, b)
		if err != nil {
			return nil, &CorruptRunError{UserID: userID, FirstID: first, LastID: last, Err: err}
		}
		for _, e := range run {
			if e.ID > after && len(out) < limit && !full(size, maxBytes) {
				out = append(out, e)
				size += len(e.Data)
			}
		}
	}
	return out, rows.Err()
}

// pruneRuns is PruneEvents for event_runs. A run's created_at is its newest
// event's, so a run all older than before goes whole when all of it is past
// the newest keep, and loses its front when only that is; a run that is
// partly newer than before stays whole (pruning removes an event only when
// it may, not whenever it may).
func (tx *Tx) pruneRuns(before int64, keep int) (int64, error) {
	const stale = `created_at < ? AND last_id <= (SELECT h.last_id FROM event_heads h WHERE h.user_id = event_runs.user_id) - ?`
	var n int64
	if err := tx.queryRow(`SELECT COALESCE(SUM(last_id - first_id + 1), 0) FROM event_runs WHERE `+stale,
		before, keep).Scan(&n); err != nil {
		return 0, fmt.Errorf("count stale event runs: %w", err)
	}
	if _, err := tx.exec(`DELETE FROM event_runs WHERE `+stale, before, keep); err != nil {
		return 0, fmt.Errorf("delete stale event runs: %w", err)
	}
	rows, err := tx.query(`SELECT r.user_id, r.first_id, r.last_id, r.created_at, r.events, h.last_id - ?
		FROM event_runs r JOIN event_heads h ON h.user_id = r.user_id
		WHERE r.created_at < ? AND r.first_id <= h.last_id - ? AND r.last_id > h.last_id - ?`, keep, before, keep, keep)
	if err != nil {
		return 0, fmt.Errorf("read event runs to trim: %w", err)
	}
	type trim struct {
		user        string
		last, first int64
		events      []byte
	}
	var trims []trim
	for rows.Next() {
		var user string
		var first, last, at, cut int64
		var b []byte
		if err := rows.Scan(&user, &first, &last, &at, &b, &cut); err != nil {
			rows.Close()
			return 0, err
		}
		run, err := decodeRun(user, first, last, at, b)
		if err != nil {
			rows.Close()
			return 0, &CorruptRunError{UserID: user, FirstID: first, LastID: last, Err: err}
		}
		kept := run[cut-first+1:]
		trims = append(trims, trim{user, last, cut + 1, encodeRun(kept, at)})
		n += cut - first + 1
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, t := range trims {
		if _, err := tx.exec(`UPDATE event_runs SET first_id = ?, events = ? WHERE user_id = ? AND last_id = ?`,
			t.first, t.events, t.user, t.last); err != nil {
			return 0, fmt.Errorf("trim event run: %w", err)
		}
	}
	return n, nil
}
