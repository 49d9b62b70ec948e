// Package stream delivers events to connected users: the Hub that fans live
// events out to open streams, the SSE endpoint that replays a user's log and
// then goes live with no gap and no duplicate, and the long-poll fallback.
package stream

import (
	"cmp"
	"hash/maphash"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley"
)

// Frame is an event encoded once for the wire and shared by every stream of
// its user.
type Frame struct {
	Event parley.Event
	wire  []byte
	// poke marks a notification without the event itself ("the user's log
	// has grown to Event.ID"): streams read the log to catch up.
	poke bool
}

// NewFrame encodes e. An event without an id is ephemeral and gets no id: line,
// so it never moves a browser's resume point.
func NewFrame(e parley.Event) *Frame {
	b := make([]byte, 0, len(e.Data)+len(e.Type)+32)
	if e.ID > 0 {
		b = append(b, "id: "...)
		b = strconv.AppendInt(b, e.ID, 10)
		b = append(b, '\n')
	}
	b = append(b, "event: "...)
	b = append(b, e.Type...)
	b = append(b, "\ndata: "...)
	b = append(b, e.Data...)
	b = append(b, "\n\n"...)
	return &Frame{Event: e, wire: b}
}

// Wire returns the encoded SSE event.
func (f *Frame) Wire() []byte { return f.wire }

// Close reasons, as counted in parley_stream_closes_total.
const (
	ReasonClient   = "client"
	ReasonSlow     = "slow"
	ReasonExpired  = "session_expired"
	ReasonShutdown = "shutdown"
	ReasonError    = "write_error"
)

// Sink receives a stream's live frames. The hub calls it with the user's
// shard locked, so neither method may block or call back into the hub.
type Sink interface {
	// Offer queues fs, frames of the sink's user in order, or reports false
	// when the stream is too far behind. A commit's frames for one user
	// come in one call, so that the stream can send them in one write.
	Offer(fs []*Frame) bool
	// Kick asks the stream to end, after sending farewell if not nil.
	Kick(reason string, farewell *Frame)
}

// Sub is one open stream (or one waiting poll) of a user.
type Sub struct {
	UserID    string
	SessionID string
	sink      Sink
	waiter    bool
}

// chanSink is the sink of a stream served by its own goroutine, and of
// poll waiters: a bounded channel plus a kick signal.
type chanSink struct {
	ch       chan *Frame
	kicked   chan struct{}
	once     sync.Once
	reason   string
	farewell *Frame // sent before closing, e.g. session.expired
}

func newChanSink(size int) *chanSink {
	return &chanSink{ch: make(chan *Frame, size), kicked: make(chan struct{})}
}

func (c *chanSink) Offer(fs []*Frame) bool {
	for _, f := range fs {
		select {
		case c.ch <- f:
		default:
			return false
		}
	}
	return true
}

func (c *chanSink) Kick(reason string, farewell *Frame) {
	c.once.Do(func() {
		c.reason, c.farewell = reason, farewell
		close(c.kicked)
	})
}

// Hooks lets other parts observe streams without the hub knowing them
// (presence counting, delivered receipts). Methods must not block.
type Hooks interface {
	StreamOpened(userID string)
	StreamClosed(userID string)
}

// Relay carries what the hub delivers to other nodes as well: ephemeral
// events and session kicks, whose streams may sit anywhere. Durable events
// need no relay: other nodes learn of them from the log. Methods must not
// block.
type Relay interface {
	Ephemeral(typ string, data []byte, userIDs []string)
	KickSession(userID, sessionID string)
}

// Limits are the hub's admission bounds.
type Limits struct {
	PerUser int // streams per user; over it Subscribe fails with 429
	Total   int // streams per process; over it Subscribe fails with 503
	Buffer  int // frames queued per stream before it is cut as too slow
}

const shardCount = 64

// Hub routes live events to the subs of their users. It is sharded by user
// so publishes for different users rarely contend.
type Hub struct {
	limits Limits
	hooks  Hooks
	seed   maphash.Seed
	shards [shardCount]shard
	open   atomic.Int64
	closed atomic.Bool
	relay  Relay
}

type shard struct {
	mu    sync.Mutex
	users map[string][]*Sub
}

// NewHub returns an empty hub. hooks may be nil.
func NewHub(limits Limits, hooks Hooks) *Hub {
	h := &Hub{limits: limits, hooks: hooks, seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].users = make(map[string][]*Sub)
	}
	return h
}

// SetRelay makes Ephemeral and KickSession reach other nodes through r too.
// It must be called before the hub is used.
func (h *Hub) SetRelay(r Relay) { h.relay = r }

func (h *Hub) shard(userID string) *shard {
	return &h.shards[maphash.String(h.seed, userID)%shardCount]
}

