package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"

	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/postgres"
	"github.com/parley-chat/parley/internal/store/storetest"
	"github.com/parley-chat/parley/internal/testenv"
)

// openForTest opens the store on a fresh database of the test server
// (PARLEY_TEST_POSTGRES), skipping when there is none.
func openForTest(t *testing.T, hook store.CommitHook) store.Store {
	t.Helper()
	url := testenv.FreshDatabase(t, testenv.Postgres(t))
	db, err := postgres.Open(context.Background(), url, hook)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestStore(t *testing.T) {
	testenv.Postgres(t) // without a server, skip the suite once, not case by case
	storetest.Run(t, openForTest)
}

// TestNodesShareLogs runs two stores on one database, as two nodes would,
// appending to the same users at once: ids stay contiguous across them.
func TestNodesShareLogs(t *testing.T) {
	url := testenv.FreshDatabase(t, testenv.Postgres(t))
	ctx := context.Background()
	// Both open at once: the migration lock makes them take turns.
	nodes := make([]*postgres.DB, 3)
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i := range nodes {
		wg.Go(func() { nodes[i], errs[i] = postgres.Open(ctx, url, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open node %d: %v", i, err)
		}
		t.Cleanup(func() { nodes[i].Close() })
	}
	u := &parley.User{ID: parley.NewID("usr"), Username: parley.Ptr("shared"), DisplayName: "s", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: store.Now()}
	if err := nodes[0].Update(ctx, func(tx *store.Tx) error { return tx.CreateUser(u) }); err != nil {
		t.Fatal(err)
	}
	const each = 60
	for _, n := range nodes {
		for range 2 {
			wg.Go(func() {
				for range each / 2 {
					if err := n.Update(ctx, func(tx *store.Tx) error {
						return tx.AppendJSON("app.x", map[string]int{}, u.ID)
					}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	var evs []parley.Event
	if err := nodes[2].View(ctx, func(tx *store.Tx) (err error) { evs, err = tx.EventsAfter(u.ID, 0, 1000); return err }); err != nil {
		t.Fatal(err)
	}
	if len(evs) != each*len(nodes) {
		t.Fatalf("%d events, want %d", len(evs), each*len(nodes))
	}
	for i, e := range evs {
		if e.ID != int64(i+1) {
			t.Fatalf("event %d has id %d", i, e.ID)
		}
	}
}

// TestDeadlockRetried makes two transactions lock two rows in opposite
// orders. PostgreSQL aborts one of them; Update runs it again and both
// succeed.
func TestDeadlockRetried(t *testing.T) {
	st := openForTest(t, nil).(*postgres.DB)
	ctx := context.Background()
	users := make([]string, 2)
	for i := range users {
		u := &parley.User{ID: parley.NewID("usr"), Username: parley.Ptr(fmt.Sprintf("dl%d", i)), DisplayName: "d", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: store.Now()}
		if err := st.Update(ctx, func(tx *store.Tx) error { return tx.CreateUser(u) }); err != nil {
			t.Fatal(err)
		}
		users[i] = u.ID
	}
	var barrier sync.WaitGroup
	barrier.Add(2)
	var attempts [2]atomic.Int32
	run := func(i int) error {
		first, second := users[i], users[1-i]
		return st.Update(ctx, func(tx *store.Tx) error {
			n := attempts[i].Add(1)
			if err := tx.SetLastSeen(first, time.Now()); err != nil {
				return err
			}
			if n == 1 {
				// Both hold their first row before either asks for its second.
				barrier.Done()
				barrier.Wait()
			}
			return tx.SetLastSeen(second, time.Now())
		})
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { errs[i] = run(i) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("transaction %d: %v", i, err)
		}
	}
	if total := attempts[0].Load() + attempts[1].Load(); total < 3 {
		t.Fatalf("%d attempts in all: no deadlock happened, the test proves nothing", total)
	}
}

// TestSwallowedErrorRetried: fn goes on after a failed statement, which
// PostgreSQL turns into a rollback at commit. Update runs fn again.
func TestSwallowedErrorRetried(t *testing.T) {
	st := openForTest(t, nil)
	ctx := context.Background()
	u := &parley.User{ID: parley.NewID("usr"), Username: parley.Ptr("dup"), DisplayName: "d", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: store.Now()}
	if err := st.Update(ctx, func(tx *store.Tx) error { return tx.CreateUser(u) }); err != nil {
		t.Fatal(err)
	}
	var calls int
	err := st.Update(ctx, func(tx *store.Tx) error {
		calls++
		if calls == 1 {
			dup := *u
			dup.ID = parley.NewID("usr")
			_ = tx.CreateUser(&dup) // conflict, ignored: the transaction is now aborted
		}
		return tx.AppendJSON("app.x", map[string]int{}, u.ID)
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if calls != 2 {
		t.Fatalf("fn ran %d times, want 2", calls)
	}
}

func TestPoolSizeInURL(t *testing.T) {
	url := testenv.FreshDatabase(t, testenv.Postgres(t)) // carries pool_max_conns=8
	db, err := postgres.Open(context.Background(), url, nil)
	if err != nil {
		t.Fatalf("open with pool_max_conns: %v", err)
	}
	db.Close()
	if _, err := postgres.Open(context.Background(), strings.Replace(url, "pool_max_conns=8", "pool_max_conns=zero", 1), nil); err == nil {
		t.Fatal("bad pool_max_conns accepted")
	}
}
