// Package presence tracks who is online: a user is online while they hold at
// least one event stream or polled within the last PollWindow. Going offline
// is announced only after a grace period, so a page reload or a network
// blip that reconnects quickly shows no flicker; last_seen is then stored.
//
// Presence events go only to users who share a conversation with the user,
// as ephemeral events (never in the log). Stream counting sits behind
// Counter so that a multi-node deployment can count streams across nodes
// (Redis, NATS) while the timers and events stay here.
package presence

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// PollWindow is how long a poll keeps its user online (SPEC §4).
const PollWindow = 30 * time.Second

// Counter counts a user's open streams. Inc and Dec return the count after
// the change; Online reports whether the count is above zero. With several
// nodes the count is the sum over all of them.
type Counter interface {
	Inc(userID string) int
	Dec(userID string) int
	Online(userID string) bool
}

// Local is the in-process Counter of a single node.
type Local struct {
	mu sync.Mutex
	n  map[string]int
}

// NewLocal returns an empty Local counter.
func NewLocal() *Local { return &Local{n: make(map[string]int)} }

// Inc implements Counter.
func (l *Local) Inc(userID string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n[userID]++
	return l.n[userID]
}

// Dec implements Counter.
func (l *Local) Dec(userID string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.n[userID] - 1
	if n <= 0 {
		delete(l.n, userID)
		return 0
	}
	l.n[userID] = n
	return n
}

// Online implements Counter.
func (l *Local) Online(userID string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[userID] > 0
}

// Notifier sends ephemeral events to users' open streams.
type Notifier interface {
	Ephemeral(typ string, data []byte, userIDs ...string)
}

// Tracker turns stream and poll activity into presence. It implements the
// hub's stream.Hooks and httpapi.Presence.
type Tracker struct {
	counter Counter
	grace   time.Duration
	log     *slog.Logger

	mu    sync.Mutex
	users map[string]*state
	st    store.Store
	send  Notifier
	jobs  []job
	wake  chan struct{}
	stop  chan struct{}
	done  chan struct{}
}

// state is what the tracker keeps of a user it has seen. Users offline with
// their last_seen stored are forgotten.
type state struct {
	online   bool      // online was announced and offline not yet
	closedAt time.Time // when the last stream closed
	polledAt time.Time // when the user last polled
	lastSeen time.Time // last activity, for last_seen
	timer    *time.Timer
	gen      int // invalidates timers that fired after being replaced
}

// job is one announcement; jobs run in order on one goroutine so that a
// user's online and offline events cannot overtake each other.
type job struct {
	userID string
	online bool
	at     time.Time
}

// New returns a tracker that announces offline grace after a user's last
// stream closed. Start must be called before streams open.
func New(counter Counter, grace time.Duration, logger *slog.Logger) *Tracker {
	if logger == nil {
		logger = slog.Default()
	}
	return &Tracker{
		counter: counter, grace: grace, log: logger,
		users: make(map[string]*state),
		wake:  make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// Start gives the tracker the store (contacts, last_seen) and the notifier,
// and starts its announcer. They come after New because the hub that calls
// the tracker is built before the store.
func (t *Tracker) Start(st store.Store, send Notifier) {
	t.st, t.send = st, send
	go t.announcer()
}

func (t *Tracker) get(userID string) *state {
	s := t.users[userID]
	if s == nil {
		s = &state{}
		t.users[userID] = s
	}
	return s
}

// StreamOpened implements stream.Hooks. A stream opening within the grace
// period of the last one closing cancels the pending offline.
func (t *Tracker) StreamOpened(userID string) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	// Counting under t.mu keeps a concurrent open and close of one user's
	// streams from deciding on stale counts.
	n := t.counter.Inc(userID)
	s := t.get(userID)
	s.lastSeen = now
	t.cancel(s)
	if s.online {
		return
	}
	s.online = true
	// With a shared counter, a count above one means a stream on another
	// node, whose tracker has announced this user already.
	if n == 1 {
		t.enqueue(job{userID: userID, online: true, at: now})
	}
}

// StreamClosed implements stream.Hooks.
func (t *Tracker) StreamClosed(userID string) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.counter.Dec(userID)
	s := t.get(userID)
	s.lastSeen, s.closedAt = now, now
	if n == 0 {
		t.schedule(userID, s, now)
	}
}

// Polled is the stream server's OnPoll hook: a poll keeps its user online for
// PollWindow. A poll made while the user holds a stream does not: they are
// online by the stream, and such a poll is a client checking its stream or
// reading history (the web app does both), not a client that polls; counting
// it would keep everyone who closes the app online for PollWindow instead of
// the grace period.
func (t *Tracker) Polled(userID string) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.get(userID)
	s.lastSeen = now
	if t.counter.Online(userID) {
		return
	}
	s.polledAt = now
	if !s.online {
		s.online = true
		if !t.counter.Online(userID) {
			t.enqueue(job{userID: userID, online: true, at: now})
		}
	}
	if !t.counter.Online(userID) {
		t.schedule(userID, s, now)
	}
}

// deadline is when the user stops counting as online: grace after the last
// stream closed, and PollWindow after the last poll.
func (t *Tracker) deadline(s *state) time.Time {
	d := s.closedAt.Add(t.grace)
	if p := s.polledAt.Add(PollWindow); p.After(d) {
		d = p
	}
	return d
}

// schedule (re)arms the user's offline check. Called with t.mu held.
func (t *Tracker) schedule(userID string, s *state, now time.Time) {
	t.cancel(s)
	gen := s.gen
	s.timer = time.AfterFunc(t.deadline(s).Sub(now), func() { t.check(userID, gen) })
}

