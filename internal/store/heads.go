package store

import "maps"

// HeadCache is the log heads that a back end with a single writer (SQLite)
// keeps in memory, so that an append writes no head row: in a 10,000-user
// fan-out, updating the head rows cost more than inserting the events.
//
// A user's head is then the larger of its event_heads.last_id and the
// newest id in its log. Pruning brings last_id up to date before it deletes
// (Tx.PruneEvents), so an emptied log still knows its head. Back ends with
// several writers (PostgreSQL) keep moving last_id under a row lock instead.
//
// Only the writer uses it, one transaction at a time; it is not safe for
// concurrent use. A head moved by a request counts once the request
// succeeds (EndRequest) and the transaction commits (EndTransaction).
type HeadCache struct {
	committed map[string]int64 // heads as committed, for users seen since start
	batch     map[string]int64 // moved by the open transaction's requests that succeeded
	req       map[string]int64 // moved by the running request
}

// maxCachedHeads bounds the committed heads kept: past it the cache starts
// over, and heads are read again as users are next appended to.
const maxCachedHeads = 1 << 20

// NewHeadCache returns an empty cache.
func NewHeadCache() *HeadCache {
	return &HeadCache{committed: map[string]int64{}, batch: map[string]int64{}, req: map[string]int64{}}
}

func (h *HeadCache) get(user string) (int64, bool) {
	if id, ok := h.req[user]; ok {
		return id, true
	}
	if id, ok := h.batch[user]; ok {
		return id, true
	}
	id, ok := h.committed[user]
	return id, ok
}

// EndRequest ends the running request: its heads join the transaction's if
// it succeeded, and are dropped if it was rolled back.
func (h *HeadCache) EndRequest(ok bool) {
	if ok {
		maps.Copy(h.batch, h.req)
	}
	clear(h.req)
}

// EndTransaction ends the open transaction: its heads become the committed
// ones if it committed, and are dropped if it was rolled back.
func (h *HeadCache) EndTransaction(committed bool) {
	if committed {
		if len(h.committed)+len(h.batch) > maxCachedHeads {
			clear(h.committed)
		}
		maps.Copy(h.committed, h.batch)
	}
	clear(h.batch)
	clear(h.req)
}
