package store

import (
	"cmp"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley"
)

// Tail is the newest part of every user's log, kept in memory by a back end
// with a single writer (SQLite) and merged into the tables in bulk.
//
// Why: the events table is indexed by (user_id, id), so an append of one
// event to each of 10,000 users is 10,000 inserts at 10,000 places in that
// index, and once a user's log outgrows a page each one dirties a page of
// its own, which the commit writes to the WAL and the checkpoint copies
// back (~4 KB of disk writes per delivery). An append instead goes into
// its commit's event_batches row (payloads stored once) and adds the
// events here; a merge later writes all of a user's unmerged events as one
// event_runs row (runs.go), so a page is written once for all of them.
//
// A user's log is then the tables (events, then event_runs) and the tail
// together. Reads (Tx.EventsAfter, LogBounds, LogHeads) take their union and
// drop duplicates: an event stays here for a while after it is merged, until
// every read that began before the merge committed has ended (BeginRead),
// since such a read's snapshot of the tables may not hold it yet. A merge
// takes all of a user's unmerged events at once, so the tables hold each
// log up to some id and the tail the rest.
//
// On start the back end reloads the event_batches rows (Tx.LoadTail); a
// row is deleted by the merge that takes its last event. A crash between
// two merges of one batch's users reloads events already merged: a merge
// of reloaded events skips those up to each user's merged head, and reads
// drop duplicates. Any other collision fails the merge, so that an
// acknowledged event is never dropped quietly.
//
// The writer calls Add, Step and Merged, one at a time; reads may come from
// any goroutine.
type Tail struct {
	mu       sync.RWMutex
	logs     map[string][]tailEvent // per user, ids ascending and contiguous
	unmerged int
	held     int             // events in logs, merged or not
	batches  map[int64]int   // seq of a batch row → its events neither merged nor in an open step
	open     []*MergeStep    // steps planned in the open transaction
	ages     []batchAge      // batches in seq order, those merged dropped from the front
	queue    []string        // users the merge goes through next, in key order
	dropping map[string]bool // users with merged events still held
	seq      int64           // the last batch seq handed out (writer only)
	limit    int             // unmerged events past which appends are refused; 0: none
	full     atomic.Bool     // unmerged >= limit > 0, for Append to read without the lock

	readMu sync.Mutex
	gen    uint64         // merges applied so far
	reads  map[uint64]int // reads in progress, by the gen they began at
}

type batchAge struct {
	seq int64
	at  time.Time
}

// tailEvent is small and holds one pointer: the tail holds hundreds of
// thousands of them in a busy fan-out, and the garbage collector scans each
// (with a parley.Event here, GC was a fifth of the merge's CPU).
type tailEvent struct {
	id     int64
	merged uint64    // the gen of the merge that wrote it to the table; 0 if none has, planned if one is open
	body   *tailBody // shared by the events of a batch that carry one payload
}

// planned marks an event taken by a step of the open transaction: later
// steps skip it, and a rollback (Abandon) puts it back.
const planned = ^uint64(0)

type tailBody struct {
	batch    int64 // seq of the event_batches row
	reloaded bool  // read back at start: the table may hold some of the batch already
	typ      string
	data     json.RawMessage
	at       parley.Time
}

func (e tailEvent) event(user string) parley.Event {
	return parley.Event{UserID: user, ID: e.id, Type: e.body.typ, Data: e.body.data, Time: e.body.at}
}

// Batch is the events of one event_batches row: a commit's appends (a
// row from before 304a66b: one append's).
type Batch struct {
	Seq      int64
	Events   []parley.Event // in log order per user
	Reloaded bool           // read back by LoadTail rather than just appended
}

// MergeStep is a merge of some users' unmerged events into event_runs
// (a row per run): Tail.Step plans it, Tx.MergeTailStep writes it, Tail.Merged applies it
// once it is committed.
type MergeStep struct {
	Events []parley.Event // by user in key order, then by id
	Done   []int64        // batch rows that hold no unmerged event after it
	// Reloaded: some events come from batches read back at start, which
	// a merge cut short by a crash may have written already. Only then
	// does the merge skip rows that exist; otherwise a collision is an
	// error, not an acknowledged event dropped.
	Reloaded bool
	counts   map[int64]int // seq → events of that batch in this step
}

// NewTail returns an empty tail.
func NewTail() *Tail {
	return &Tail{
		logs:     map[string][]tailEvent{},
		batches:  map[int64]int{},
		dropping: map[string]bool{},
		reads:    map[uint64]int{},
	}
}

