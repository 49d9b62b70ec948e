package sqlite_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/sqlite"
)

// hookLog records every call of the commit hook, in call order.
type hookLog struct {
	mu    sync.Mutex
	calls [][]parley.Event
	n     atomic.Int64
}

func (h *hookLog) hook(evs []parley.Event) {
	h.mu.Lock()
	h.calls = append(h.calls, slices.Clone(evs))
	h.mu.Unlock()
	h.n.Add(1)
}

func (h *hookLog) snapshot() [][]parley.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.calls)
}

func mustOpenDB(tb testing.TB, hook store.CommitHook) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "parley.db"), hook)
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func mustCreateUsers(tb testing.TB, db *sqlite.DB, n int) []string {
	tb.Helper()
	var ids []string
	err := db.Update(context.Background(), func(tx *store.Tx) error {
		for i := range n {
			u := &parley.User{ID: parley.NewID("u"), Username: parley.Ptr(fmt.Sprintf("user%d", i)), DisplayName: "u", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: store.Now()}
			if err := tx.CreateUser(u); err != nil {
				return err
			}
			ids = append(ids, u.ID)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return ids
}

func readLog(tb testing.TB, db *sqlite.DB, user string) []parley.Event {
	tb.Helper()
	var evs []parley.Event
	err := db.View(context.Background(), func(tx *store.Tx) (err error) {
		evs, err = tx.EventsAfter(user, 0, 1<<20)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return evs
}

func marker(e parley.Event) string {
	var d struct{ M string }
	_ = json.Unmarshal(e.Data, &d)
	return d.M
}

func ev(user, m string) parley.NewEvent {
	return parley.NewEvent{UserID: user, Type: "app.test", Data: json.RawMessage(`{"m":"` + m + `"}`)}
}

var errBoom = errors.New("boom")

// TestGroupCommitConcurrentAppends runs many concurrent Updates, each
// appending to one or several users (the same user more than once, too),
// some failing and some panicking after their appends. Every user's log must
// be 1..N with no gap, hold exactly the events of the Updates that
// succeeded at the ids their Append returned, and the commit hook must have
// received the same events, each user's in id order across all its calls.
func TestGroupCommitConcurrentAppends(t *testing.T) {
	hooks := &hookLog{}
	db := mustOpenDB(t, hooks.hook)
	users := mustCreateUsers(t, db, 6)
	ctx := context.Background()

	const workers, perWorker = 12, 30
	type written struct {
		user, marker string
		id           int64
	}
	var (
		mu         sync.Mutex
		committed  []written
		rolledBack = map[string]bool{}
		updates    int
		wg         sync.WaitGroup
		errs       = make(chan error, workers)
	)
	for w := range workers {
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		wg.Go(func() {
			for i := range perWorker {
				var evs []parley.NewEvent
				for k := range 1 + rng.IntN(4) {
					evs = append(evs, ev(users[rng.IntN(len(users))], fmt.Sprintf("w%d-i%d-k%d", w, i, k)))
				}
				fail, panics := i%7 == 3, i%11 == 5
				var stored []parley.Event
				err := db.Update(ctx, func(tx *store.Tx) (err error) {
					stored, err = tx.Append(evs...)
					switch {
					case err != nil:
						return err
					case fail:
						return errBoom
					case panics:
						panic("boom")
					}
					return nil
				})
				mu.Lock()
				switch {
				case fail || panics:
					if err == nil {
						errs <- fmt.Errorf("update w%d-i%d should have failed", w, i)
					}
					for _, e := range evs {
						rolledBack[marker(parley.Event{Data: e.Data})] = true
					}
				case err != nil:
					errs <- err
				default:
					updates++
					for _, e := range stored {
						committed = append(committed, written{e.UserID, marker(e), e.ID})
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	want := map[string]map[int64]string{} // user → id → marker
	for _, w := range committed {
		if want[w.user] == nil {
			want[w.user] = map[int64]string{}
		}
		if prev, dup := want[w.user][w.id]; dup {
			t.Fatalf("id %d of %s was returned twice (%s and %s)", w.id, w.user, prev, w.marker)
		}
		want[w.user][w.id] = w.marker
	}
	hooked := map[string][]parley.Event{}
	calls := hooks.snapshot()
	for _, call := range calls {
		for _, e := range call {
			hooked[e.UserID] = append(hooked[e.UserID], e)
		}
	}
	total := 0
	for _, u := range users {
		log := readLog(t, db, u)
		total += len(log)
		if len(log) != len(want[u]) {
			t.Fatalf("%s: log has %d events, committed updates appended %d", u, len(log), len(want[u]))
		}
		for i, e := range log {
			if e.ID != int64(i+1) {
				t.Fatalf("%s: log ids are not contiguous: position %d has id %d", u, i, e.ID)
			}
			if m := marker(e); m != want[u][e.ID] || rolledBack[m] {
				t.Fatalf("%s: id %d holds %q, Append returned %q for it", u, e.ID, m, want[u][e.ID])
			}
		}
		h := hooked[u]
		if len(h) != len(log) {
			t.Fatalf("%s: hook got %d events, log has %d", u, len(h), len(log))
		}
		for i, e := range h {
			if e.ID != int64(i+1) || marker(e) != marker(log[i]) {
				t.Fatalf("%s: hook's %dth event is id %d %q, want id %d %q (in id order)", u, i+1, e.ID, marker(e), i+1, marker(log[i]))
			}
		}
	}
	t.Logf("%d committed updates, %d events, %d rolled back markers, %d commits with events", updates, total, len(rolledBack), len(calls))
}

// TestGroupCommitRollsBackOneRequest holds the writer inside a transaction
// while four more queue up, so that they share the next commit: A appends,
// B appends then fails, P appends then panics, C appends. A and C commit
// together; B's and P's events and their log-head moves are undone alone,
// so C's ids follow A's with no gap.
func TestGroupCommitRollsBackOneRequest(t *testing.T) {
	for attempt := 1; ; attempt++ {
		if rollbackInOneBatch(t) {
			return
		}
		if attempt == 5 {
			t.Fatalf("could not get the four requests into one commit in %d attempts", attempt)
		}
		t.Logf("attempt %d: the requests were not committed together; again", attempt)
	}
}

// rollbackInOneBatch runs the scenario once and checks it; it reports false,
// without failing, when the requests did not end up in one commit.
func rollbackInOneBatch(t *testing.T) bool {
	hooks := &hookLog{}
	db := mustOpenDB(t, hooks.hook)
	users := mustCreateUsers(t, db, 2)
	x, y := users[0], users[1]
	ctx := context.Background()

	release := make(chan struct{})
	running := make(chan struct{})
	blockerDone := make(chan error, 1)
	go func() {
		blockerDone <- db.Update(ctx, func(tx *store.Tx) error {
			close(running)
			<-release
			_, err := tx.Append(ev(x, "blocker"))
			return err
		})
	}()
	<-running // the writer is now inside the blocker's transaction

	type result struct {
		name      string
		err       error
		sawHooks  int64
		appended  []parley.Event
		sequenceN int64
	}
	var seqNo atomic.Int64
	results := make(chan result, 4)
	start := func(name string, evs []parley.NewEvent, end func() error) {
		go func() {
			r := result{name: name}
			r.err = db.Update(ctx, func(tx *store.Tx) (err error) {
				r.sequenceN = seqNo.Add(1)
				r.sawHooks = hooks.n.Load()
				if r.appended, err = tx.Append(evs...); err != nil {
					return err
				}
				return end()
			})
			results <- r
		}()
		time.Sleep(20 * time.Millisecond) // keep the queue in this order
	}
	ok := func() error { return nil }
	start("A", []parley.NewEvent{ev(x, "A1"), ev(y, "A2")}, ok)
	start("B", []parley.NewEvent{ev(x, "B1"), ev(y, "B2"), ev(x, "B3")}, func() error { return errBoom })
	start("P", []parley.NewEvent{ev(x, "P1")}, func() error { panic("boom") })
	start("C", []parley.NewEvent{ev(y, "C1"), ev(x, "C2")}, ok)
	time.Sleep(50 * time.Millisecond)
	close(release)
	if err := <-blockerDone; err != nil {
		t.Fatal(err)
	}
	got := map[string]result{}
	for range 4 {
		r := <-results
		got[r.name] = r
	}

	// Same commit: all four ran after the blocker's commit (one hook call)
	// and before any other, in queue order. (The batch runs twice: first
	// without savepoints, then, since B fails, with one per request; the
	// numbers are those of the last run.)
	prev := int64(0)
	for _, name := range []string{"A", "B", "P", "C"} {
		if got[name].sawHooks != 1 || got[name].sequenceN <= prev {
			return false
		}
		prev = got[name].sequenceN
	}
	if got["A"].err != nil || got["C"].err != nil {
		t.Fatalf("A: %v, C: %v; want both committed", got["A"].err, got["C"].err)
	}
	if !errors.Is(got["B"].err, errBoom) {
		t.Fatalf("B: %v, want its own error", got["B"].err)
	}
	if got["P"].err == nil || !strings.Contains(got["P"].err.Error(), "panic") {
		t.Fatalf("P: %v, want an error for its panic", got["P"].err)
	}
	// Inside the transaction B and P were given the ids that C then got.
	if b := got["B"].appended; len(b) != 3 || b[0].ID != 3 || b[2].ID != 4 {
		t.Fatalf("B appended %+v", b)
	}
	if c := got["C"].appended; len(c) != 2 || c[0].UserID != y || c[0].ID != 2 || c[1].UserID != x || c[1].ID != 3 {
		t.Fatalf("C appended %+v, want y:2 and x:3", c)
	}
	for user, want := range map[string][]string{x: {"blocker", "A1", "C2"}, y: {"A2", "C1"}} {
		var markers []string
		for i, e := range readLog(t, db, user) {
			if e.ID != int64(i+1) {
				t.Fatalf("log ids not contiguous: %v", e)
			}
			markers = append(markers, marker(e))
		}
		if !slices.Equal(markers, want) {
			t.Fatalf("log holds %v, want %v", markers, want)
		}
	}
	calls := hooks.snapshot()
	if len(calls) != 2 {
		t.Fatalf("hook called %d times, want 2 (the blocker's commit, then A and C's)", len(calls))
	}
	// One call with A's events, then C's, each at its committed id.
	wantIDs := map[string]int64{"A1": 2, "A2": 1, "C1": 2, "C2": 3}
	second := calls[1]
	if len(second) != 4 {
		t.Fatalf("second commit's hook call got %v, want A's and C's 4 events", second)
	}
	for i, e := range second {
		m := marker(e)
		if wantIDs[m] != e.ID || m[0] != "AACC"[i] {
			t.Fatalf("second commit's hook call got %s:%d at %d; want A's events, then C's", m, e.ID, i)
		}
	}
	return true
}

// writeTimes records what a sqlite.WriteTimer hears.
type writeTimes struct {
	mu             sync.Mutex
	waits, commits []time.Duration
}

func (w *writeTimes) Waited(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.waits = append(w.waits, d)
}

func (w *writeTimes) Committed(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.commits = append(w.commits, d)
}

// TestWriteTimes: the timer hears each transaction's wait for the writer
// and each commit's length. Three transactions queued behind a commit held
// for 60 ms wait at least that long and share the next commit; the held
// one waited for nothing and its commit lasted the 60 ms.
func TestWriteTimes(t *testing.T) {
	db := mustOpenDB(t, nil)
	var w writeTimes
	db.TimeWrites(&w)
	const hold = 60 * time.Millisecond
	held := time.Now()
	release := sqlite.HoldWriter(db)
	errs := make(chan error, 3)
	for i := range 3 {
		go func() { errs <- db.Update(context.Background(), func(*store.Tx) error { return nil }) }()
		for sqlite.Queued(db) != i+1 {
			time.Sleep(time.Millisecond)
		}
	}
	time.Sleep(hold - time.Since(held))
	release()
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The writer tells the timer after it has answered the callers, so the
	// last commit may not be heard yet when the Updates return.
	heard := func() (int, int) {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.waits), len(w.commits)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if waits, commits := heard(); waits >= 4 && commits >= 2 {
			break
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.waits) != 4 || len(w.commits) != 2 {
		t.Fatalf("heard %d waits and %d commits, want 4 and 2", len(w.waits), len(w.commits))
	}
	if w.waits[0] > hold/2 || w.commits[0] < hold {
		t.Errorf("the held commit: wait %v (want little), length %v (want ≥ %v)", w.waits[0], w.commits[0], hold)
	}
	for _, d := range w.waits[1:] {
		if d < hold/2 {
			t.Errorf("a transaction queued behind the held commit waited %v, want about %v", d, hold)
		}
	}
}