// ErrTooManyStreams and ErrFull are the admission failures of Subscribe.
var (
	ErrTooManyStreams = &parley.Error{Code: parley.ERateLimited, Message: "too many open streams for this user", RetryAfter: 5 * time.Second}
	ErrFull           = &parley.Error{Code: parley.EUnavailable, Message: "server is at its stream capacity", RetryAfter: 5 * time.Second}
	ErrShuttingDown   = &parley.Error{Code: parley.EUnavailable, Message: "server is shutting down", RetryAfter: time.Second}
)

// Subscribe registers a stream of the user whose live frames go to sink. It
// must be followed by Unsubscribe. Registering before reading the log is what
// closes the gap between replay and live delivery.
func (h *Hub) Subscribe(userID, sessionID string, sink Sink) (*Sub, error) {
	return h.add(userID, sessionID, sink, false)
}

// Wait registers a poll waiter: wake is woken by the user's next durable
// event and done closes when the hub shuts down. It does not count as a
// stream.
func (h *Hub) Wait(userID string) (s *Sub, wake <-chan *Frame, done <-chan struct{}) {
	c := newChanSink(1)
	s, err := h.add(userID, "", c, true)
	if err != nil {
		c.Kick(ReasonShutdown, nil)
	}
	return s, c.ch, c.kicked
}

func (h *Hub) add(userID, sessionID string, sink Sink, waiter bool) (*Sub, error) {
	if h.closed.Load() {
		return nil, ErrShuttingDown
	}
	s := &Sub{UserID: userID, SessionID: sessionID, sink: sink, waiter: waiter}
	sh := h.shard(userID)
	sh.mu.Lock()
	if !waiter {
		if h.limits.Total > 0 && h.open.Load() >= int64(h.limits.Total) {
			sh.mu.Unlock()
			return nil, ErrFull
		}
		n := 0
		for _, o := range sh.users[userID] {
			if !o.waiter {
				n++
			}
		}
		if h.limits.PerUser > 0 && n >= h.limits.PerUser {
			sh.mu.Unlock()
			return nil, ErrTooManyStreams
		}
		h.open.Add(1)
	}
	sh.users[userID] = append(sh.users[userID], s)
	sh.mu.Unlock()
	if !waiter && h.hooks != nil {
		h.hooks.StreamOpened(userID)
	}
	return s, nil
}

// Unsubscribe removes s. It is safe to call more than once, and with nil.
func (h *Hub) Unsubscribe(s *Sub) {
	if s == nil {
		return
	}
	sh := h.shard(s.UserID)
	sh.mu.Lock()
	subs := sh.users[s.UserID]
	found := false
	for i, o := range subs {
		if o == s {
			subs[i] = subs[len(subs)-1]
			subs[len(subs)-1] = nil
			subs = subs[:len(subs)-1]
			found = true
			break
		}
	}
	if len(subs) == 0 {
		delete(sh.users, s.UserID)
	} else {
		sh.users[s.UserID] = subs
	}
	sh.mu.Unlock()
	if found && !s.waiter {
		h.open.Add(-1)
		if h.hooks != nil {
			h.hooks.StreamClosed(s.UserID)
		}
	}
}

// Publish hands each event to the open streams of its user. A stream whose
// queue is full is kicked as too slow instead of being waited for, so one slow
// reader never delays the others; it resumes from its last id.
//
// events are a commit's, in log order per user. A group commit holds several
// publishes; each user's share goes to its streams in one offer, so that a
// stream writes it at once rather than once per publish.
func (h *Hub) Publish(events []parley.Event) {
	frames := make([]*Frame, len(events))
	for i := range events {
		frames[i] = NewFrame(events[i])
	}
	frames = mergeRuns(frames)
	for i := 0; i < len(frames); {
		j := i + 1
		for j < len(frames) && frames[j].Event.UserID == frames[i].Event.UserID {
			j++
		}
		h.deliver(frames[i:j:j])
		i = j
	}
}

func byUser(a, b *Frame) int {
	return cmp.Or(strings.Compare(a.Event.UserID, b.Event.UserID), cmp.Compare(a.Event.ID, b.Event.ID))
}

