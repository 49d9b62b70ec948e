package store

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/parley-chat/parley"
)

// Append adds events to their users' logs, each with the next id of its user,
// and returns the stored events in the order given.
//
// It takes a few statements for any number of users, since a publish may
// address 10,000 of them: one head update per chunk of users reserves each
// user's run of ids (the row lock is what keeps ids contiguous across
// concurrent writers and nodes), then multi-row inserts write the events.
func (tx *Tx) Append(events ...parley.NewEvent) ([]parley.Event, error) {
	return tx.appendEvents(events, false, false)
}

// AppendLive is Append for events about a conversation: a participant whose
// account was erased has no log any more, and their events are left out
// (the others are appended) rather than failing the change. Only the
// events appended are returned.
func (tx *Tx) AppendLive(events ...parley.NewEvent) ([]parley.Event, error) {
	out, err := tx.appendEvents(events, true, false)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(out, func(e parley.Event) bool { return e.ID == 0 }), nil
}

// appendEvents appends events. later lets a back end that binds arrays hold
// the append back (Tx.hold) for a caller that needs no ids from it.
func (tx *Tx) appendEvents(events []parley.NewEvent, skipGone, later bool) ([]parley.Event, error) {
	if len(events) == 0 {
		return nil, nil
	}
	if tx.tail != nil && tx.tail.Full() {
		return nil, ErrTailFull
	}
	for _, e := range events {
		if impossibleKey(e.UserID) {
			return nil, parley.Errorf(parley.ENotFound, "unknown users: %q", e.UserID)
		}
	}
	// The events by user, users in id order so that transactions lock
	// overlapping heads in one order where they can, each user's in the
	// order given. Sorting indexes rather than grouping in a map of slices
	// saves a fan-out an allocation per user.
	order := make([]int, len(events))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(strings.Compare(events[a].UserID, events[b].UserID), cmp.Compare(a, b))
	})
	var users []string
	var counts []int
	for k, i := range order {
		if k == 0 || events[i].UserID != users[len(users)-1] {
			users = append(users, events[i].UserID)
			counts = append(counts, 0)
		}
		counts[len(counts)-1]++
	}

	if _, ok := tx.d.(ArrayBinder); ok && tx.heads == nil {
		return tx.appendArrays(events, order, users, counts, skipGone, later)
	}
	reserve := tx.advanceHeads
	if tx.heads != nil {
		reserve = tx.reserveCached
	}
	last, err := reserve(users, counts, skipGone)
	if err != nil {
		return nil, err
	}
	now := tx.appendTime()
	return tx.placeEvents(events, order, users, counts, last, now, func(stored []parley.Event) error {
		if tx.tail != nil {
			// Stored by the writer with the rest of its commit.
			tx.batches = append(tx.batches, Batch{Events: stored})
			return nil
		}
		return tx.insertEvents(stored)
	})
}

// placeEvents gives the events their ids from each user's new head (last,
// -1 for a user with no log), has write store their stored forms in log
// order (unless write is nil: they are stored already), and returns the
// events in the order given.
func (tx *Tx) placeEvents(events []parley.NewEvent, order []int, users []string, counts []int, last []int64,
	now time.Time, write func(stored []parley.Event) error) ([]parley.Event, error) {
	out := make([]parley.Event, len(events))
	logOrder := make([]parley.Event, 0, len(events)) // per user, by id, for the hook
	k := 0
	for j, u := range users {
		if last[j] < 0 {
			k += counts[j] // a user with no log (skipGone)
			continue
		}
		first := last[j] - int64(counts[j]) + 1
		for n := range counts[j] {
			i := order[k]
			k++
			e := events[i]
			out[i] = parley.Event{UserID: u, ID: first + int64(n), Type: e.Type, Data: e.Data, Time: parley.T(now)}
			logOrder = append(logOrder, out[i])
		}
	}
	if len(logOrder) == 0 {
		return out, nil
	}
	// The log keeps references where the live events carry text
	// (render.go says why).
	if write != nil {
		if err := write(storedForms(logOrder)); err != nil {
			return nil, err
		}
	}
	if tx.appended == nil {
		tx.appended = logOrder // nothing else holds it
	} else {
		tx.appended = append(tx.appended, logOrder...)
	}
	return out, nil
}

