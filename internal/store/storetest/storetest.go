// Package storetest is the behaviour every store.Store must have, as one
// suite that the SQLite and PostgreSQL back ends both run:
//
//	func TestStore(t *testing.T) { storetest.Run(t, openForTest) }
//
// It checks what the rest of Parley relies on: a user's ids are 1, 2, 3…
// with no gap under concurrent writers, a failed transaction leaves no
// event, the commit hook sees events only once they are committed, and the
// log's bounds and pruning behave as documented.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// Opener opens a new, empty store for one test, closed when the test ends.
// hook may be nil.
type Opener func(t *testing.T, hook store.CommitHook) store.Store

// Run runs the suite, each case on a store of its own.
func Run(t *testing.T, open Opener) {
	cases := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"ContiguousIDsUnderConcurrentAppends", testContiguous},
		{"LogBounds", testLogBounds},
		{"LogHeads", testLogHeads},
		{"EventsAfter", testEventsAfter},
		{"PruneEvents", testPrune},
		{"CreateUserConflict", testCreateUserConflict},
		{"RollbackLeavesNoEvents", testRollback},
		{"AppendToUnknownUser", testUnknownUser},
		{"HookAfterCommitOnly", testHook},
		{"HookOrderPerUser", testHookOrder},
		{"RemoveLog", testRemoveLog},
		{"SessionWithUser", testSessionWithUser},
		{"EventsIn", testEventsIn},
		{"AdvanceDeliveredAll", testAdvanceDeliveredAll},
		{"ScrubWebhooksOfOldRows", testScrubOldWebhooks},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, open) })
	}
}

var ctx = context.Background()

func mustUser(t *testing.T, st store.Store, name string) string {
	t.Helper()
	u := &parley.User{ID: parley.NewID("usr"), Username: &name, DisplayName: name, Role: parley.RoleClient,
		PasswordHash: []byte("x"), CreatedAt: store.Now()}
	if err := st.Update(ctx, func(tx *store.Tx) error { return tx.CreateUser(u) }); err != nil {
		t.Fatalf("create user %s: %v", name, err)
	}
	return u.ID
}

