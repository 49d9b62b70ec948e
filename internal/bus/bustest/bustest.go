// Package bustest is the behaviour every bus and presence board must have,
// as suites that each implementation's tests run.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/bus"
)

// Opener connects a new node named node to the bus under test, closed when
// the test ends. Every call of one test must reach the same bus.
type Opener func(t *testing.T, node string) bus.Bus

// Recorder collects what a node receives.
type Recorder struct {
	mu       sync.Mutex
	msgs     []bus.Message
	resumes  int
	received chan struct{}
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{received: make(chan struct{}, 1)} }

// Receive is the receive function to subscribe with.
func (r *Recorder) Receive(m bus.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.received <- struct{}{}:
	default:
	}
}

// Resumed is the resumed function to subscribe with.
func (r *Recorder) Resumed() {
	r.mu.Lock()
	r.resumes++
	r.mu.Unlock()
	select {
	case r.received <- struct{}{}:
	default:
	}
}

// Resumes returns how often the subscription resumed.
func (r *Recorder) Resumes() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.resumes
}

// Messages returns a copy of what was received.
func (r *Recorder) Messages() []bus.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bus.Message(nil), r.msgs...)
}

// WaitFor waits until cond holds for the messages received, failing the
// test after timeout.
func (r *Recorder) WaitFor(t testing.TB, timeout time.Duration, what string, cond func([]bus.Message) bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond(r.Messages()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (got %d messages)", what, timeout, len(r.Messages()))
		}
		select {
		case <-r.received:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Heads sums up the heads received: the highest id seen per user.
func Heads(msgs []bus.Message) map[string]int64 {
	out := make(map[string]int64)
	for _, m := range msgs {
		for _, h := range m.Heads {
			out[h.UserID] = max(out[h.UserID], h.LastID)
		}
	}
	return out
}

// sender connects two nodes and returns the first, to publish on, and a
// recorder of what the second receives.
func sender(t *testing.T, open Opener) (bus.Bus, *Recorder) {
	a, b := open(t, "node-a"), open(t, "node-b")
	rb := NewRecorder()
	if err := a.Subscribe(func(bus.Message) {}, func() {}); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(rb.Receive, rb.Resumed); err != nil {
		t.Fatal(err)
	}
	return a, rb
}

// Run runs the bus suite.
func Run(t *testing.T, open Opener) {
	t.Run("OthersReceiveSenderDoesNot", func(t *testing.T) {
		a, b, c := open(t, "node-a"), open(t, "node-b"), open(t, "node-c")
		ra, rb, rc := NewRecorder(), NewRecorder(), NewRecorder()
		for _, x := range []struct {
			b bus.Bus
			r *Recorder
		}{{a, ra}, {b, rb}, {c, rc}} {
			if err := x.b.Subscribe(x.r.Receive, x.r.Resumed); err != nil {
				t.Fatalf("subscribe: %v", err)
			}
		}
		m := bus.Message{Heads: []bus.Head{{UserID: "usr_1", LastID: 7}, {UserID: "usr_2", LastID: 3}}}
		if err := a.Publish(context.Background(), m); err != nil {
			t.Fatalf("publish: %v", err)
		}
		for _, r := range []*Recorder{rb, rc} {
			r.WaitFor(t, 5*time.Second, "heads reach the other nodes", func(ms []bus.Message) bool {
				h := Heads(ms)
				return h["usr_1"] == 7 && h["usr_2"] == 3
			})
			if got := r.Messages()[0].Node; got != "node-a" {
				t.Fatalf("message from %q, want node-a", got)
			}
		}
		// A message published after a's shows that a's own was not held
		// back: a must have received nothing.
		if err := b.Publish(context.Background(), bus.Message{Resync: true}); err != nil {
			t.Fatal(err)
		}
		ra.WaitFor(t, 5*time.Second, "b's resync reaches a", func(ms []bus.Message) bool { return len(ms) > 0 })
		for _, m := range ra.Messages() {
			if m.Node == "node-a" {
				t.Fatalf("a received its own message")
			}
		}
	})

	t.Run("EphemeralAndKick", func(t *testing.T) {
		a, rb := sender(t, open)
		eph := &bus.Ephemeral{Type: "typing", Data: []byte(`{"state":"start"}`), UserIDs: []string{"usr_1", "usr_2"}}
		if err := a.Publish(context.Background(), bus.Message{Ephemeral: eph}); err != nil {
			t.Fatal(err)
		}
		if err := a.Publish(context.Background(), bus.Message{Kick: &bus.Kick{UserID: "usr_1", SessionID: "ses_1"}}); err != nil {
			t.Fatal(err)
		}
		rb.WaitFor(t, 5*time.Second, "ephemeral and kick", func(ms []bus.Message) bool { return len(ms) >= 2 })
		ms := rb.Messages()
		e := ms[0].Ephemeral
		if e == nil || e.Type != "typing" || string(e.Data) != `{"state":"start"}` || len(e.UserIDs) != 2 {
			t.Fatalf("ephemeral = %+v", e)
		}
		if k := ms[1].Kick; k == nil || k.UserID != "usr_1" || k.SessionID != "ses_1" {
			t.Fatalf("kick = %+v", k)
		}
	})

	t.Run("EventsArriveWhole", func(t *testing.T) {
		a, rb := sender(t, open)
		want := []bus.Event{
			{UserID: "usr_1", ID: 41, Type: "message.created", Data: []byte(`{"body":"héllo \u2028 <b>"}`), Time: 1764892800123456},
			{UserID: "usr_2", ID: 9, Type: "receipt", Data: []byte(`{"kind":"delivered","up_to_seq":3}`), Time: 1764892800123457},
		}
		// With more heads than one message holds, the events go once,
		// with the first part.
		m := bus.Message{Events: want}
		for i := range bus.MaxHeads + 1 {
			m.Heads = append(m.Heads, bus.Head{UserID: fmt.Sprintf("usr_h%05d", i), LastID: 1})
		}
		if err := a.Publish(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		rb.WaitFor(t, 5*time.Second, "events and heads", func(ms []bus.Message) bool { return len(Heads(ms)) == bus.MaxHeads+1 })
		var got []bus.Event
		for _, msg := range rb.Messages() {
			got = append(got, msg.Events...)
		}
		if len(got) != len(want) {
			t.Fatalf("received %d events, want %d", len(got), len(want))
		}
		for i := range want {
			g, w := got[i], want[i]
			if g.UserID != w.UserID || g.ID != w.ID || g.Type != w.Type || g.Time != w.Time {
				t.Errorf("event %d = %+v, want %+v", i, g, w)
			}
			var gd, wd any
			if json.Unmarshal(g.Data, &gd) != nil || json.Unmarshal(w.Data, &wd) != nil || fmt.Sprint(gd) != fmt.Sprint(wd) {
				t.Errorf("event %d data = %s, want %s", i, g.Data, w.Data)
			}
		}
	})

	t.Run("LargeMessageSplit", func(t *testing.T) {
		a, rb := sender(t, open)
		const users = 3*bus.MaxHeads + 17
		m := bus.Message{}
		for i := range users {
			m.Heads = append(m.Heads, bus.Head{UserID: fmt.Sprintf("usr_%06d", i), LastID: int64(i + 1)})
		}
		if err := a.Publish(context.Background(), m); err != nil {
			t.Fatalf("publish: %v", err)
		}
		rb.WaitFor(t, 10*time.Second, "all heads", func(ms []bus.Message) bool { return len(Heads(ms)) == users })
		for _, msg := range rb.Messages() {
			if len(msg.Heads) > bus.MaxHeads {
				t.Fatalf("a message carried %d heads", len(msg.Heads))
			}
		}
	})
}

// FastTiming is a Counter pace for tests: entries expire after a second.
var FastTiming = bus.Timing{TTL: time.Second, Renew: 300 * time.Millisecond, Flush: 20 * time.Millisecond, Read: 100 * time.Millisecond}

// BoardOpener returns a board with the TTL of FastTiming on the bus under
// test; every call of one test must reach the same board.
type BoardOpener func(t *testing.T, node string) bus.Board

// RunCounter runs the presence-counter suite on boards from open.
func RunCounter(t *testing.T, open BoardOpener) {
	newCounter := func(t *testing.T, node string) *bus.Counter {
		c := bus.NewCounter(open(t, node), node, FastTiming, nil)
		c.Start()
		t.Cleanup(c.Close)
		return c
	}
	eventually := func(t *testing.T, what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("CountsAcrossNodes", func(t *testing.T) {
		a, b := newCounter(t, "node-a"), newCounter(t, "node-b")
		if n := a.Inc("usr_1"); n != 1 {
			t.Fatalf("first stream: count %d", n)
		}
		if a.Online("usr_2") || b.Online("usr_2") {
			t.Fatal("a user without streams is online")
		}
		// Without Sync, the background loops spread the news.
		eventually(t, "b sees a's stream", func() bool { return b.Online("usr_1") })
		if n := b.Inc("usr_1"); n != 2 {
			t.Fatalf("second stream on another node: count %d, want 2", n)
		}
		a.Dec("usr_1")
		eventually(t, "a sees b's stream", func() bool { return a.Online("usr_1") })
		// Sync makes each see the other's latest at once.
		a.Sync()
		b.Sync()
		if n := b.Dec("usr_1"); n != 0 {
			t.Fatalf("last stream closed: count %d, want 0", n)
		}
		b.Sync()
		a.Sync()
		if a.Online("usr_1") || b.Online("usr_1") {
			t.Fatal("user online with no stream left")
		}
	})

	t.Run("CloseRemovesAtOnce", func(t *testing.T) {
		a := bus.NewCounter(open(t, "node-a"), "node-a", FastTiming, nil)
		a.Start()
		b := newCounter(t, "node-b")
		a.Inc("usr_1")
		a.Sync()
		b.Sync()
		if !b.Online("usr_1") {
			t.Fatal("b does not see a's stream after a sync")
		}
		a.Close()
		b.Sync()
		if b.Online("usr_1") {
			t.Fatal("a closed but b still counts its stream")
		}
	})

	t.Run("OnGone", func(t *testing.T) {
		a, b := newCounter(t, "node-a"), newCounter(t, "node-b")
		var mu sync.Mutex
		var gone []string
		a.OnGone(func(u string, _ bool) { mu.Lock(); gone = append(gone, u); mu.Unlock() })
		b.Inc("usr_1")
		b.Inc("usr_2")
		a.Inc("usr_2") // a holds one of usr_2's streams itself
		b.Sync()
		// A board read may lag a write (a NATS watcher), so wait for
		// the view rather than trusting one Sync.
		eventually(t, "a sees b's streams", func() bool { a.Sync(); return a.Online("usr_1") })
		b.Dec("usr_1")
		b.Dec("usr_2")
		b.Sync()
		got := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), gone...) }
		eventually(t, "a is told usr_1 is gone", func() bool { a.Sync(); return len(got()) > 0 })
		a.Sync()
		if g := got(); len(g) != 1 || g[0] != "usr_1" {
			t.Fatalf("gone = %v, want [usr_1] (usr_2 still has a stream on a)", g)
		}
	})

	t.Run("DeadNodesUsersGoToOneHeir", func(t *testing.T) {
		// A node dies with usr_7 and usr_8 on it; usr_8 reconnected to b,
		// which also holds usr_9. The test drives the counters with Sync
		// every few milliseconds (their own loops are slowed to a crawl),
		// so that the live nodes' entries never lapse on a busy machine.
		dead := open(t, "node-dead")
		if err := dead.Put(context.Background(), "node-dead", []byte(`{"usr_7":1,"usr_8":2}`)); err != nil {
			t.Fatal(err)
		}
		type report struct {
			user     string
			orphaned bool
		}
		var mu sync.Mutex
		reports := map[string][]report{}
		slow := bus.Timing{TTL: FastTiming.TTL, Renew: time.Hour, Flush: time.Hour, Read: time.Hour}
		counter := func(name, node string, users ...string) *bus.Counter {
			c := bus.NewCounter(open(t, node), node, slow, nil)
			c.OnGone(func(u string, orphaned bool) {
				mu.Lock()
				reports[name] = append(reports[name], report{u, orphaned})
				mu.Unlock()
			})
			// Counted before the first write, so that every version of
			// the entry the others may read holds them.
			for _, u := range users {
				c.Inc(u)
			}
			c.Start()
			t.Cleanup(c.Close)
			return c
		}
		a, b := counter("a", "node-a"), counter("b", "node-b", "usr_8", "usr_9")
		got := func(name string) []report {
			mu.Lock()
			defer mu.Unlock()
			return append([]report(nil), reports[name]...)
		}
		syncBoth := func() { a.Sync(); b.Sync() }
		eventually(t, "a sees the dead node's and b's streams, b the dead node's", func() bool {
			syncBoth()
			return a.Online("usr_7") && a.Online("usr_9") && b.Online("usr_7")
		})
		eventually(t, "the lease lapses and both are told", func() bool {
			syncBoth()
			return len(got("a")) > 0 && len(got("b")) > 0
		})
		for range 5 {
			syncBoth()
		}
		// a has the smallest id of the live nodes: it speaks for the dead one.
		if r := got("a"); len(r) != 1 || r[0] != (report{"usr_7", true}) {
			t.Errorf("a was told %v, want usr_7 orphaned (usr_8 has a stream on b)", r)
		}
		if r := got("b"); len(r) != 1 || r[0] != (report{"usr_7", false}) {
			t.Errorf("b was told %v, want usr_7 not orphaned: a is the heir", r)
		}
	})

	t.Run("DeadNodeExpires", func(t *testing.T) {
		// A node that dies never removes its entry: it must expire.
		dead := open(t, "node-dead")
		if err := dead.Put(context.Background(), "node-dead", []byte(`{"usr_9":1}`)); err != nil {
			t.Fatal(err)
		}
		b := newCounter(t, "node-b")
		b.Sync()
		if !b.Online("usr_9") {
			t.Fatal("b does not see the node's stream")
		}
		eventually(t, "the dead node's entry expires", func() bool { return !b.Online("usr_9") })
	})
}

// Prefixes gives each test a prefix of its own (channels, subjects, keys,
// buckets) on a bus server that tests share.
type Prefixes struct {
	mu sync.Mutex
	m  map[*testing.T]string
}

// Of returns t's prefix, the same on every call.
func (p *Prefixes) Of(t *testing.T) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[*testing.T]string{}
	}
	if p.m[t] == "" {
		var b [6]byte
		_, _ = rand.Read(b[:])
		p.m[t] = "parleytest" + hex.EncodeToString(b[:])
	}
	return p.m[t]
}