// appendEventsCTEs is the whole of an append on a back end that binds
// arrays, in one statement: lock the users' heads in user order (two
// writers with overlapping users then never deadlock: each waits for the
// other's first common head), advance each by its count, and insert the
// events with ids under the new heads. Payloads are bound once each (a
// fan-out's one payload, not one copy per user) and picked by index.
// moved holds the new heads; a user with no head row gets none, and
// neither do their events.
const appendEventsCTEs = `locked AS MATERIALIZED (
	SELECT user_id FROM event_heads WHERE user_id = ANY(?::text[]) ORDER BY user_id FOR UPDATE
), moved AS (
	UPDATE event_heads h SET last_id = h.last_id + v.n
	FROM locked JOIN unnest(?::text[], ?::int[]) AS v(user_id, n) ON v.user_id = locked.user_id
	WHERE h.user_id = locked.user_id
	RETURNING h.user_id, h.last_id, v.n
), stored AS (
	INSERT INTO events (user_id, id, type, data, created_at)
	SELECT e.u, m.last_id - m.n + e.k, e.t, (?::text[])[e.p], ?
	FROM unnest(?::text[], ?::int[], ?::text[], ?::int[]) AS e(u, k, t, p) JOIN moved m ON m.user_id = e.u
)`

// appendArrays is appendEvents in one statement (appendEventsCTEs), sent
// at once or, with later, held back for the next statement or the commit.
func (tx *Tx) appendArrays(events []parley.NewEvent, order []int, users []string, counts []int, skipGone, later bool) ([]parley.Event, error) {
	// The stored forms do not depend on ids: work them out first, in log
	// order, with each user's events numbered from 1.
	byLog := make([]parley.Event, len(order))
	for k, i := range order {
		byLog[k] = parley.Event{UserID: events[i].UserID, Type: events[i].Type, Data: events[i].Data}
	}
	stored := storedForms(byLog)
	evUsers := make([]string, len(stored))
	ordinals := make([]int32, len(stored))
	types := make([]string, len(stored))
	index := make([]int32, len(stored))
	var payloads []string
	var prev json.RawMessage
	for k, e := range stored {
		evUsers[k], types[k] = e.UserID, e.Type
		if k > 0 && e.UserID == evUsers[k-1] {
			ordinals[k] = ordinals[k-1] + 1
		} else {
			ordinals[k] = 1
		}
		// One copy per payload: events of one payload share its bytes.
		if len(payloads) == 0 || len(e.Data) != len(prev) || (len(e.Data) > 0 && &e.Data[0] != &prev[0]) {
			payloads = append(payloads, string(e.Data))
			prev = e.Data
		}
		index[k] = int32(len(payloads)) // PostgreSQL arrays count from 1
	}
	n := make([]int32, len(counts))
	for j, c := range counts {
		n[j] = int32(c)
	}
	now := Now()
	var out []parley.Event
	moved := make(map[string]int64, len(users))
	w := &heldWrite{
		ctes: []string{appendEventsCTEs},
		args: []any{users, users, n, payloads, Micros(now), evUsers, ordinals, types, index},
		last: "SELECT user_id, last_id FROM moved",
		scan: func(rows Rows) error { return scanHeads(rows, moved) },
		then: func() error {
			last, err := movedHeads(users, moved, skipGone)
			if err == nil {
				out, err = tx.placeEvents(events, order, users, counts, last, now, nil)
			}
			return err
		},
		fail: func(err error) error { return fmt.Errorf("append events: %w", err) },
	}
	// A held message goes first, in the same statement (hold).
	if err := tx.hold(w); err != nil {
		return nil, err
	}
	if later {
		return nil, nil
	}
	if err := tx.sendHeld(); err != nil {
		return nil, err
	}
	return out, nil
}

// headChunk and rowChunk keep statements well under both back ends'
// bound-parameter limits.
const (
	headChunk = 500
	rowChunk  = 200
)

// chunks splits s into parts of at most size elements for statements with
// one placeholder group per element, in a few sizes only: size, then for
// what is left the powers of two below it, largest first (a remainder of n
// takes as many statements as n has bits set: 10 rows are 8 and 2, where
// steps of size/5 made them 8, 1 and 1). Each count of groups is a
// statement of its own shape, prepared and kept by the connection, and a
// prepared 200-row INSERT holds tens of KB in SQLite: with every remainder
// a shape of its own, a soak's merges filled the writer's statement cache
// with hundreds of them (RSS +13 % from the first minute to the eighth).
func chunks[T any](s []T, size int) iter.Seq[[]T] {
	return func(yield func([]T) bool) {
		s := s
		for len(s) > 0 {
			n := size
			if len(s) < size {
				n = 1 << (bits.Len(uint(len(s))) - 1)
			}
			if !yield(s[:n]) {
				return
			}
			s = s[n:]
		}
	}
}