func appendN(t *testing.T, st store.Store, user string, n int) []parley.Event {
	t.Helper()
	var out []parley.Event
	err := st.Update(ctx, func(tx *store.Tx) error {
		evs := make([]parley.NewEvent, n)
		for i := range evs {
			evs[i] = parley.NewEvent{UserID: user, Type: "app.test", Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
		}
		var err error
		out, err = tx.Append(evs...)
		return err
	})
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	return out
}

func bounds(t *testing.T, st store.Store, user string) (first, last int64) {
	t.Helper()
	err := st.View(ctx, func(tx *store.Tx) (err error) {
		first, last, err = tx.LogBounds(user)
		return err
	})
	if err != nil {
		t.Fatalf("log bounds: %v", err)
	}
	return first, last
}

func after(t *testing.T, st store.Store, user string, id int64, limit int) []parley.Event {
	t.Helper()
	var evs []parley.Event
	err := st.View(ctx, func(tx *store.Tx) (err error) {
		evs, err = tx.EventsAfter(user, id, limit)
		return err
	})
	if err != nil {
		t.Fatalf("events after: %v", err)
	}
	return evs
}

func ids(evs []parley.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func seq(from, to int64) []int64 {
	var out []int64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// testContiguous appends to two shared users from many goroutines, each
// transaction touching them in a different order, and checks that every id
// was handed out exactly once, with no gap, both in the log and to the hook.
func testContiguous(t *testing.T, open Opener) {
	var mu sync.Mutex
	hooked := map[string][]int64{}
	st := open(t, func(evs []parley.Event) {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			hooked[e.UserID] = append(hooked[e.UserID], e.ID)
		}
	})
	a, b := mustUser(t, st, "alice"), mustUser(t, st, "bob")

	const workers, perWorker = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				// Alternate the order of users within a transaction: Append
				// must lock the heads in one order whatever it is given.
				users := []string{a, b, a}
				if (w+i)%2 == 1 {
					users = []string{b, a, b}
				}
				err := st.Update(ctx, func(tx *store.Tx) error {
					evs := make([]parley.NewEvent, len(users))
					for k, u := range users {
						evs[k] = parley.NewEvent{UserID: u, Type: "app.load", Data: json.RawMessage(`{}`)}
					}
					_, err := tx.Append(evs...)
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent append: %v", err)
	}
	// Each transaction wrote three events: two to one user, one to the other.
	total := int64(workers * perWorker * 3)
	var sum int64
	for _, u := range []string{a, b} {
		_, last := bounds(t, st, u)
		sum += last
		got := ids(after(t, st, u, 0, 10000))
		if !slices.Equal(got, seq(1, last)) {
			t.Fatalf("user log ids are not 1..%d: %v", last, got)
		}
		mu.Lock()
		h := slices.Clone(hooked[u])
		mu.Unlock()
		slices.Sort(h)
		if !slices.Equal(h, seq(1, last)) {
			t.Fatalf("hook saw ids %v, want each of 1..%d once", h, last)
		}
	}
	if sum != total {
		t.Fatalf("logs hold %d events, want %d", sum, total)
	}
}

func testLogBounds(t *testing.T, open Opener) {
	st := open(t, nil)
	u := mustUser(t, st, "carol")
	if first, last := bounds(t, st, u); first != 1 || last != 0 {
		t.Fatalf("empty log bounds = (%d, %d), want (1, 0)", first, last)
	}
	appendN(t, st, u, 3)
	if first, last := bounds(t, st, u); first != 1 || last != 3 {
		t.Fatalf("bounds = (%d, %d), want (1, 3)", first, last)
	}
	err := st.View(ctx, func(tx *store.Tx) error {
		_, _, err := tx.LogBounds("usr_missing")
		return err
	})
	if parley.ErrorCode(err) != parley.ENotFound {
		t.Fatalf("bounds of unknown user: %v, want not_found", err)
	}
}

func testLogHeads(t *testing.T, open Opener) {
	st := open(t, nil)
	// More users than one statement takes, so the chunks are joined.
	users := make([]string, 0, 1201)
	for i := range 1200 {
		users = append(users, mustUser(t, st, fmt.Sprintf("heads%d", i)))
	}
	appendN(t, st, users[0], 2)
	appendN(t, st, users[1199], 5)
	var heads map[string]int64
	err := st.View(ctx, func(tx *store.Tx) (err error) {
		heads, err = tx.LogHeads(append(users, "usr_missing", "bad\x00key"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(heads) != len(users) || heads[users[0]] != 2 || heads[users[1199]] != 5 || heads[users[600]] != 0 {
		t.Fatalf("%d heads, first %d, last %d, middle %d; want %d heads 2, 5, 0",
			len(heads), heads[users[0]], heads[users[1199]], heads[users[600]], len(users))
	}
	if _, ok := heads["usr_missing"]; ok {
		t.Fatal("a head for an unknown user")
	}
}

func testEventsAfter(t *testing.T, open Opener) {
	st := open(t, nil)
	u, other := mustUser(t, st, "dave"), mustUser(t, st, "erin")
	written := appendN(t, st, u, 7)
	appendN(t, st, other, 2)
	if got := ids(written); !slices.Equal(got, seq(1, 7)) {
		t.Fatalf("Append returned ids %v", got)
	}
	if got := ids(after(t, st, u, 0, 100)); !slices.Equal(got, seq(1, 7)) {
		t.Fatalf("after 0: %v", got)
	}
	if got := ids(after(t, st, u, 4, 100)); !slices.Equal(got, seq(5, 7)) {
		t.Fatalf("after 4: %v", got)
	}
	if got := ids(after(t, st, u, 2, 3)); !slices.Equal(got, seq(3, 5)) {
		t.Fatalf("after 2 limit 3: %v", got)
	}
	if got := after(t, st, u, 7, 100); len(got) != 0 {
		t.Fatalf("after head: %v", got)
	}
	e := after(t, st, u, 5, 1)[0]
	if e.UserID != u || e.Type != "app.test" || string(e.Data) != `{"i":5}` || e.Time.IsZero() {
		t.Fatalf("event 6 = %+v", e)
	}
}

func testPrune(t *testing.T, open Opener) {
	st := open(t, nil)
	u, other := mustUser(t, st, "frank"), mustUser(t, st, "grace")
	appendN(t, st, u, 5)
	appendN(t, st, other, 1)
	prune := func(before time.Time, keep int) int64 {
		var n int64
		if err := st.Update(ctx, func(tx *store.Tx) (err error) {
			n, err = tx.PruneEvents(before, keep)
			return err
		}); err != nil {
			t.Fatalf("prune: %v", err)
		}
		return n
	}
	// Events newer than the age bound stay, however many there are.
	if n := prune(time.Now().Add(-time.Hour), 0); n != 0 {
		t.Fatalf("pruned %d recent events", n)
	}
	// Old events go, except each user's newest keep.
	if n := prune(time.Now().Add(time.Hour), 2); n != 3 {
		t.Fatalf("pruned %d events, want 3 (user of 5 keeping 2; user of 1 keeps it)", n)
	}
	if first, last := bounds(t, st, u); first != 4 || last != 5 {
		t.Fatalf("bounds after prune = (%d, %d), want (4, 5)", first, last)
	}
	if first, last := bounds(t, st, other); first != 1 || last != 1 {
		t.Fatalf("other user's bounds = (%d, %d), want (1, 1)", first, last)
	}
	// Ids go on from the head, not from what is left.
	if got := ids(appendN(t, st, u, 1)); !slices.Equal(got, []int64{6}) {
		t.Fatalf("id after prune = %v, want [6]", got)
	}
	// An emptied log keeps its head: first = last+1.
	prune(time.Now().Add(time.Hour), 0)
	if first, last := bounds(t, st, u); first != 7 || last != 6 {
		t.Fatalf("bounds of emptied log = (%d, %d), want (7, 6)", first, last)
	}
}

func testCreateUserConflict(t *testing.T, open Opener) {
	st := open(t, nil)
	id := mustUser(t, st, "heidi")
	dup := &parley.User{ID: parley.NewID("usr"), Username: parley.Ptr("heidi"), DisplayName: "other", Role: parley.RoleProfessional,
		PasswordHash: []byte("y"), CreatedAt: store.Now()}
	err := st.Update(ctx, func(tx *store.Tx) error { return tx.CreateUser(dup) })
	if parley.ErrorCode(err) != parley.EConflict {
		t.Fatalf("duplicate username: %v, want conflict", err)
	}
	err = st.View(ctx, func(tx *store.Tx) error {
		u, err := tx.UserByUsername("heidi")
		if err != nil {
			return err
		}
		if u.ID != id || u.DisplayName != "heidi" {
			return fmt.Errorf("user is %+v, want the first one", u)
		}
		_, err = tx.UserByID(dup.ID)
		if parley.ErrorCode(err) != parley.ENotFound {
			return fmt.Errorf("the refused user exists: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testRollback(t *testing.T, open Opener) {
	var mu sync.Mutex
	var hooked []parley.Event
	st := open(t, func(evs []parley.Event) { mu.Lock(); hooked = append(hooked, evs...); mu.Unlock() })
	u := mustUser(t, st, "ivan")
	boom := errors.New("boom")
	err := st.Update(ctx, func(tx *store.Tx) error {
		if _, err := tx.Append(parley.NewEvent{UserID: u, Type: "app.lost", Data: json.RawMessage(`{}`)}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want fn's error", err)
	}
	if first, last := bounds(t, st, u); first != 1 || last != 0 {
		t.Fatalf("bounds after rollback = (%d, %d), want (1, 0)", first, last)
	}
	if evs := after(t, st, u, 0, 10); len(evs) != 0 {
		t.Fatalf("rolled back events are in the log: %v", evs)
	}
	// The next id is still 1: the rolled back append reserved nothing.
	if got := ids(appendN(t, st, u, 1)); !slices.Equal(got, []int64{1}) {
		t.Fatalf("id after rollback = %v, want [1]", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(hooked) != 1 || hooked[0].Type != "app.test" {
		t.Fatalf("hook saw %v, want only the committed event", hooked)
	}
}

func testUnknownUser(t *testing.T, open Opener) {
	st := open(t, nil)
	u := mustUser(t, st, "judy")
	err := st.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.Append(
			parley.NewEvent{UserID: u, Type: "app.x", Data: json.RawMessage(`{}`)},
			parley.NewEvent{UserID: "usr_missing", Type: "app.x", Data: json.RawMessage(`{}`)},
		)
		return err
	})
	if parley.ErrorCode(err) != parley.ENotFound {
		t.Fatalf("append to unknown user: %v, want not_found", err)
	}
	if _, last := bounds(t, st, u); last != 0 {
		t.Fatalf("the known user's head moved to %d", last)
	}
}

// testHook checks that the hook runs after the commit: a read from the hook
// already sees the events, and the hook has not run when fn returns.
func testHook(t *testing.T, open Opener) {
	var st store.Store
	var mu sync.Mutex
	var seen [][]int64
	var hookErr error
	st = open(t, func(evs []parley.Event) {
		// A new read transaction: it can only see what is committed.
		got := make([]int64, 0, len(evs))
		err := st.View(ctx, func(tx *store.Tx) error {
			for _, e := range evs {
				es, err := tx.EventsAfter(e.UserID, e.ID-1, 1)
				if err != nil {
					return err
				}
				if len(es) == 1 && es[0].ID == e.ID {
					got = append(got, e.ID)
				}
			}
			return nil
		})
		mu.Lock()
		defer mu.Unlock()
		if err != nil && hookErr == nil {
			hookErr = err
		}
		seen = append(seen, got)
	})
	u := mustUser(t, st, "kim")
	var hookedBeforeReturn int
	err := st.Update(ctx, func(tx *store.Tx) error {
		if _, err := tx.Append(
			parley.NewEvent{UserID: u, Type: "app.a", Data: json.RawMessage(`{}`)},
			parley.NewEvent{UserID: u, Type: "app.b", Data: json.RawMessage(`{}`)},
		); err != nil {
			return err
		}
		mu.Lock()
		hookedBeforeReturn = len(seen)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Updates that append nothing do not call the hook.
	if err := st.Update(ctx, func(tx *store.Tx) error { return tx.SetLastSeen(u, time.Now()) }); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hookErr != nil {
		t.Fatalf("read from hook: %v", hookErr)
	}
	if hookedBeforeReturn != 0 {
		t.Fatalf("hook ran %d times before fn returned", hookedBeforeReturn)
	}
	if len(seen) != 1 || !slices.Equal(seen[0], []int64{1, 2}) {
		t.Fatalf("hook calls saw committed ids %v, want one call with [1 2] (and none for the update without events)", seen)
	}
}

// testHookOrder appends to several users in one transaction and checks that
// the hook gets each user's events in log order, whatever order fn used.
func testHookOrder(t *testing.T, open Opener) {
	var mu sync.Mutex
	var got []parley.Event
	st := open(t, func(evs []parley.Event) { mu.Lock(); got = append(got, evs...); mu.Unlock() })
	a, b := mustUser(t, st, "leo"), mustUser(t, st, "mia")
	var returned []parley.Event
	err := st.Update(ctx, func(tx *store.Tx) (err error) {
		returned, err = tx.Append(
			parley.NewEvent{UserID: b, Type: "app.1", Data: json.RawMessage(`{}`)},
			parley.NewEvent{UserID: a, Type: "app.2", Data: json.RawMessage(`{}`)},
			parley.NewEvent{UserID: b, Type: "app.3", Data: json.RawMessage(`{}`)},
		)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Append returns events in the order it was given them.
	if returned[0].UserID != b || returned[0].ID != 1 || returned[1].UserID != a || returned[1].ID != 1 || returned[2].ID != 2 {
		t.Fatalf("Append returned %+v", returned)
	}
	mu.Lock()
	defer mu.Unlock()
	last := map[string]int64{}
	for _, e := range got {
		if e.ID != last[e.UserID]+1 {
			t.Fatalf("hook got %s's id %d after %d", e.UserID, e.ID, last[e.UserID])
		}
		last[e.UserID] = e.ID
	}
	if last[a] != 1 || last[b] != 2 {
		t.Fatalf("hook got %v", got)
	}
}

// testRemoveLog: an erased user's log is gone whole (events merged or not),
// nothing can be appended to it any more (Append fails as for an unknown
// user, AppendLive leaves the user out and appends the rest), and the
// others' logs are untouched.
func testRemoveLog(t *testing.T, open Opener) {
	st := open(t, nil)
	gone, kept := mustUser(t, st, "gone"), mustUser(t, st, "kept")
	appendN(t, st, gone, 5)
	appendN(t, st, kept, 3)
	// Some of the log merged (SQLite), some still in the tail.
	if err := st.Update(ctx, func(tx *store.Tx) error { _, err := tx.MergeTailStep(1 << 20); return err }); err != nil {
		t.Fatal(err)
	}
	appendN(t, st, gone, 2)
	if err := st.Update(ctx, func(tx *store.Tx) error { return tx.RemoveLog(gone) }); err != nil {
		t.Fatalf("remove log: %v", err)
	}
	err := st.View(ctx, func(tx *store.Tx) error {
		if evs, err := tx.EventsAfter(gone, 0, 100); err != nil || len(evs) != 0 {
			return fmt.Errorf("events after removal: %d (%v)", len(evs), err)
		}
		if _, _, err := tx.LogBounds(gone); !errors.Is(err, parley.NotFound) {
			return fmt.Errorf("bounds after removal: %v", err)
		}
		if evs, err := tx.EventsAfter(kept, 0, 100); err != nil || len(evs) != 3 {
			return fmt.Errorf("the other log: %d events (%v)", len(evs), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.Append(parley.NewEvent{UserID: gone, Type: "app.late", Data: json.RawMessage(`{}`)})
		return err
	})
	if parley.ErrorCode(err) != parley.ENotFound {
		t.Fatalf("append to a removed log: %v, want not_found", err)
	}
	var got []parley.Event
	err = st.Update(ctx, func(tx *store.Tx) (err error) {
		got, err = tx.AppendLive(parley.NewEvent{UserID: gone, Type: "app.late", Data: json.RawMessage(`{}`)},
			parley.NewEvent{UserID: kept, Type: "app.late", Data: json.RawMessage(`{}`)})
		return err
	})
	if err != nil || len(got) != 1 || got[0].UserID != kept || got[0].ID != 4 {
		t.Fatalf("AppendLive = %+v, %v; want kept's event 4 only", got, err)
	}
}

// testSessionWithUser: the one-statement lookup behind every request finds
// a session with its user, through Read (no transaction on PostgreSQL),
// and answers NotFound for an unknown or impossible id.
func testSessionWithUser(t *testing.T, open Opener) {
	st := open(t, nil)
	user := mustUser(t, st, "sessioned")
	now := store.Now()
	sess := &parley.Session{ID: parley.NewID("ses"), UserID: user, CreatedAt: now, LastActive: now, ExpiresAt: now.Add(time.Hour)}
	if err := st.Update(ctx, func(tx *store.Tx) error { return tx.CreateSession(sess) }); err != nil {
		t.Fatal(err)
	}
	var got *parley.Session
	var u *parley.User
	err := st.Read(ctx, func(tx *store.Tx) (err error) {
		got, u, err = tx.SessionWithUser(sess.ID)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != sess.ID || got.UserID != user || !got.ExpiresAt.Equal(sess.ExpiresAt) || !got.LastActive.Equal(now) || got.Revoked {
		t.Errorf("session = %+v, want %+v", got, sess)
	}
	if u.ID != user || u.Username == nil || *u.Username != "sessioned" || string(u.PasswordHash) != "x" {
		t.Errorf("user = %+v", u)
	}
	for _, id := range []string{"ses_unknown", "ses_\x00", "ses_\xff"} {
		err := st.Read(ctx, func(tx *store.Tx) error { _, _, err := tx.SessionWithUser(id); return err })
		if !errors.Is(err, parley.NotFound) {
			t.Errorf("SessionWithUser(%q) = %v, want NotFound", id, err)
		}
	}
}

// testEventsIn: the spans of several users' logs in one read, each user's
// events in order, and a user whose span holds nothing left out.
func testEventsIn(t *testing.T, open Opener) {
	st := open(t, nil)
	a, b, c := mustUser(t, st, "span-a"), mustUser(t, st, "span-b"), mustUser(t, st, "span-c")
	appendN(t, st, a, 5)
	appendN(t, st, b, 3)
	var got map[string][]parley.Event
	err := st.Read(ctx, func(tx *store.Tx) (err error) {
		got, err = tx.EventsIn([]store.LogRange{{UserID: a, After: 1, UpTo: 4}, {UserID: b, After: 0, UpTo: 9}, {UserID: c, After: 0, UpTo: 3}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(evs []parley.Event) (out []int64) {
		for _, e := range evs {
			out = append(out, e.ID)
		}
		return out
	}
	if !slices.Equal(ids(got[a]), []int64{2, 3, 4}) || !slices.Equal(ids(got[b]), []int64{1, 2, 3}) || len(got[c]) != 0 {
		t.Fatalf("EventsIn = a %v, b %v, c %v; want a [2 3 4], b [1 2 3], c none", ids(got[a]), ids(got[b]), ids(got[c]))
	}
	for _, e := range got[a] {
		if e.UserID != a || e.Type == "" || len(e.Data) == 0 {
			t.Fatalf("event %+v", e)
		}
	}
}

// testAdvanceDeliveredAll: a flush of delivered markers, more than one
// statement's worth, moves each marker that is behind and answers its
// peer, in the order asked; a marker already there, or asked to move
// back, is left and answers "".
func testAdvanceDeliveredAll(t *testing.T, open Opener) {
	st := open(t, nil)
	pro := mustUser(t, st, "pro")
	const n = 230 // over one chunk of rows
	clients := make([]string, n)
	convs := make([]string, n)
	err := st.Update(ctx, func(tx *store.Tx) error {
		for i := range n {
			name := fmt.Sprint("client", i)
			u := &parley.User{ID: parley.NewID("usr"), Username: &name, DisplayName: name, Role: parley.RoleClient,
				PasswordHash: []byte("x"), CreatedAt: store.Now()}
			if err := tx.CreateUser(u); err != nil {
				return err
			}
			clients[i], convs[i] = u.ID, parley.NewID("cnv")
			if err := tx.CreateConversation(&store.ConversationRow{ID: convs[i], ClientID: u.ID, ProfessionalID: pro, CreatedAt: store.Now()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	flush := func(ds []store.Delivery) []string {
		t.Helper()
		var peers []string
		if err := st.Update(ctx, func(tx *store.Tx) (err error) { peers, err = tx.AdvanceDeliveredAll(ds); return err }); err != nil {
			t.Fatal(err)
		}
		return peers
	}
	// Each client's marker to 5, and the professional's to i+1.
	var ds []store.Delivery
	var want []string
	for i := range n {
		ds = append(ds, store.Delivery{ConversationID: convs[i], UserID: clients[i], UpTo: 5},
			store.Delivery{ConversationID: convs[i], UserID: pro, UpTo: int64(i + 1)})
		want = append(want, pro, clients[i])
	}
	if got := flush(ds); !slices.Equal(got, want) {
		t.Fatalf("first flush: %d peers, want %d; first differing at %d", len(got), len(want), firstDiff(got, want))
	}
	// Again, with the first client's marker moved back and the second's on.
	again := []store.Delivery{ds[0], {ConversationID: convs[0], UserID: clients[0], UpTo: 3}, {ConversationID: convs[1], UserID: clients[1], UpTo: 6}}
	again = slices.Delete(again, 0, 1)
	if got := flush(again); !slices.Equal(got, []string{"", pro}) {
		t.Errorf("second flush: peers %q, want [\"\" %q]", got, pro)
	}
	err = st.Read(ctx, func(tx *store.Tx) error {
		for i, want := range []int64{5, 6, 5} {
			m, err := tx.Member(convs[i], clients[i])
			if err != nil {
				return err
			}
			if m.DeliveredSeq != want {
				t.Errorf("client %d: delivered %d, want %d", i, m.DeliveredSeq, want)
			}
		}
		m, err := tx.Member(convs[n-1], pro)
		if err == nil && m.DeliveredSeq != n {
			t.Errorf("professional in the last conversation: delivered %d, want %d", m.DeliveredSeq, n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// testScrubOldWebhooks: a conversation.created webhook written before rows
// named the first message (an empty message_id) is still scrubbed by an erasure:
// the erased client is shown as erased, and their first message, deleted
// by then, as its tombstone. The other participant is left as they were.
func testScrubOldWebhooks(t *testing.T, open Opener) {
	st := open(t, nil)
	client, pro := mustUser(t, st, "oldclient"), mustUser(t, st, "oldpro")
	conv, msg := parley.NewID("cnv"), parley.NewTimeID("msg")
	ext := "old-ext-id"
	err := st.Update(ctx, func(tx *store.Tx) error {
		now := store.Now()
		if err := tx.CreateConversation(&store.ConversationRow{ID: conv, ClientID: client, ProfessionalID: pro, CreatedAt: now}); err != nil {
			return err
		}
		m := &parley.Message{ID: msg, ConversationID: conv, Seq: 1, Kind: "user", SenderID: &client, Body: "OLD-SECRET", CreatedAt: parley.T(now)}
		if err := tx.InsertMessage(m); err != nil {
			return err
		}
		view := &parley.Conversation{ID: conv, LastMessage: m,
			Client:       parley.User{ID: client, DisplayName: "Old Client Name", ExternalID: &ext, Role: parley.RoleClient},
			Professional: parley.User{ID: pro, DisplayName: "Old Pro Name", Role: parley.RoleProfessional}}
		return tx.InsertWebhook(parley.EventConversationCreated, conv, "", view)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(ctx, func(tx *store.Tx) error {
		if err := tx.DeleteMessage(msg); err != nil {
			return err
		}
		if err := tx.MarkErased(client, store.Now()); err != nil {
			return err
		}
		return tx.ScrubWebhooksOf(client, time.Now())
	})
	if err != nil {
		t.Fatal(err)
	}
	var groups [][]*store.Webhook
	err = st.Update(ctx, func(tx *store.Tx) (err error) {
		groups, err = tx.ClaimWebhooks(time.Now(), time.Minute, 10, 10)
		return err
	})
	if err != nil || len(groups) != 1 || len(groups[0]) != 1 {
		t.Fatalf("claimed %v (%v), want the one webhook", groups, err)
	}
	body := string(groups[0][0].Body)
	for _, gone := range []string{"Old Client Name", ext, "OLD-SECRET"} {
		if strings.Contains(body, gone) {
			t.Errorf("the webhook still holds %q: %s", gone, body)
		}
	}
	for _, kept := range []string{store.ErasedName, "Old Pro Name", `"deleted":true`, msg} {
		if !strings.Contains(body, kept) {
			t.Errorf("the webhook lost %q: %s", kept, body)
		}
	}
}