func (t *Tracker) cancel(s *state) {
	s.gen++
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// check runs when a user's deadline passes: unless a stream opened or a poll
// came meanwhile, the user goes offline.
func (t *Tracker) check(userID string, gen int) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.users[userID]
	if s == nil || s.gen != gen {
		return // replaced by a newer timer or cancelled
	}
	s.timer = nil
	if t.counter.Online(userID) {
		return
	}
	if d := t.deadline(s); now.Before(d) {
		t.schedule(userID, s, now)
		return
	}
	if s.online {
		s.online = false
		t.enqueue(job{userID: userID, online: false, at: s.lastSeen})
	}
}

// Recheck is for a shared Counter to call when a user's streams on other
// nodes are gone. A close here that saw another node's stream scheduled no
// offline; if this node announced the user online and holds no stream or
// recent poll of theirs, the offline is scheduled now (at once if the
// grace period is over).
//
// orphaned says the streams went with a node that left (its lease lapsed,
// or it shut down) and that this node is to speak for it: the user is
// taken on as if their last stream had closed here now, and goes offline
// after the grace period unless a stream opens somewhere meanwhile. Without
// that nobody would: the node that announced them online is gone.
func (t *Tracker) Recheck(userID string, orphaned bool) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counter.Online(userID) {
		return
	}
	s := t.users[userID]
	if orphaned && (s == nil || !s.online) {
		s = t.get(userID)
		s.online = true
		s.closedAt, s.lastSeen = now, now
		t.schedule(userID, s, now)
		return
	}
	if s == nil || !s.online || s.timer != nil {
		return
	}
	t.schedule(userID, s, now)
}

// Online reports whether the user counts as online, including during the
// grace period.
func (t *Tracker) Online(userID string) bool {
	if t.counter.Online(userID) {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.users[userID]
	return s != nil && s.online
}

// Decorate implements httpapi.Presence: online users show last_seen as now,
// offline users the later of the stored value and what this node saw.
func (t *Tracker) Decorate(users ...*parley.User) {
	now := parley.T(time.Now())
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, u := range users {
		if u == nil {
			continue
		}
		s := t.users[u.ID]
		u.Online = t.counter.Online(u.ID) || (s != nil && s.online)
		switch {
		case u.Online:
			v := now
			u.LastSeen = &v
		case s != nil && !s.lastSeen.IsZero() && (u.LastSeen == nil || s.lastSeen.After(u.LastSeen.Time)):
			u.LastSeen = parley.TP(s.lastSeen)
		}
	}
}

func (t *Tracker) enqueue(j job) {
	t.jobs = append(t.jobs, j)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// announcer stores last_seen and sends presence events, one job at a time.
func (t *Tracker) announcer() {
	defer close(t.done)
	for {
		select {
		case <-t.stop:
			return
		case <-t.wake:
		}
		for {
			t.mu.Lock()
			if len(t.jobs) == 0 {
				t.mu.Unlock()
				break
			}
			j := t.jobs[0]
			t.jobs = t.jobs[1:]
			t.mu.Unlock()
			t.announce(j)
		}
	}
}

func (t *Tracker) announce(j job) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var contacts []string
	err := t.st.View(ctx, func(tx *store.Tx) (err error) {
		contacts, err = tx.Contacts(j.userID)
		return err
	})
	if err != nil {
		t.log.Warn("presence contacts", "user_id", j.userID, "err", err)
	}
	if !j.online {
		if err := t.st.Update(ctx, func(tx *store.Tx) error { return tx.SetLastSeen(j.userID, j.at) }); err != nil {
			t.log.Warn("store last_seen", "user_id", j.userID, "err", err)
		} else {
			t.forget(j.userID)
		}
	}
	if len(contacts) == 0 || t.send == nil {
		return
	}
	b, _ := json.Marshal(struct {
		UserID   string       `json:"user_id"`
		Online   bool         `json:"online"`
		LastSeen *parley.Time `json:"last_seen"`
	}{j.userID, j.online, parley.TP(j.at)})
	t.send.Ephemeral(parley.EventPresence, b, contacts...)
}

// forget drops a user who is offline with last_seen stored, so the map only
// holds users who are online or about to go offline.
func (t *Tracker) forget(userID string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.users[userID]; s != nil && !s.online && s.timer == nil {
		delete(t.users, userID)
	}
}

// Close stops the timers and the announcer and stores last_seen for every
// user still online here, as the node going away is the last that saw them.
// Call it after the streams are closed and before the store is.
func (t *Tracker) Close(ctx context.Context) {
	t.mu.Lock()
	seen := make(map[string]time.Time)
	now := time.Now()
	for id, s := range t.users {
		t.cancel(s)
		switch {
		case s.online:
			seen[id] = now
		case !s.lastSeen.IsZero():
			seen[id] = s.lastSeen // its offline announcement may not have run
		}
	}
	t.jobs = nil
	t.mu.Unlock()
	select {
	case <-t.stop:
		return
	default:
		close(t.stop)
	}
	if t.st == nil {
		return
	}
	<-t.done
	if len(seen) == 0 {
		return
	}
	err := t.st.Update(ctx, func(tx *store.Tx) error {
		for id, at := range seen {
			if err := tx.SetLastSeen(id, at); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.log.Warn("store last_seen at shutdown", "err", err)
	}
}

// Connected reports whether the user holds a stream on any node or polled
// this node within PollWindow: whether an event reaches them now. Unlike
// Online it does not count the grace period after the last stream closed,
// so a notifier asking it does not miss someone who just closed the tab.
func (t *Tracker) Connected(userID string) bool {
	if t.counter.Online(userID) {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.users[userID]
	return s != nil && time.Since(s.polledAt) < PollWindow
}