// advanceHeads moves each user's log head forward by their count of events
// and returns the new heads, in the order of users. Users with the same
// count share a statement. users must be sorted. A user with no log is an
// error, or with skipGone a head of -1.
func (tx *Tx) advanceHeads(users []string, counts []int, skipGone bool) ([]int64, error) {
	if l, ok := tx.d.(RowLocker); ok {
		// An UPDATE … IN (…) locks rows in whatever order the plan reads
		// them; locking first in user order keeps two writers with
		// overlapping users from deadlocking.
		for part := range chunks(users, headChunk) {
			if err := tx.lockHeads(part, l.ForUpdate()); err != nil {
				return nil, err
			}
		}
	}
	byCount := make(map[int][]string)
	for j, u := range users {
		byCount[counts[j]] = append(byCount[counts[j]], u)
	}
	moved := make(map[string]int64, len(users))
	for n, group := range byCount {
		for part := range chunks(group, headChunk) {
			in, args := inList(part, n)
			rows, err := tx.query(`UPDATE event_heads SET last_id = last_id + ? WHERE user_id IN `+in+
				` RETURNING user_id, last_id`, args...)
			if err != nil {
				return nil, fmt.Errorf("advance log heads: %w", err)
			}
			if err := scanHeads(rows, moved); err != nil {
				return nil, fmt.Errorf("advance log heads: %w", err)
			}
		}
	}
	return movedHeads(users, moved, skipGone)
}

// movedHeads returns the new heads of users, in their order, from those
// an append moved: -1 for a user with none, or with skipGone false an
// error. Every user has a head row, so the heads not moved name the users
// who do not exist; the caller's error rolls back what was written.
func movedHeads(users []string, moved map[string]int64, skipGone bool) ([]int64, error) {
	if len(moved) != len(users) && !skipGone {
		return nil, unknownUsers(users, moved)
	}
	last := make([]int64, len(users))
	for j, u := range users {
		id, ok := moved[u]
		if !ok {
			id = -1
		}
		last[j] = id
	}
	return last, nil
}

// reserveCached is advanceHeads for a writer with a HeadCache: heads come
// from the cache (read once per user into it) and move only there.
func (tx *Tx) reserveCached(users []string, counts []int, skipGone bool) ([]int64, error) {
	h := tx.heads
	entries := make([]*cachedHead, len(users))
	var missing []string
	for j, u := range users {
		if entries[j] = h.lookup(u); entries[j] == nil {
			missing = append(missing, u)
		}
	}
	if len(missing) > 0 {
		// No request of this transaction has appended to these users,
		// so what the log holds is their committed head.
		loaded, err := tx.LogHeads(missing)
		if err != nil {
			return nil, fmt.Errorf("read log heads: %w", err)
		}
		if len(loaded) != len(missing) && !skipGone {
			return nil, unknownUsers(missing, loaded)
		}
		for j, u := range users {
			if id, ok := loaded[u]; entries[j] == nil && ok {
				entries[j] = h.load(u, id)
			}
		}
	}
	last := make([]int64, len(users))
	for j, c := range entries {
		if c == nil {
			last[j] = -1
			continue
		}
		last[j] = c.head() + int64(counts[j])
		h.move(c, last[j])
	}
	return last, nil
}

// unknownUsers is the error for an append to users of whom some have no
// head: up to five of those are named.
func unknownUsers(users []string, heads map[string]int64) error {
	var missing []string
	for _, u := range users {
		if _, ok := heads[u]; !ok && len(missing) < 5 {
			missing = append(missing, u)
		}
	}
	return parley.Errorf(parley.ENotFound, "unknown users: %s", strings.Join(missing, ", "))
}

func (tx *Tx) lockHeads(users []string, forUpdate string) error {
	if err := tx.lockRows("event_heads", "user_id", users, forUpdate); err != nil {
		return fmt.Errorf("lock log heads: %w", err)
	}
	return nil
}

