package chat

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// ReceiptFlushEvery is how often coalesced delivered markers are written. A
// burst of messages reaching a stream within one window becomes one receipt.
const ReceiptFlushEvery = 150 * time.Millisecond

// MarkRead moves the caller's read marker forward to upTo (clamped to the
// newest message) and tells both participants when it moved.
func (s *Service) MarkRead(ctx context.Context, userID, convID string, upTo int64) error {
	if upTo < 0 {
		return parley.Invalid("up_to_seq", "up_to_seq must not be negative")
	}
	return s.store.Update(ctx, func(tx *store.Tx) error {
		mem, err := tx.Member(convID, userID)
		if err != nil {
			return err
		}
		last, err := tx.LastSeq(convID)
		if err != nil {
			return err
		}
		upTo := min(upTo, last)
		moved, err := tx.AdvanceRead(convID, userID, upTo)
		if err != nil || !moved {
			return err
		}
		if s.opts.Webhooks.UnreadAfter > 0 {
			// Reading cancels a pending message.unread and re-arms the
			// next one.
			if err := tx.ClearUnread(convID, userID); err != nil {
				return err
			}
		}
		r := parley.Receipt{ConversationID: convID, UserID: userID, Kind: parley.ReceiptRead, UpToSeq: upTo, At: parley.T(store.Now())}
		return tx.AppendJSON(parley.EventReceipt, r, userID, mem.PeerID)
	})
}

type deliveredKey struct{ conv, user string }

// deliveredQueue holds, per (conversation, recipient), the highest seq seen
// reaching the recipient since the last flush. written remembers the markers
// this node already stored, so that replays after reconnects (which report
// old messages again) cost no write transaction.
type deliveredQueue struct {
	mu      sync.Mutex
	pending map[deliveredKey]int64
	written map[deliveredKey]int64
}

// maxWritten bounds the memory of written markers; past it the cache starts
// over, which only costs a few no-op updates.
const maxWritten = 100_000

// Delivered is the stream server's OnDelivered hook: events were written to
// one of userID's live streams or returned by a poll. It only notes the
// highest message seq per conversation; FlushReceipts writes them. It does
// not block on the store, since it runs on the stream's goroutine.
func (s *Service) Delivered(userID string, events []parley.Event) {
	// Reduce first and note once per conversation, so a flush running
	// meanwhile cannot split one burst into two receipts.
	var top map[deliveredKey]int64
	for i := range events {
		if events[i].Type != parley.EventMessageCreated {
			continue
		}
		conv, seq, sender, ok := messageRef(events[i].Data)
		if !ok || string(sender) == userID || len(conv) == 0 {
			continue // the sender's own devices do not deliver to the sender
		}
		if top == nil {
			top = make(map[deliveredKey]int64, 1)
		}
		k := deliveredKey{string(conv), userID}
		top[k] = max(top[k], seq)
	}
	if len(top) > 0 {
		s.delivered.noteAll(top)
	}
}

func (q *deliveredQueue) noteAll(markers map[deliveredKey]int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for k, seq := range markers {
		if seq > q.pending[k] && seq > q.written[k] {
			q.pending[k] = seq
		}
	}
}

// wrote records markers that are now stored (or already were, higher).
func (q *deliveredQueue) wrote(markers map[deliveredKey]int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.written == nil || len(q.written) > maxWritten {
		q.written = make(map[deliveredKey]int64, len(markers))
	}
	for k, seq := range markers {
		if seq > q.written[k] {
			q.written[k] = seq
		}
	}
}

func (q *deliveredQueue) take() map[deliveredKey]int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 {
		return nil
	}
	p := q.pending
	q.pending = make(map[deliveredKey]int64, len(p))
	return p
}

// Resumed is the stream server's OnResume hook: a client of userID resumed
// from upTo, so it holds every event of its log up to upTo. The next flush
// re-reads the last of those events and notes their deliveries as
// Delivered does (resumeWindow says why). It only notes the position: it
// runs on the stream's opening.
func (s *Service) Resumed(userID string, upTo int64) {
	s.resumes.note(userID, upTo)
}

// resumeWindow is how many events before a resume point a flush re-reads,
// and resumeAge how old they may be.
//
// Delivered markers are noted in memory when events reach a client and
// written by the next flush, up to ReceiptFlushEvery later; a node that
// dies in between takes the notes with it although the deliveries
// happened. The client then resumes elsewhere (or on the restarted node)
// from the last id it has, which proves those deliveries: re-reading the
// events just before the resume point restores the lost markers.
//
// Deliveries lost that way are the last ones before the client's position,
// made within the node's last 150 ms, of events that were almost always
// new then: the window covers them unless the user received more than
// resumeWindow events in that time, and resumeAge covers clients that come
// back within two minutes of the node's death. The age bound also keeps
// the backlog a client skipped out of it: a client with no position starts
// at the head and loads what came before over REST, so a later resume from
// there proves that the app has those messages, not that a stream carried
// them; only the recent ones among them are marked delivered this way.
//
// Recording each delivery durably instead would cost a write on the hot
// path of every message; this costs one small read per resume, in the
// background (about 30 µs of CPU on SQLite, measured over 2,000 users with
// 20 merged events each), and no write unless a marker moves or this node
// has not stored it yet (a no-op update, once per conversation).
const (
	resumeWindow = 64
	resumeAge    = 2 * time.Minute
)

