package bus

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"
)

// Board is a shared table with one entry per node that expires unless its
// node writes it again: what a dead node wrote disappears by itself. Redis
// keys with a TTL and a NATS key-value bucket with a max age are boards.
type Board interface {
	// Put writes this node's entry and renews its expiry.
	Put(ctx context.Context, node string, value []byte) error
	// All returns the entries that have not expired, by node.
	All(ctx context.Context) (map[string][]byte, error)
	// Remove deletes the node's entry at once (clean shutdown).
	Remove(ctx context.Context, node string) error
}

// Timing is the pace of a Counter. A node's entry lives TTL unless renewed
// (the board is made with that TTL); the node renews it every Renew, writes
// a change within Flush, and reads the other nodes' entries every Read. A
// dead node's streams stop counting after TTL.
type Timing struct {
	TTL, Renew, Flush, Read time.Duration
}

// DefaultTiming keeps a dead node's users online for at most 15 s, about
// the presence grace period, for a write every 5 s and a read every 2 s.
var DefaultTiming = LeaseTiming(15 * time.Second)

// LeaseTiming is the pace for a lease of the given length (the TTL): the
// entry is renewed three times per lease, so that two lost writes in a row
// do not let it lapse, and read every sixth of it, at most every 2 s.
func LeaseTiming(lease time.Duration) Timing {
	renew := lease / 3
	return Timing{
		TTL:   lease,
		Renew: renew,
		Flush: min(500*time.Millisecond, renew/2),
		Read:  min(2*time.Second, max(lease/6, 50*time.Millisecond)),
	}
}

