package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"fmt"
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

// The tail (store.Tail) as the SQLite store uses it: appends land in
// event_batches rows and in memory, merges move them into the events
// table, and a restart reloads what was not merged.

func openAt(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return db
}

// rowCounts reads the database file directly: the events in the events
// table and in event_runs, and the event_batches rows.
func rowCounts(t *testing.T, path string) (events, batches int) {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)&_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if err := raw.QueryRow(`SELECT (SELECT COUNT(*) FROM events) + (SELECT COALESCE(SUM(last_id - first_id + 1), 0) FROM event_runs),
		(SELECT COUNT(*) FROM event_batches)`).Scan(&events, &batches); err != nil {
		t.Fatal(err)
	}
	return events, batches
}

// runOf is an event_runs blob of one event (store/runs.go), written by hand
// to stand for what another process left in the file.
func runOf(typ, data string) []byte {
	b := []byte{2, 1}
	b = append(binary.AppendUvarint(b, uint64(len(typ))), typ...)
	b = append(binary.AppendUvarint(b, uint64(len(data))), data...)
	return binary.AppendVarint(b, 0)
}

func fanOut(t *testing.T, db *sqlite.DB, users []string, m string) {
	t.Helper()
	evs := make([]parley.NewEvent, len(users))
	for i, u := range users {
		evs[i] = ev(u, m)
	}
	if err := db.Update(context.Background(), func(tx *store.Tx) error {
		_, err := tx.Append(evs...)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// checkLogs asserts that each user's log is exactly 1..n, every event once,
// with the payload of round id ("m1", "m2", …).
func checkLogs(t *testing.T, db *sqlite.DB, users []string, n int64) {
	t.Helper()
	err := db.View(context.Background(), func(tx *store.Tx) error {
		for _, u := range users {
			first, last, err := tx.LogBounds(u)
			if err != nil {
				return err
			}
			evs, err := tx.EventsAfter(u, 0, 1000)
			if err != nil {
				return err
			}
			if first != 1 || last != n || int64(len(evs)) != n {
				return fmt.Errorf("user %s: bounds (%d, %d) and %d events, want (1, %d) and %d", u, first, last, len(evs), n, n)
			}
			for i, e := range evs {
				if e.ID != int64(i+1) || string(e.Data) != fmt.Sprintf(`{"m":"m%d"}`, i+1) || e.Time.IsZero() {
					return fmt.Errorf("user %s: event %d = %+v", u, i, e)
				}
			}
		}
		heads, err := tx.LogHeads(users)
		if err != nil {
			return err
		}
		for _, u := range users {
			if heads[u] != n {
				return fmt.Errorf("head of %s = %d, want %d", u, heads[u], n)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A fan-out is one batch row until the writer, idle, merges it; the log
// reads the same before and after, and after a restart.
func TestTailMergesWhenIdle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	db := openAt(t, path)
	users := mustCreateUsers(t, db, 40)
	if err := db.Update(context.Background(), func(tx *store.Tx) error {
		_, err := tx.Append() // nothing to append: no batch row
		return err
	}); err != nil {
		t.Fatal(err)
	}
	fanOut(t, db, users, "m1")
	fanOut(t, db, users, "m2")
	if events, batches := rowCounts(t, path); events != 0 || batches != 2 {
		t.Fatalf("after two fan-outs: %d event rows and %d batch rows, want 0 and 2", events, batches)
	}
	checkLogs(t, db, users, 2)

	deadline := time.Now().Add(10 * time.Second)
	for {
		events, batches := rowCounts(t, path)
		if events == 80 && batches == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle writer left %d event rows and %d batch rows, want 80 and 0", events, batches)
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkLogs(t, db, users, 2)
	fanOut(t, db, users, "m3")
	checkLogs(t, db, users, 3)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, path)
	defer db.Close()
	checkLogs(t, db, users, 3)
}

// Batches not merged when the store closes (or the process dies) are
// reloaded: the logs read the same and ids go on from their heads. A batch
// whose events a merge had partly written before a crash merges again
// without duplicates.
func TestTailReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	db := openAt(t, path)
	users := mustCreateUsers(t, db, 30)
	fanOut(t, db, users, "m1")
	fanOut(t, db, users, "m2")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, batches := rowCounts(t, path); batches != 2 {
		t.Fatalf("%d batch rows after close, want 2", batches)
	}

	// What a merge step that ended with a crash leaves: some users'
	// events of batch 1 merged, the batch row still there. Merged into
	// event_runs, or into events by a version before event_runs.
	raw, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users[:5] {
		if _, err := raw.Exec(`INSERT INTO events (user_id, id, type, data, created_at) VALUES (?, 1, 'app.test', '{"m":"m1"}', 1)`, u); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range users[5:10] {
		if _, err := raw.Exec(`INSERT INTO event_runs (user_id, first_id, last_id, created_at, events) VALUES (?, 1, 1, 1, ?)`, u, runOf("app.test", `{"m":"m1"}`)); err != nil {
			t.Fatal(err)
		}
	}
	raw.Close()

	db = openAt(t, path)
	defer db.Close()
	checkLogs(t, db, users, 2)
	fanOut(t, db, users, "m3")
	checkLogs(t, db, users, 3)
	// Pruning merges the whole tail first; with nothing old enough it
	// deletes nothing.
	if err := db.Update(context.Background(), func(tx *store.Tx) error {
		n, err := tx.PruneEvents(time.Unix(0, 0), 0)
		if err == nil && n != 0 {
			err = fmt.Errorf("pruned %d events", n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if events, batches := rowCounts(t, path); events != 90 || batches != 0 {
		t.Fatalf("after the merge: %d event rows and %d batch rows, want 90 and 0", events, batches)
	}
	checkLogs(t, db, users, 3)
}

// Reads that run while merges move events from the tail into the table
// see every event once. Each read takes the bounds, then the events, in
// one transaction: its snapshot of the table is taken before a merge that
// can end between the two, so the merged events must still be in the tail.
func TestTailReadsDuringMerges(t *testing.T) {
	db := openAt(t, filepath.Join(t.TempDir(), "parley.db"))
	defer db.Close()
	users := mustCreateUsers(t, db, 20)
	ctx := context.Background()

	var done atomic.Bool
	var rounds atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for r := range 4 {
		wg.Go(func() {
			for i := 0; !done.Load(); i++ {
				u := users[(r+i)%len(users)]
				err := db.View(ctx, func(tx *store.Tx) error {
					first, last, err := tx.LogBounds(u)
					if err != nil {
						return err
					}
					evs, err := tx.EventsAfter(u, first-1, 100000)
					if err != nil {
						return err
					}
					if first != 1 || int64(len(evs)) < last {
						return fmt.Errorf("user %s: bounds (%d, %d) but %d events", u, first, last, len(evs))
					}
					for k, e := range evs {
						if e.ID != int64(k+1) {
							return fmt.Errorf("user %s: event %d has id %d", u, k, e.ID)
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	deadline := time.Now().Add(3 * time.Second)
	for n := 1; n <= 400 && time.Now().Before(deadline); n++ {
		fanOut(t, db, users, fmt.Sprintf("m%d", n))
		rounds.Store(int64(n))
		if n%3 == 0 {
			if err := db.Update(ctx, func(tx *store.Tx) error {
				_, err := tx.PruneEvents(time.Unix(0, 0), 0) // merges the tail
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkLogs(t, db, users, rounds.Load())
}

// A merge that meets a row already in the table fails rather than drop the
// tail's event, unless the event was reloaded after a crash (TestTailReloads):
// outside that case a collision means two writers, and the acknowledged
// event must not vanish quietly.
func TestTailMergeCollisionFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	db := openAt(t, path)
	defer db.Close()
	users := mustCreateUsers(t, db, 3)
	fanOut(t, db, users, "m1")
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`INSERT INTO event_runs (user_id, first_id, last_id, created_at, events) VALUES (?, 1, 1, 1, ?)`, users[1], runOf("app.other", `{}`)); err != nil {
		t.Fatal(err)
	}
	err = db.Update(context.Background(), func(tx *store.Tx) error {
		_, err := tx.PruneEvents(time.Unix(0, 0), 0) // merges the tail first
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "UNIQUE") {
		t.Fatalf("merge over an existing row: %v, want a unique-constraint error", err)
	}
	if _, batches := rowCounts(t, path); batches != 1 {
		t.Fatalf("%d batch rows after the failed merge, want 1", batches)
	}
}

// A long backlog merges as several runs; reads starting anywhere in them
// and pruning that cuts through one see each event once, in order.
func TestTailRunsReadAndPrune(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	db := openAt(t, path)
	users := mustCreateUsers(t, db, 2)
	a := users[0]
	backlog := make([]parley.NewEvent, 150)
	for i := range backlog {
		backlog[i] = ev(a, fmt.Sprintf("m%d", i+1))
	}
	if err := db.Update(ctx, func(tx *store.Tx) error { _, err := tx.Append(backlog...); return err }); err != nil {
		t.Fatal(err)
	}
	fanOut(t, db, users[1:], "m1")
	prune := func(before time.Time, keep int, want int64) {
		t.Helper()
		if err := db.Update(ctx, func(tx *store.Tx) error {
			n, err := tx.PruneEvents(before, keep)
			if err == nil && n != want {
				err = fmt.Errorf("pruned %d events, want %d", n, want)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	prune(time.Unix(0, 0), 0, 0) // merges the tail
	if events, batches := rowCounts(t, path); events != 151 || batches != 0 {
		t.Fatalf("after the merge: %d events and %d batch rows, want 151 and 0", events, batches)
	}
	ids := func(after int64, limit int) (first, last int64, got []int64) {
		t.Helper()
		if err := db.View(ctx, func(tx *store.Tx) error {
			var err error
			if first, last, err = tx.LogBounds(a); err != nil {
				return err
			}
			evs, err := tx.EventsAfter(a, after, limit)
			for _, e := range evs {
				if string(e.Data) != fmt.Sprintf(`{"m":"m%d"}`, e.ID) {
					return fmt.Errorf("event %d = %+v", e.ID, e)
				}
				got = append(got, e.ID)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return first, last, got
	}
	span := func(from, to int64) []int64 {
		var s []int64
		for id := from; id <= to; id++ {
			s = append(s, id)
		}
		return s
	}
	for _, c := range []struct {
		after int64
		limit int
		want  []int64
	}{
		{0, 1000, span(1, 150)},
		{63, 2, span(64, 65)},
		{64, 64, span(65, 128)},
		{100, 1000, span(101, 150)},
		{150, 10, nil},
	} {
		if first, last, got := ids(c.after, c.limit); first != 1 || last != 150 || !slices.Equal(got, c.want) {
			t.Fatalf("after %d, limit %d: bounds (%d, %d), ids %v; want (1, 150), %v", c.after, c.limit, first, last, got, c.want)
		}
	}

	// Keeping the newest 10 cuts into the last run.
	prune(time.Now().Add(time.Hour), 10, 140)
	if first, last, got := ids(0, 1000); first != 141 || last != 150 || !slices.Equal(got, span(141, 150)) {
		t.Fatalf("after pruning to 10: bounds (%d, %d), ids %v", first, last, got)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, path)
	defer db.Close()
	if first, last, got := ids(140, 5); first != 141 || last != 150 || !slices.Equal(got, span(141, 145)) {
		t.Fatalf("after a restart: bounds (%d, %d), ids %v", first, last, got)
	}
	prune(time.Now().Add(time.Hour), 0, 11)
	if first, last, got := ids(0, 1000); first != 151 || last != 150 || len(got) != 0 {
		t.Fatalf("emptied log: bounds (%d, %d), ids %v", first, last, got)
	}
}

// TestRemoveLogAcrossReopen: removing a user's log takes the events still
// in the tail too, whose event_batches rows hold others' events beside
// theirs: after a restart (which reloads the batches) the log is still
// gone, nothing is left in the file under the user, and the others' logs
// are whole.
func TestRemoveLogAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	db := openAt(t, path)
	ctx := context.Background()
	var ids []string
	for _, name := range []string{"gone", "kept"} {
		u := &parley.User{ID: parley.NewID("usr"), Username: parley.Ptr(name), DisplayName: name, Role: parley.RoleClient, CreatedAt: store.Now()}
		if err := db.Update(ctx, func(tx *store.Tx) error { return tx.CreateUser(u) }); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	gone, kept := ids[0], ids[1]
	for i := range 4 {
		if err := db.Update(ctx, func(tx *store.Tx) error {
			_, err := tx.Append(parley.NewEvent{UserID: gone, Type: "app.x", Data: json.RawMessage(fmt.Sprintf(`{"secret":%d}`, i))},
				parley.NewEvent{UserID: kept, Type: "app.x", Data: json.RawMessage(`{}`)})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Update(ctx, func(tx *store.Tx) error { return tx.RemoveLog(gone) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=query_only(1)")
	if err != nil {
		t.Fatal(err)
	}
	var left int
	if err := raw.QueryRow(`SELECT (SELECT COUNT(*) FROM events WHERE user_id = ?) + (SELECT COUNT(*) FROM event_runs WHERE user_id = ?)
		+ (SELECT COUNT(*) FROM event_heads WHERE user_id = ?) + (SELECT COUNT(*) FROM event_batches)`, gone, gone, gone).Scan(&left); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	if left != 0 {
		t.Fatalf("%d rows of the removed log (or batches holding it) are left", left)
	}
	db = openAt(t, path)
	defer db.Close()
	err = db.View(ctx, func(tx *store.Tx) error {
		if evs, _ := tx.EventsAfter(gone, 0, 100); len(evs) != 0 {
			return fmt.Errorf("%d events of the removed log after a restart", len(evs))
		}
		if evs, _ := tx.EventsAfter(kept, 0, 100); len(evs) != 4 {
			return fmt.Errorf("the other log has %d events after a restart, want 4", len(evs))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Appends that share group commits, some of them in requests that fail:
// a commit stores its successful appends as one event_batches row, at the
// commit's time (store.Tx.WriteBatch), and a failed one's events are
// not in it (the savepoint rerun undoes them). Reopened, the tail read
// back from the rows holds exactly the events Append returned, at their
// times.
func TestGroupCommitBatchRowsReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	db := openAt(t, path)
	users := mustCreateUsers(t, db, 5)
	commits0, requests0 := db.Commits()

	const workers, perWorker = 16, 40
	var (
		mu        sync.Mutex
		stored    []parley.Event
		succeeded int
		wg        sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				fail := (w+i)%5 == 2
				var got []parley.Event
				err := db.Update(context.Background(), func(tx *store.Tx) (err error) {
					got, err = tx.Append(ev(users[(w+i)%len(users)], fmt.Sprintf("w%d-i%d", w, i)), ev(users[i%len(users)], fmt.Sprintf("w%d-i%d-b", w, i)))
					if err == nil && fail {
						err = errBoom
					}
					return err
				})
				mu.Lock()
				switch {
				case fail && err == nil:
					t.Errorf("w%d-i%d: the failing update committed", w, i)
				case !fail && err != nil:
					t.Errorf("w%d-i%d: %v", w, i, err)
				case !fail:
					succeeded++
					stored = append(stored, got...)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	commits, requests := db.Commits()
	if requests-requests0 <= commits-commits0 {
		t.Fatalf("%d requests in %d commits: the appends never shared a commit", requests-requests0, commits-commits0)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, rows := rowCounts(t, path); rows >= succeeded {
		t.Fatalf("%d event_batches rows for %d successful appends in shared commits: not a row per commit", rows, succeeded)
	}

	db = openAt(t, path)
	defer db.Close()
	want := map[string][]parley.Event{}
	for _, e := range stored {
		want[e.UserID] = append(want[e.UserID], e)
	}
	for _, u := range users {
		slices.SortFunc(want[u], func(a, b parley.Event) int { return int(a.ID - b.ID) })
		got := readLog(t, db, u)
		if len(got) != len(want[u]) {
			t.Fatalf("%s: %d events after reopening, Append returned %d", u, len(got), len(want[u]))
		}
		for i, e := range got {
			w := want[u][i]
			if e.ID != w.ID || marker(e) != marker(w) || !e.Time.Time.Equal(w.Time.Time) {
				t.Fatalf("%s: event %d reloaded as id %d %q at %v, Append returned id %d %q at %v",
					u, i, e.ID, marker(e), e.Time.Time, w.ID, marker(w), w.Time.Time)
			}
		}
	}
}