// lockRows takes the row locks (forUpdate) of the rows of table whose key
// is in keys, in key order, so that two transactions locking overlapping
// sets wait for each other rather than deadlock.
func (tx *Tx) lockRows(table, key string, keys []string, forUpdate string) error {
	in, args := inList(keys)
	rows, err := tx.query(`SELECT `+key+` FROM `+table+` WHERE `+key+` IN `+in+` ORDER BY `+key+forUpdate, args...)
	if err != nil {
		return err
	}
	// The locks are taken as the rows are read.
	for rows.Next() {
		continue
	}
	rows.Close()
	return rows.Err()
}

// insertEvents inserts events into the events table.
func (tx *Tx) insertEvents(events []parley.Event) error {
	for part := range chunks(events, rowChunk) {
		q := `INSERT INTO events (user_id, id, type, data, created_at) VALUES (?, ?, ?, ?, ?)` +
			strings.Repeat(`, (?, ?, ?, ?, ?)`, len(part)-1)
		args := make([]any, 0, 5*len(part))
		var data []byte
		var dataArg any
		for _, e := range part {
			// A fan-out's events share one payload: convert it once, not
			// once per user.
			if len(e.Data) == 0 || len(data) != len(e.Data) || &data[0] != &e.Data[0] {
				data, dataArg = e.Data, string(e.Data)
			}
			args = append(args, e.UserID, e.ID, e.Type, dataArg, Micros(e.Time.Time))
		}
		if _, err := tx.exec(q, args...); err != nil {
			return fmt.Errorf("insert events: %w", err)
		}
	}
	return nil
}

// AppendJSON marshals data and appends one event of type typ to each user's
// log, as AppendLive does: it is for the participants of a conversation,
// some of whom may have been erased.
func (tx *Tx) AppendJSON(typ string, data any, userIDs ...string) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("marshal %s: %w", typ, err)
	}
	return tx.AppendEncoded(typ, b, userIDs...)
}

// AppendEncoded is AppendJSON for data already encoded, which the events
// share: it must not change after.
func (tx *Tx) AppendEncoded(typ string, b json.RawMessage, userIDs ...string) error {
	evs := make([]parley.NewEvent, len(userIDs))
	for i, u := range userIDs {
		evs[i] = parley.NewEvent{UserID: u, Type: typ, Data: b}
	}
	// No ids are returned, so the append may be held back (appendEvents).
	_, err := tx.appendEvents(evs, true, true)
	return err
}

// EventsAfter returns up to limit events of the user's log with ids above after.
func (tx *Tx) EventsAfter(userID string, after int64, limit int) ([]parley.Event, error) {
	return tx.EventsAfterMax(userID, after, limit, 0)
}

// EventsAfterMax is EventsAfter bounded by bytes as well: it stops at the
// event that brings the stored payloads to maxBytes (always one at least);
// 0 = no bound. A page of a log of 64 KiB events (a call.signal may be that
// large) is otherwise 32 MB, held by each poll and each replaying stream.
func (tx *Tx) EventsAfterMax(userID string, after int64, limit, maxBytes int) ([]parley.Event, error) {
	var recent []parley.Event
	if tx.tail != nil {
		recent = tx.tail.after(userID, after, limit)
	}
	rows, err := tx.query(`SELECT id, type, data, created_at FROM events WHERE user_id = ? AND id > ? ORDER BY id LIMIT ?`,
		userID, after, limit)
	if err != nil {
		return nil, err
	}
	out := make([]parley.Event, 0, 16)
	size := 0
	for !full(size, maxBytes) && rows.Next() {
		e := parley.Event{UserID: userID}
		if err := scanEvent(rows, &e); err != nil {
			rows.Close()
			return nil, err
		}
		out = append(out, e)
		size += len(e.Data)
	}
	// Closed before the statements below: outside a transaction (Read)
	// open rows would hold their connection while those take another.
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if tx.tail != nil {
		// With a tail, the events table holds only what was merged before
		// event_runs existed: older than any run.
		runs, err := tx.runsAfter(userID, after, limit, maxBytes)
		if err != nil {
			return nil, err
		}
		out = unionByID(unionByID(out, runs, limit, maxBytes), recent, limit, maxBytes)
	}
	if err := tx.render(out); err != nil {
		return nil, err
	}
	return out, nil
}

// scanEvent scans a row of (lead…, id, type, data, created_at) into e.
func scanEvent(rows Rows, e *parley.Event, lead ...any) error {
	var data string
	var at int64
	if err := rows.Scan(append(lead, &e.ID, &e.Type, &data, &at)...); err != nil {
		return err
	}
	e.Data, e.Time = json.RawMessage(data), parley.T(FromMicros(at))
	return nil
}