// Counter counts a user's open streams over every node (presence.Counter).
// This node's counts are exact and kept in memory; the other nodes' come
// from the Board, read every Timing.Read, so they lag by a few seconds. That
// lag is well inside the presence grace period, which is when a user's
// count matters: a user who moves from one node to another is seen on the
// new node before the old node decides they went offline.
//
// Inc, Dec and Online never wait for the network: the presence tracker calls
// them under its lock, and a slow or absent bus must not stall streams.
type Counter struct {
	node   string
	board  Board
	timing Timing
	log    *slog.Logger

	mu     sync.Mutex
	local  map[string]int
	remote map[string]int // streams on other nodes, as last read
	// entries are the other nodes' counts as last read, by node: what a
	// node that disappears from the board leaves behind.
	entries map[string]map[string]int

	failing bool // the board failed last time; logged once per outage
	onGone  func(userID string, orphaned bool)

	// io orders board writes and reads: Sync runs beside the background
	// loop, and an older snapshot put (or read) after a newer one would
	// leave the board (or this node's view) stale until the next tick.
	io sync.Mutex

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

// NewCounter returns a counter that shares this node's counts on board
// under the node's id, at the pace of timing (whose TTL must be the
// board's). Start runs its background work.
func NewCounter(board Board, node string, timing Timing, logger *slog.Logger) *Counter {
	if logger == nil {
		logger = slog.Default()
	}
	return &Counter{
		node: node, board: board, timing: timing, log: logger,
		local: make(map[string]int), remote: make(map[string]int),
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// Inc counts a stream opened on this node and returns the user's count
// over all nodes.
func (c *Counter) Inc(userID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.local[userID]++
	if c.local[userID] == 1 {
		c.changed()
	}
	return c.local[userID] + c.remote[userID]
}

// Dec counts a stream closed on this node and returns the user's count over
// all nodes.
func (c *Counter) Dec(userID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.local[userID] - 1
	if n <= 0 {
		delete(c.local, userID)
		c.changed()
		n = 0
	} else {
		c.local[userID] = n
	}
	return n + c.remote[userID]
}

// Online reports whether the user has a stream on any node.
func (c *Counter) Online(userID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.local[userID] > 0 || c.remote[userID] > 0
}

// changed asks for the local counts to be written soon. Only a user
// appearing or disappearing matters to the others, so counts moving above
// zero do not. Called with c.mu held.
func (c *Counter) changed() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// OnGone sets fn to be told of users whose streams on other nodes are gone
// while this node holds none either. A node whose last stream of a user
// closed while another node still seemed to hold one (counts lag by a few
// seconds) learns here that the user is now offline everywhere.
//
// orphaned is set, on one node only, for users whose count went with a node
// that left the board: it stopped renewing its entry (it died, or lost the
// bus for longer than the lease) or removed it (shut down). That node can no
// longer announce them offline, so this one, the heir, is to. The heir is
// the live node with the smallest id; nodes that read the board at the same
// moment agree on it. fn runs on the counter's goroutine, without the
// counter's lock.
func (c *Counter) OnGone(fn func(userID string, orphaned bool)) {
	c.mu.Lock()
	c.onGone = fn
	c.mu.Unlock()
}

// Start writes this node's entry and reads the others' until Close.
func (c *Counter) Start() {
	go c.run()
}

func (c *Counter) run() {
	defer close(c.done)
	renew := time.NewTicker(c.timing.Renew)
	defer renew.Stop()
	read := time.NewTicker(c.timing.Read)
	defer read.Stop()
	c.read()
	c.write()
	var lastWrite time.Time
	for {
		select {
		case <-c.stop:
			return
		case <-renew.C:
			c.write()
			lastWrite = time.Now()
		case <-read.C:
			c.read()
		case <-c.wake:
			// Coalesce a burst of opens and closes into one write.
			if wait := c.timing.Flush - time.Since(lastWrite); wait > 0 {
				select {
				case <-c.stop:
					return
				case <-time.After(wait):
				}
			}
			c.write()
			lastWrite = time.Now()
		}
	}
}

func (c *Counter) write() {
	c.io.Lock()
	defer c.io.Unlock()
	c.mu.Lock()
	b, err := json.Marshal(c.local)
	c.mu.Unlock()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// On failure the next renewal writes it again.
	c.report(c.board.Put(ctx, c.node, b))
}

func (c *Counter) read() {
	c.io.Lock()
	defer c.io.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	all, err := c.board.All(ctx)
	if c.report(err); err != nil {
		// Keep the last view: better stale than everyone offline because
		// the bus blinked.
		return
	}
	remote := make(map[string]int)
	entries := make(map[string]map[string]int, len(all))
	heir := true // no live node has a smaller id than this one
	for node, b := range all {
		if node == c.node {
			continue
		}
		if node < c.node {
			heir = false
		}
		var counts map[string]int
		if err := json.Unmarshal(b, &counts); err != nil {
			c.log.Warn("presence: bad entry on board", "node", node, "err", err)
			continue
		}
		entries[node] = counts
		for u, n := range counts {
			remote[u] += n
		}
	}
	c.mu.Lock()
	type goneUser struct {
		id       string
		orphaned bool
	}
	var gone []goneUser
	if c.onGone != nil {
		// Users counted by nodes that left the board since the last read.
		var left map[string]bool
		for node, counts := range c.entries {
			if _, ok := all[node]; ok || !heir {
				continue
			}
			if left == nil {
				left = make(map[string]bool)
			}
			for u, n := range counts {
				if n > 0 {
					left[u] = true
				}
			}
		}
		for u, n := range c.remote {
			if n > 0 && remote[u] == 0 && c.local[u] == 0 {
				gone = append(gone, goneUser{u, left[u]})
			}
		}
	}
	c.remote, c.entries = remote, entries
	onGone := c.onGone
	c.mu.Unlock()
	for _, u := range gone {
		onGone(u.id, u.orphaned)
	}
}

// report logs the first failure of an outage and the recovery.
func (c *Counter) report(err error) {
	c.mu.Lock()
	was := c.failing
	c.failing = err != nil
	c.mu.Unlock()
	switch {
	case err != nil && !was:
		c.log.Warn("presence: cannot share stream counts with other nodes", "err", err)
	case err == nil && was:
		c.log.Info("presence: sharing stream counts again")
	}
}

// Sync writes this node's counts and reads the others' now, rather than at
// the next tick; tests use it to avoid waiting.
func (c *Counter) Sync() { c.write(); c.read() }

// Close stops the background work and removes this node's entry, so that
// its users stop counting at once rather than after the TTL.
func (c *Counter) Close() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	<-c.done
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.board.Remove(ctx, c.node)
}
