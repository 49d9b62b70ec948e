package store

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
	// One entry per user holding all three layers, so that a fan-out pays
	// one map lookup per user rather than one per layer.
	heads    map[string]*cachedHead
	reqMoved []*cachedHead // moved by the running request
	txMoved  []*cachedHead // moved by the open transaction's requests that succeeded
}

type cachedHead struct {
	committed int64 // as committed
	tx, req   int64 // as moved by the open transaction and the running request
	inTx      bool  // tx is set
	inReq     bool  // req is set
}

// maxCachedHeads bounds the heads kept: past it the cache starts over, and
// heads are read again as users are next appended to.
const maxCachedHeads = 1 << 20

// NewHeadCache returns an empty cache.
func NewHeadCache() *HeadCache {
	return &HeadCache{heads: map[string]*cachedHead{}}
}

// lookup returns the user's entry, nil if the cache does not know the user.
func (h *HeadCache) lookup(user string) *cachedHead { return h.heads[user] }

// load records a head as committed, for a user the cache did not know.
func (h *HeadCache) load(user string, id int64) *cachedHead {
	c := &cachedHead{committed: id}
	h.heads[user] = c
	return c
}

// head is the entry's current head: the running request's, else the open
// transaction's, else the committed one.
func (c *cachedHead) head() int64 {
	switch {
	case c.inReq:
		return c.req
	case c.inTx:
		return c.tx
	}
	return c.committed
}

// move sets the head as the running request moved it.
func (h *HeadCache) move(c *cachedHead, id int64) {
	if !c.inReq {
		c.inReq = true
		h.reqMoved = append(h.reqMoved, c)
	}
	c.req = id
}

// EndRequest ends the running request: its heads join the transaction's if
// it succeeded, and are dropped if it was rolled back.
func (h *HeadCache) EndRequest(ok bool) {
	for _, c := range h.reqMoved {
		if ok {
			if !c.inTx {
				c.inTx = true
				h.txMoved = append(h.txMoved, c)
			}
			c.tx = c.req
		}
		c.inReq = false
	}
	clear(h.reqMoved)
	h.reqMoved = h.reqMoved[:0]
}

// EndTransaction ends the open transaction: its heads become the committed
// ones if it committed, and are dropped if it was rolled back.
func (h *HeadCache) EndTransaction(committed bool) {
	h.EndRequest(false)
	for _, c := range h.txMoved {
		if committed {
			c.committed = c.tx
		}
		c.inTx = false
	}
	clear(h.txMoved)
	h.txMoved = h.txMoved[:0]
	if len(h.heads) > maxCachedHeads {
		clear(h.heads)
	}
}

// Created records the heads of users whose creation has committed: their
// logs are empty, so the first event to each needs no read of its head (a
// backend that registers users and at once sends them events made that
// read for nearly every event: 4 % of the CPU of private events to 5,000
// new users).
func (h *HeadCache) Created(users []string) {
	for _, u := range users {
		if h.heads[u] == nil {
			h.load(u, 0)
		}
	}
}

// forget drops the user's entry: their log head row was deleted (an
// erasure), and an append must find no head rather than a cached one.
func (h *HeadCache) forget(user string) { delete(h.heads, user) }