// mergeRuns puts a commit's frames in (user, id) order. Each request's events
// come in that order already (store.Tx.Append), so a commit is a few sorted
// runs, and merging them pairwise costs a pass per doubling of their number:
// sorting a group commit of three 10,000-user publishes was 5 % of a
// fan-out's CPU.
func mergeRuns(fs []*Frame) []*Frame {
	var bounds []int // where each run starts
	for i := range fs {
		if i == 0 || byUser(fs[i-1], fs[i]) > 0 {
			bounds = append(bounds, i)
		}
	}
	if len(bounds) <= 1 {
		return fs
	}
	bounds = append(bounds, len(fs))
	src, dst := fs, make([]*Frame, len(fs))
	for len(bounds) > 2 {
		next := append(make([]int, 0, len(bounds)/2+2), 0)
		for r := 0; r+1 < len(bounds); r += 2 {
			lo, mid, hi := bounds[r], bounds[r+1], bounds[len(bounds)-1]
			if r+2 < len(bounds) {
				hi = bounds[r+2]
			}
			mergeInto(dst[lo:hi], src[lo:mid], src[mid:hi])
			next = append(next, hi)
		}
		bounds = next
		src, dst = dst, src
	}
	return src
}

// mergeInto merges the sorted a and b into dst, which is as long as both.
func mergeInto(dst, a, b []*Frame) {
	i, j := 0, 0
	for k := range dst {
		if j == len(b) || (i < len(a) && byUser(a[i], b[j]) < 0) {
			dst[k] = a[i]
			i++
		} else {
			dst[k] = b[j]
			j++
		}
	}
}

// Ephemeral sends an event without an id to every open stream of the users,
// on this node and, through the relay, on the others.
func (h *Hub) Ephemeral(typ string, data []byte, userIDs ...string) {
	h.EphemeralLocal(typ, data, userIDs...)
	if h.relay != nil {
		h.relay.Ephemeral(typ, data, userIDs)
	}
}

// EphemeralLocal is Ephemeral for this node's streams only: for events that
// another node relayed.
func (h *Hub) EphemeralLocal(typ string, data []byte, userIDs ...string) {
	for _, u := range userIDs {
		h.deliver([]*Frame{NewFrame(parley.Event{UserID: u, Type: typ, Data: data})})
	}
}

// deliver offers fs, frames of one user, to that user's subs.
func (h *Hub) deliver(fs []*Frame) {
	u := fs[0].Event.UserID
	sh := h.shard(u)
	sh.mu.Lock()
	for _, s := range sh.users[u] {
		if s.waiter && fs[0].Event.ID == 0 {
			continue // polls only return durable events (an ephemeral frame comes alone)
		}
		// A waiter that is full already has its wake-up queued.
		if !s.sink.Offer(fs) && !s.waiter {
			s.sink.Kick(ReasonSlow, nil)
		}
	}
	sh.mu.Unlock()
}

// Notify tells the user's streams and waiting polls that the log has grown
// to lastID, for events committed elsewhere (another node) whose contents
// this node has not seen. Streams already past lastID ignore it.
func (h *Hub) Notify(userID string, lastID int64) {
	h.deliver([]*Frame{{Event: parley.Event{UserID: userID, ID: lastID}, poke: true}})
}

// HasStreams reports whether the user has an open stream on this node.
func (h *Hub) HasStreams(userID string) bool {
	sh := h.shard(userID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, s := range sh.users[userID] {
		if !s.waiter {
			return true
		}
	}
	return false
}

// PokeAll has every open stream and waiting poll of this node read its log,
// for when notifications of events committed elsewhere may have been lost
// (the bus was down). The users are collected first so that no shard stays
// locked while thousands of streams are poked.
func (h *Hub) PokeAll() {
	var users []string
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for u := range sh.users {
			users = append(users, u)
		}
		sh.mu.Unlock()
	}
	for _, u := range users {
		// No stream is past this id, so each reads up to its log's head.
		h.Notify(u, math.MaxInt64)
	}
}

// KickSession ends the user's streams opened with the session, each after an
// event: session.expired; on this node and, through the relay, on the others.
func (h *Hub) KickSession(userID, sessionID string) {
	h.KickSessionLocal(userID, sessionID)
	if h.relay != nil {
		h.relay.KickSession(userID, sessionID)
	}
}

// KickSessionLocal is KickSession for this node's streams only.
func (h *Hub) KickSessionLocal(userID, sessionID string) {
	f := NewFrame(parley.Event{UserID: userID, Type: parley.EventSessionExpired, Data: []byte(`{"reason":"session_ended"}`)})
	sh := h.shard(userID)
	sh.mu.Lock()
	for _, s := range sh.users[userID] {
		if s.SessionID == sessionID {
			s.sink.Kick(ReasonExpired, f)
		}
	}
	sh.mu.Unlock()
}

// Open is the number of open streams.
func (h *Hub) Open() int { return int(h.open.Load()) }

// Close refuses new streams and kicks every open one, telling clients to
// reconnect (to another node, or to this one after a restart).
func (h *Hub) Close() {
	h.closed.Store(true)
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		for _, subs := range sh.users {
			for _, s := range subs {
				s.sink.Kick(ReasonShutdown, nil)
			}
		}
		sh.mu.Unlock()
	}
}