// LogRange is a span of a user's log: the events with ids in (After, UpTo].
type LogRange struct {
	UserID      string
	After, UpTo int64
}

// eventsInSQL reads many users' spans in one statement.
const eventsInSQL = `SELECT e.user_id, e.id, e.type, e.data, e.created_at
	FROM unnest(?::text[], ?::bigint[], ?::bigint[]) AS r(u, lo, hi)
	JOIN events e ON e.user_id = r.u AND e.id > r.lo AND e.id <= r.hi
	ORDER BY e.user_id, e.id`

// EventsIn returns the events of each range, by user (one range per user).
// A user whose log cannot be read (a corrupt run) is left out, so that one
// user's damage does not hide the others'. On a back end that binds arrays
// it is one statement for all the ranges, and one for the messages they
// refer to; elsewhere a read per range.
func (tx *Tx) EventsIn(ranges []LogRange) (map[string][]parley.Event, error) {
	out := make(map[string][]parley.Event, len(ranges))
	if _, ok := tx.d.(ArrayBinder); !ok || tx.tail != nil {
		for _, r := range ranges {
			evs, err := tx.EventsAfter(r.UserID, r.After, int(r.UpTo-r.After))
			var bad *CorruptRunError
			if errors.As(err, &bad) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("events of %s after %d: %w", r.UserID, r.After, err)
			}
			out[r.UserID] = evs
		}
		return out, nil
	}
	users, lo, hi := make([]string, len(ranges)), make([]int64, len(ranges)), make([]int64, len(ranges))
	for i, r := range ranges {
		users[i], lo[i], hi[i] = r.UserID, r.After, r.UpTo
	}
	rows, err := tx.query(eventsInSQL, users, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("events of %d users: %w", len(ranges), err)
	}
	var all []parley.Event
	for rows.Next() {
		var e parley.Event
		if err := scanEvent(rows, &e, &e.UserID); err != nil {
			rows.Close()
			return nil, err
		}
		all = append(all, e)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := tx.render(all); err != nil {
		return nil, err
	}
	for i := 0; i < len(all); {
		j := i + 1
		for j < len(all) && all[j].UserID == all[i].UserID {
			j++
		}
		out[all[i].UserID] = all[i:j:j]
		i = j
	}
	return out, nil
}

// full reports whether size has reached the bound maxBytes (0 = none).
// Every reader of the log stops at the same rule, so where one source stops
// the union of them has stopped already.
func full(size, maxBytes int) bool { return maxBytes > 0 && size >= maxBytes }

// unionByID merges a user's events from the table and from the tail (both
// by id) into the first limit of their union (and up to maxBytes, as
// full says), each id once. The log is
// contiguous in the two together, except that the tail may still hold
// events merged and since pruned from the table: a run of them ends in a
// gap, and is left out.
func unionByID(table, recent []parley.Event, limit, maxBytes int) []parley.Event {
	out := make([]parley.Event, 0, min(limit, len(table)+len(recent)))
	size := 0
	for len(out) < limit && !full(size, maxBytes) && (len(table) > 0 || len(recent) > 0) {
		var e parley.Event
		switch {
		case len(recent) == 0 || len(table) > 0 && table[0].ID <= recent[0].ID:
			if len(recent) > 0 && recent[0].ID == table[0].ID {
				recent = recent[1:]
			}
			e, table = table[0], table[1:]
		default:
			e, recent = recent[0], recent[1:]
		}
		if n := len(out); n > 0 && e.ID != out[n-1].ID+1 {
			out, size = out[:0], 0
		}
		out = append(out, e)
		size += len(e.Data)
	}
	return out
}

// headOf is a user's head, in SQL, for their head row h: the newest event id
// where it is past h.last_id (a HeadCache moved it), else h.last_id.
const headOf = `COALESCE((SELECT e.id FROM events e WHERE e.user_id = h.user_id AND e.id > h.last_id ORDER BY e.id DESC LIMIT 1), h.last_id)`

// headOfRuns is headOf where merges write event_runs (SQLite's MAX of two).
const headOfRuns = `MAX(` + headOf + `, COALESCE((SELECT r.last_id FROM event_runs r WHERE r.user_id = h.user_id ORDER BY r.last_id DESC LIMIT 1), 0))`

// head is the headOf for this transaction's back end.
func (tx *Tx) head() string {
	if tx.tail != nil {
		return headOfRuns
	}
	return headOf
}