// Add takes the events of committed batches.
func (t *Tail) Add(batches ...Batch) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range batches {
		if len(b.Events) == 0 {
			continue
		}
		var body *tailBody
		for _, e := range b.Events {
			if body == nil || body.typ != e.Type || !sameData(body.data, e.Data) {
				body = &tailBody{batch: b.Seq, reloaded: b.Reloaded, typ: e.Type, data: e.Data, at: e.Time}
			}
			t.logs[e.UserID] = append(t.logs[e.UserID], tailEvent{id: e.ID, body: body})
		}
		t.ages = append(t.ages, batchAge{b.Seq, b.Events[0].Time.Time})
		t.batches[b.Seq] += len(b.Events)
		t.seq = max(t.seq, b.Seq)
		t.unmerged += len(b.Events)
		t.held += len(b.Events)
	}
	t.counted()
}

// ErrTailFull refuses an append while the tail holds its limit of
// unmerged events (SetLimit): merging keeps failing, and taking more would
// grow the process's memory until it runs out. It is a 503: the client
// retries, and appends are taken again as soon as merges catch up.
var ErrTailFull = parley.Errorf(parley.EUnavailable,
	"the server is not taking new events for now: its embedded database cannot merge the ones it holds (see the server log)")

// SetLimit bounds the unmerged events: past n (0: no bound), appends fail
// with ErrTailFull until merges bring the tail back under it. Merges keep
// a healthy tail far below (the back end's own thresholds), so only merges
// that fail reach it.
func (t *Tail) SetLimit(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.limit = n
	t.counted()
}

// Full reports whether appends are refused (SetLimit).
func (t *Tail) Full() bool { return t.full.Load() }

// counted updates full after unmerged or limit changed; t.mu is held.
func (t *Tail) counted() {
	t.full.Store(t.limit > 0 && t.unmerged >= t.limit)
}

// nextSeq returns the seq of the next batch row. Seqs are handed out here,
// not by the table, so that one is never reused while the tail still counts
// a batch under it (a row deleted by a merge could otherwise be followed by
// a new one with its seq in the same transaction).
func (t *Tail) nextSeq() int64 {
	t.seq++
	return t.seq
}

// Unmerged returns how many events are not yet in the tables.
func (t *Tail) Unmerged() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.unmerged
}

// Oldest returns when the oldest batch with events not yet merged was
// appended; zero if there is none.
func (t *Tail) Oldest() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.trimAges()
	if len(t.ages) == 0 {
		return time.Time{}
	}
	return t.ages[0].at
}

// trimAges forgets the ages of batches that have no event left to merge.
func (t *Tail) trimAges() {
	for len(t.ages) > 0 && t.batches[t.ages[0].seq] == 0 {
		t.ages = t.ages[1:]
	}
	if len(t.ages) == 0 {
		t.ages = nil // let the backing array go
	}
}

// Held returns how many events the tail holds, merged or not.
func (t *Tail) Held() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.held
}

// Step plans the merge of at least one user's unmerged events, whole users
// in key order from where the last step ended, until about maxEvents, and
// marks them planned. It returns nil if there is nothing to merge. The
// caller writes the step (Tx.MergeTailStep) and then applies it with Merged
// once the transaction commits, or gives it up with Abandon.
func (t *Tail) Step(maxEvents int) *MergeStep {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.unmerged == 0 {
		return nil
	}
	// Whole users take a step past maxEvents: room for a few more.
	s := &MergeStep{Events: make([]parley.Event, 0, min(maxEvents, t.unmerged)+64), counts: map[int64]int{}}
	for len(s.Events) < maxEvents {
		if len(t.queue) == 0 {
			if len(s.Events) > 0 {
				break // the next round starts at the next step
			}
			for u, log := range t.logs {
				if log[len(log)-1].merged == 0 {
					t.queue = append(t.queue, u)
				}
			}
			slices.Sort(t.queue)
			if len(t.queue) == 0 {
				break
			}
		}
		u := t.queue[0]
		t.queue = t.queue[1:]
		log := t.logs[u]
		for k := unmergedFrom(log); k < len(log); k++ {
			e := &log[k]
			e.merged = planned
			s.Events = append(s.Events, e.event(u))
			s.Reloaded = s.Reloaded || e.body.reloaded
			s.counts[e.body.batch]++
			if t.batches[e.body.batch]--; t.batches[e.body.batch] == 0 {
				delete(t.batches, e.body.batch)
				s.Done = append(s.Done, e.body.batch)
			}
		}
	}
	if len(s.Events) == 0 {
		return nil
	}
	slices.Sort(s.Done)
	t.open = append(t.open, s)
	return s
}

// Abandon gives up steps whose transaction was rolled back: their events
// are to merge again.
func (t *Tail) Abandon(steps ...*MergeStep) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range steps {
		if !t.close(s) {
			continue // applied or given up already
		}
		t.mark(s, planned, 0)
		for seq, n := range s.counts {
			t.batches[seq] += n
		}
	}
}