// maxResumesPerFlush bounds the log reads of one flush, about 1,700 a
// second: the rest wait for the next flushes, so that a reconnect storm's
// 10,000 resumes cost a few percent of a core over six seconds rather than
// competing with the storm itself. maxResumesPending bounds the memory of
// those waiting; past it new resume points are not checked.
const (
	maxResumesPerFlush = 250
	maxResumesPending  = 100_000
)

// resumeQueue holds, per user, the highest resume point not yet checked,
// and remembers the point checked last so that a client polling this node
// (a resume per poll) has only the events since its last poll re-read.
type resumeQueue struct {
	mu      sync.Mutex
	pending map[string]int64
	checked map[string]int64
}

func (q *resumeQueue) note(userID string, upTo int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if upTo <= q.checked[userID] || upTo <= q.pending[userID] {
		return
	}
	if q.pending == nil {
		q.pending = make(map[string]int64)
	}
	if _, ok := q.pending[userID]; !ok && len(q.pending) >= maxResumesPending {
		return
	}
	q.pending[userID] = upTo
}

// take returns up to n resume points with, for each, the position already
// checked, and records them as checked.
func (q *resumeQueue) take(n int) map[string][2]int64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.pending) == 0 {
		return nil
	}
	if q.checked == nil || len(q.checked) > maxWritten {
		q.checked = make(map[string]int64)
	}
	out := make(map[string][2]int64, min(n, len(q.pending)))
	for u, upTo := range q.pending {
		if len(out) == n {
			break
		}
		out[u] = [2]int64{q.checked[u], upTo}
		q.checked[u] = upTo
		delete(q.pending, u)
	}
	return out
}

// checkResumes notes the deliveries that resume points prove (Resumed).
func (s *Service) checkResumes(ctx context.Context) {
	points := s.resumes.take(maxResumesPerFlush)
	if len(points) == 0 {
		return
	}
	ranges := make([]store.LogRange, 0, len(points))
	for u, p := range points {
		if from := max(p[0], p[1]-resumeWindow, 0); from < p[1] {
			ranges = append(ranges, store.LogRange{UserID: u, After: from, UpTo: p[1]})
		}
	}
	// One read for all (on PostgreSQL one statement; a storm's resumes are
	// thousands). A user whose log is corrupt is left out: their streams
	// report it, and the others' checks go on.
	var read map[string][]parley.Event
	err := s.store.Read(ctx, func(tx *store.Tx) (err error) {
		read, err = tx.EventsIn(ranges)
		return err
	})
	if err != nil {
		s.log.Warn("read events before resume points", "err", err, "users", len(points))
		return
	}
	recent := time.Now().Add(-resumeAge)
	for u, evs := range read {
		evs = slices.DeleteFunc(evs, func(e parley.Event) bool { return e.Time.Before(recent) })
		if len(evs) > 0 {
			s.Delivered(u, evs)
		}
	}
}

// FlushReceipts writes the delivered markers noted since the last flush, in
// one transaction, with a receipt event to both participants for each marker
// that moved. Markers only move forward, so a late or repeated flush (from
// this node or another) changes nothing. On failure the markers are kept for
// the next flush.
func (s *Service) FlushReceipts(ctx context.Context) {
	s.checkResumes(ctx)
	pending := s.delivered.take()
	if len(pending) == 0 {
		return
	}
	keys := make([]deliveredKey, 0, len(pending))
	for k := range pending {
		keys = append(keys, k)
	}
	// A fixed order keeps two nodes' flushes from locking rows in opposite
	// orders on PostgreSQL.
	slices.SortFunc(keys, func(a, b deliveredKey) int {
		return cmp.Or(cmp.Compare(a.conv, b.conv), cmp.Compare(a.user, b.user))
	})
	markers := make([]store.Delivery, len(keys))
	for i, k := range keys {
		markers[i] = store.Delivery{ConversationID: k.conv, UserID: k.user, UpTo: pending[k]}
	}
	err := s.store.Update(ctx, func(tx *store.Tx) error {
		at := parley.T(store.Now())
		peers, err := tx.AdvanceDeliveredAll(markers)
		if err != nil {
			return err
		}
		var events []parley.NewEvent
		for i, k := range keys {
			peer := peers[i]
			if peer == "" {
				continue
			}
			r := parley.Receipt{ConversationID: k.conv, UserID: k.user, Kind: parley.ReceiptDelivered, UpToSeq: pending[k], At: at}
			data, err := json.Marshal(r)
			if err != nil {
				return err
			}
			events = append(events, parley.NewEvent{UserID: k.user, Type: parley.EventReceipt, Data: data},
				parley.NewEvent{UserID: peer, Type: parley.EventReceipt, Data: data})
		}
		// One append for the whole flush takes every log head it needs in
		// user order (one statement on PostgreSQL), instead of two per
		// receipt in conversation order: flushes on several nodes then
		// rarely deadlock.
		_, err = tx.AppendLive(events...) // an erased participant has no log
		return err
	})
	if err != nil {
		s.log.Warn("flush delivered receipts", "err", err, "markers", len(keys))
		s.delivered.noteAll(pending)
		return
	}
	s.delivered.wrote(pending)
}