// LogBounds returns the oldest retained id and the newest id of the user's log.
// An empty log has first = last+1.
func (tx *Tx) LogBounds(userID string) (first, last int64, err error) {
	// One statement: a stream's opening runs it for every reconnect.
	var oldest *int64
	oldestOf := `(SELECT MIN(e.id) FROM events e WHERE e.user_id = h.user_id)`
	if tx.tail != nil {
		// Runs are newer than the events table's rows.
		oldestOf = `COALESCE(` + oldestOf + `,
			(SELECT r.first_id FROM event_runs r WHERE r.user_id = h.user_id ORDER BY r.last_id LIMIT 1))`
	}
	err = tx.queryRow(`SELECT `+tx.head()+`, `+oldestOf+` FROM event_heads h WHERE h.user_id = ?`, userID).Scan(&last, &oldest)
	if isNoRows(err) {
		return 0, 0, parley.NotFound
	}
	if err != nil {
		return 0, 0, err
	}
	first = last + 1
	if oldest != nil {
		first = *oldest
	}
	if tx.tail != nil {
		if tf, tl, ok := tx.tail.bounds(userID); ok {
			if oldest == nil {
				// The table holds none of the log: it starts in
				// the tail.
				first = tf
			}
			last = max(last, tl)
		}
	}
	return first, last, nil
}

// LogHeads returns the newest id of each user's log; unknown users are left
// out.
func (tx *Tx) LogHeads(userIDs []string) (map[string]int64, error) {
	out := make(map[string]int64, len(userIDs))
	ids := slices.DeleteFunc(slices.Clone(userIDs), impossibleKey)
	for part := range chunks(ids, headChunk) {
		in, args := inList(part)
		rows, err := tx.query(`SELECT h.user_id, `+tx.head()+` FROM event_heads h WHERE h.user_id IN `+in, args...)
		if err != nil {
			return nil, err
		}
		if err := scanHeads(rows, out); err != nil {
			return nil, err
		}
	}
	if tx.tail != nil {
		for u, id := range out {
			if _, last, ok := tx.tail.bounds(u); ok && last > id {
				out[u] = last
			}
		}
	}
	return out, nil
}

// inList returns the placeholder list "(?, ?, …)" for ids and the statement's
// arguments: lead, then ids. ids must not be empty.
func inList[K string | int64](ids []K, lead ...any) (string, []any) {
	args := make([]any, 0, len(lead)+len(ids))
	args = append(args, lead...)
	for _, id := range ids {
		args = append(args, id)
	}
	return "(?" + strings.Repeat(", ?", len(ids)-1) + ")", args
}

// scanHeads reads (user_id, last_id) rows into heads and closes rows.
func scanHeads(rows Rows, heads map[string]int64) error {
	defer rows.Close()
	for rows.Next() {
		var u string
		var id int64
		if err := rows.Scan(&u, &id); err != nil {
			return err
		}
		heads[u] = id
	}
	return rows.Err()
}

// PruneEvents deletes events that are both older than before and not among
// the newest keep of their user, so that whichever bound keeps more wins.
func (tx *Tx) PruneEvents(before time.Time, keep int) (int64, error) {
	if tx.tail != nil {
		// Events still in the tail are not in the table that is pruned
		// below, nor counted among each user's newest: merge them all.
		if _, err := tx.mergeTail(tx.tail.All()); err != nil {
			return 0, err
		}
	}
	if tx.heads != nil {
		// The head rows lag behind a HeadCache; an emptied log must still
		// know its head, so bring them up to date first.
		beyond := `EXISTS (SELECT 1 FROM events e WHERE e.user_id = h.user_id AND e.id > h.last_id)`
		if tx.tail != nil {
			beyond += ` OR EXISTS (SELECT 1 FROM event_runs r WHERE r.user_id = h.user_id AND r.last_id > h.last_id)`
		}
		if _, err := tx.exec(`UPDATE event_heads AS h SET last_id = ` + tx.head() + ` WHERE ` + beyond); err != nil {
			return 0, fmt.Errorf("update log heads: %w", err)
		}
	}
	res, err := tx.exec(`DELETE FROM events WHERE created_at < ?
		AND id <= (SELECT h.last_id FROM event_heads h WHERE h.user_id = events.user_id) - ?`,
		Micros(before), keep)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	if err != nil || tx.tail == nil {
		return n, err
	}
	m, err := tx.pruneRuns(Micros(before), keep)
	return n + m, err
}