// Rollback gives up every step planned in the open transaction.
func (t *Tail) Rollback() {
	t.mu.RLock()
	open := slices.Clone(t.open)
	t.mu.RUnlock()
	t.Abandon(open...)
}

// close removes s from the open steps and reports whether it was one.
func (t *Tail) close(s *MergeStep) bool {
	i := slices.Index(t.open, s)
	if i < 0 {
		return false
	}
	t.open = slices.Delete(t.open, i, i+1)
	return true
}

// mark sets the merged field of the step's events from one value to another.
func (t *Tail) mark(s *MergeStep, from, to uint64) {
	for i := 0; i < len(s.Events); {
		u := s.Events[i].UserID
		log := t.logs[u]
		for ; i < len(s.Events) && s.Events[i].UserID == u; i++ {
			k, ok := slices.BinarySearchFunc(log, s.Events[i].ID, func(e tailEvent, id int64) int {
				return cmp.Compare(e.id, id)
			})
			if ok && log[k].merged == from {
				log[k].merged = to
				if to != 0 && to != planned {
					t.unmerged--
				}
			}
		}
		if to != 0 && to != planned {
			t.dropping[u] = true
		}
	}
}

// All plans the merge of every unmerged event, as Step does.
func (t *Tail) All() *MergeStep {
	t.mu.Lock()
	t.queue = t.queue[:0]
	t.mu.Unlock()
	return t.Step(int(^uint(0) >> 1))
}

// unmergedFrom is the index of the first unmerged event of a log.
func unmergedFrom(log []tailEvent) int {
	i, _ := slices.BinarySearchFunc(log, true, func(e tailEvent, _ bool) int {
		if e.merged != 0 {
			return -1
		}
		return 1
	})
	return i
}

// Merged applies a committed merge step: its events are in the table now,
// and are dropped from memory once no read that began before remains.
func (t *Tail) Merged(s *MergeStep) {
	t.readMu.Lock()
	t.gen++
	gen := t.gen
	t.readMu.Unlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.close(s) {
		return
	}
	t.mark(s, planned, gen)
	t.counted()
	t.trimAges()
	t.drop()
}

// Drop lets go of merged events that no read in progress can still need.
func (t *Tail) Drop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.drop()
}

func (t *Tail) drop() {
	if len(t.dropping) == 0 {
		return
	}
	t.readMu.Lock()
	safe := t.gen // merges up to this gen are in every open read's snapshot
	for g := range t.reads {
		safe = min(safe, g)
	}
	t.readMu.Unlock()
	for u := range t.dropping {
		log := t.logs[u]
		n := 0
		for n < len(log) && log[n].merged != 0 && log[n].merged <= safe {
			n++
		}
		t.held -= n
		switch {
		case n == len(log):
			delete(t.logs, u)
			delete(t.dropping, u)
		case n > 0:
			t.logs[u] = slices.Clone(log[n:])
		}
		if n < len(log) && log[n].merged == 0 {
			delete(t.dropping, u)
		}
	}
}

// BeginRead marks the start of a read transaction, before its first
// statement; EndRead, with what BeginRead returned, its end.
func (t *Tail) BeginRead() uint64 {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	t.reads[t.gen]++
	return t.gen
}

// EndRead ends a read begun with BeginRead.
func (t *Tail) EndRead(gen uint64) {
	t.readMu.Lock()
	defer t.readMu.Unlock()
	if t.reads[gen]--; t.reads[gen] <= 0 {
		delete(t.reads, gen)
	}
}

// after returns up to limit of the user's events with ids above after.
func (t *Tail) after(user string, after int64, limit int) []parley.Event {
	t.mu.RLock()
	defer t.mu.RUnlock()
	log := t.logs[user]
	i, _ := slices.BinarySearchFunc(log, after, func(e tailEvent, id int64) int {
		if e.id <= id {
			return -1
		}
		return 1
	})
	log = log[i:]
	log = log[:min(len(log), max(limit, 0))]
	if len(log) == 0 {
		return nil
	}
	out := make([]parley.Event, len(log))
	for k, e := range log {
		out[k] = e.event(user)
	}
	return out
}

// bounds returns the first and last ids the tail holds of the user's log.
func (t *Tail) bounds(user string) (first, last int64, ok bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	log := t.logs[user]
	if len(log) == 0 {
		return 0, 0, false
	}
	return log[0].id, log[len(log)-1].id, true
}

// sameData reports whether a and b are the same slice: a fan-out's events
// share their payload's.
func sameData(a, b json.RawMessage) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
