package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/parley-chat/parley"
)

// An event_batches row holds the appends of one group commit (Tx.WriteBatch;
// rows from before 304a66b hold one append each): the events in log order
// per user and, once each, the (type, data) payloads they carry, so that
// an event published to 10,000 users stores its data once. The encoding is binary because a
// fan-out's row is encoded on the writer's critical path; it is:
//
//	version byte (1)
//	uvarint payload count, then per payload: uvarint length + type, uvarint length + data
//	uvarint event count, then per event: uvarint length + user id, uvarint id, uvarint payload index
//
// All of a row's events share its created_at.
const batchVersion = 1

// encodeBatch encodes events (of one time) as an event_batches row.
func encodeBatch(events []parley.Event) []byte {
	type payload struct {
		typ  string
		data *byte // identity, not content: a fan-out shares one slice
		n    int
	}
	index := map[payload]uint64{}
	refs := make([]uint64, len(events))
	// Sized for the first payload: most appends carry one.
	bodies := make([]byte, 0, 2*binary.MaxVarintLen64+len(events[0].Type)+len(events[0].Data))
	for i, e := range events {
		k := payload{e.Type, nil, len(e.Data)}
		if len(e.Data) > 0 {
			k.data = &e.Data[0]
		}
		j, ok := index[k]
		if !ok {
			j = uint64(len(index))
			index[k] = j
			bodies = appendBytes(bodies, e.Type)
			bodies = appendBytes(bodies, string(e.Data))
		}
		refs[i] = j
	}
	b := make([]byte, 0, 1+len(bodies)+len(events)*(len(events[0].UserID)+6)+16)
	b = append(b, batchVersion)
	b = binary.AppendUvarint(b, uint64(len(index)))
	b = append(b, bodies...)
	b = binary.AppendUvarint(b, uint64(len(events)))
	for i, e := range events {
		b = appendBytes(b, e.UserID)
		b = binary.AppendUvarint(b, uint64(e.ID))
		b = binary.AppendUvarint(b, refs[i])
	}
	return b
}

func appendBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errBadBatch = errors.New("malformed event batch")

