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
	var m struct {
		ConversationID string `json:"conversation_id"`
		Seq            int64  `json:"seq"`
		SenderID       string `json:"sender_id"`
	}
	// Reduce first and note once per conversation, so a flush running
	// meanwhile cannot split one burst into two receipts.
	var top map[deliveredKey]int64
	for i := range events {
		if events[i].Type != parley.EventMessageCreated {
			continue
		}
		m.ConversationID, m.Seq, m.SenderID = "", 0, ""
		if json.Unmarshal(events[i].Data, &m) != nil || m.SenderID == userID || m.ConversationID == "" {
			continue // the sender's own devices do not deliver to the sender
		}
		if top == nil {
			top = make(map[deliveredKey]int64, 1)
		}
		k := deliveredKey{m.ConversationID, userID}
		top[k] = max(top[k], m.Seq)
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

// FlushReceipts writes the delivered markers noted since the last flush, in
// one transaction, with a receipt event to both participants for each marker
// that moved. Markers only move forward, so a late or repeated flush (from
// this node or another) changes nothing. On failure the markers are kept for
// the next flush.
func (s *Service) FlushReceipts(ctx context.Context) {
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
	err := s.store.Update(ctx, func(tx *store.Tx) error {
		at := parley.T(store.Now())
		var events []parley.NewEvent
		for _, k := range keys {
			peer, err := tx.AdvanceDelivered(k.conv, k.user, pending[k])
			if err != nil {
				return err
			}
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
		// a few statements, in user order, instead of two per receipt in
		// conversation order: flushes on several nodes then rarely deadlock.
		_, err := tx.AppendLive(events...) // an erased participant has no log
		return err
	})
	if err != nil {
		s.log.Warn("flush delivered receipts", "err", err, "markers", len(keys))
		s.delivered.noteAll(pending)
		return
	}
	s.delivered.wrote(pending)
}