// decodeBatch is the inverse of encodeBatch; at is the row's created_at.
func decodeBatch(b []byte, at time.Time) ([]parley.Event, error) {
	r := batchReader{b: b}
	if v := r.byte(); v != batchVersion {
		return nil, fmt.Errorf("%w: version %d", errBadBatch, v)
	}
	type payload struct {
		typ  string
		data []byte
	}
	n := r.count()
	bodies := make([]payload, 0, n)
	for range n {
		typ := r.bytes()
		bodies = append(bodies, payload{string(typ), slices.Clone(r.bytes())})
	}
	n = r.count()
	events := make([]parley.Event, 0, n)
	t := parley.T(at)
	for range n {
		user, id, j := string(r.bytes()), r.uvarint(), r.uvarint()
		if r.err != nil {
			break
		}
		if user == "" || id == 0 || id > 1<<62 || j >= uint64(len(bodies)) {
			return nil, fmt.Errorf("%w: event %d", errBadBatch, len(events))
		}
		p := bodies[j]
		events = append(events, parley.Event{UserID: user, ID: int64(id), Type: p.typ, Data: p.data, Time: t})
	}
	if r.err == nil && len(r.b) > 0 {
		r.err = fmt.Errorf("%w: %d bytes left over", errBadBatch, len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return events, nil
}

// batchReader reads the encoding; the first error sticks and later reads
// return zero values.
type batchReader struct {
	b   []byte
	err error
}

func (r *batchReader) fail() {
	if r.err == nil {
		r.err = errBadBatch
	}
	r.b = nil
}

func (r *batchReader) byte() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *batchReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

// varint reads a zigzag-encoded varint (binary.AppendVarint).
func (r *batchReader) varint() int64 {
	u := r.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

func (r *batchReader) bytes() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

// count reads an item count, bounded by the bytes left (every item takes
// at least one), so that a corrupt row cannot ask for a huge allocation.
func (r *batchReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail()
		return 0
	}
	return int(n)
}

// appendTime is the time of the events appended now: the writer's commit
// time (NewWriteTx), or the clock's.
func (tx *Tx) appendTime() time.Time {
	if tx.at.IsZero() {
		return Now()
	}
	return tx.at
}

// WriteBatch stores the events the transactions of one commit appended
// (Batches), in log order per user, as one event_batches row, and returns
// it for the tail once the commit is done. One row per append, each a
// B-tree insert and three bound values through database/sql and the
// driver, was a fifth of the writer's CPU with private events, 8 to 20 of
// them per commit (BENCHMARKS.md, "One row per commit"); writing those
// rows in one statement saved nothing, since the cost is per row.
func (tx *Tx) WriteBatch(events []parley.Event) (Batch, error) {
	b := Batch{Seq: tx.tail.nextSeq(), Events: events}
	if _, err := tx.exec(`INSERT INTO event_batches (seq, created_at, events) VALUES (?, ?, ?)`,
		b.Seq, Micros(events[0].Time.Time), encodeBatch(events)); err != nil {
		return Batch{}, fmt.Errorf("insert event batch: %w", err)
	}
	return b, nil
}

// Batches returns the appends of this transaction on a back end with a
// tail: their stored events, with no seq, for the commit's WriteBatch.
func (tx *Tx) Batches() []Batch { return tx.batches }

// Merges returns the merge steps this transaction wrote (PruneEvents merges
// the whole tail first), to apply to the tail once it commits.
func (tx *Tx) Merges() []*MergeStep { return tx.merges }

// MergeTailStep merges about max of the tail's events (whole users) into
// event_runs, and reports whether there were any. Without a tail
// (PostgreSQL) it does nothing. A caller draining the tail this way, one
// transaction per step, keeps each transaction small where PruneEvents
// would merge all of it in one.
func (tx *Tx) MergeTailStep(max int) (bool, error) {
	if tx.tail == nil {
		return false, nil
	}
	return tx.mergeTail(tx.tail.Step(max))
}

// mergeTail writes a planned step (nil: nothing to merge): the events into
// event_runs (any already merged are skipped if the step holds events
// reloaded after a crash; MergeStep.Reloaded) and the deletion of the batch
// rows it empties. The back end applies it to the tail (Tail.Merged) once
// the transaction commits, or gives it up (Tail.Abandon) if it rolls back.
func (tx *Tx) mergeTail(s *MergeStep) (bool, error) {
	if s == nil {
		return false, nil
	}
	events := s.Events
	if s.Reloaded {
		var err error
		if events, err = tx.notMerged(events); err != nil {
			return false, err
		}
	}
	if err := tx.insertRuns(events); err != nil {
		return false, err
	}
	for part := range chunks(s.Done, headChunk) {
		in, args := inList(part)
		if _, err := tx.exec(`DELETE FROM event_batches WHERE seq IN `+in, args...); err != nil {
			return false, fmt.Errorf("delete merged event batches: %w", err)
		}
	}
	tx.merges = append(tx.merges, s)
	return true, nil
}

// LoadTail adds the events of every event_batches row to t: what a back end
// with a tail does when it opens.
func (tx *Tx) LoadTail(t *Tail) error {
	rows, err := tx.query(`SELECT seq, created_at, events FROM event_batches ORDER BY seq`)
	if err != nil {
		return fmt.Errorf("read event batches: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq, at int64
		var b []byte
		if err := rows.Scan(&seq, &at, &b); err != nil {
			return fmt.Errorf("read event batches: %w", err)
		}
		evs, err := decodeBatch(b, FromMicros(at))
		if err != nil {
			return fmt.Errorf("event batch %d: %w", seq, err)
		}
		t.Add(Batch{Seq: seq, Events: evs, Reloaded: true})
	}
	return rows.Err()
}
