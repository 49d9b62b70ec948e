package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/sqlite"
)

// syncBuffer is a log destination the writer goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A merge that keeps failing must not let the tail grow until the process
// runs out of memory: once the tail holds its limit of unmerged events,
// appends are refused with a 503 (store.ErrTailFull), the log says why, and
// once merges succeed again appends are taken again, with every event
// that was acknowledged before in its log.
func TestTailFullRefusesAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	db := openAt(t, path)
	defer db.Close()
	var logs syncBuffer
	db.SetLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	const limit = 60
	sqlite.SetTailLimit(db, limit)
	users := mustCreateUsers(t, db, 3)

	appendRound := func() error {
		return db.Update(context.Background(), func(tx *store.Tx) error {
			evs := make([]parley.NewEvent, 0, 15)
			for range 5 {
				for _, u := range users {
					evs = append(evs, ev(u, "m"))
				}
			}
			_, err := tx.Append(evs...)
			return err
		})
	}
	if err := appendRound(); err != nil {
		t.Fatal(err)
	}
	// Rows in the way of any run of user 1's that a merge can write (a run
	// is keyed by its last id), written behind the store's back after its
	// first append (which cached the log heads): every merge step (they all
	// hold user 1's events here) fails on them.
	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for id := 1; id <= 1000; id++ {
		if _, err := raw.Exec(`INSERT INTO event_runs (user_id, first_id, last_id, created_at, events) VALUES (?, ?, ?, 1, ?)`, users[1], id, id, runOf("app.other", `{}`)); err != nil {
			t.Fatal(err)
		}
	}

	acked := 1
	var refused error
	for round := 0; round < 40 && refused == nil; round++ {
		if err := appendRound(); err != nil {
			refused = err
			break
		}
		acked++
		// The writer, idle, tries to merge: early enough that the limit
		// (four rounds) is not reached before a merge has been tried,
		// however fast the rounds go.
		if round%4 == 1 {
			time.Sleep(1500 * time.Millisecond)
		}
	}
	if refused == nil {
		t.Fatalf("%d rounds of 15 events acknowledged with every merge failing: the tail holds %d unmerged events (limit %d)", acked, db.Unmerged(), limit)
	}
	if !errors.Is(refused, store.ErrTailFull) || parley.ErrorCode(refused) != parley.EUnavailable {
		t.Fatalf("refused with %v, want store.ErrTailFull (unavailable)", refused)
	}
	if n := db.Unmerged(); n < limit || n > limit+15 {
		t.Fatalf("the tail holds %d unmerged events, want the limit %d (plus at most one append)", n, limit)
	}
	if !db.TailFull() || db.MergeFailures() == 0 {
		t.Fatalf("TailFull %v, MergeFailures %d", db.TailFull(), db.MergeFailures())
	}
	// Logins and other writes without events go on.
	if err := db.Update(context.Background(), func(tx *store.Tx) error { return tx.SetLastSeen(users[0], time.Now()) }); err != nil {
		t.Fatalf("a write without events while the tail is full: %v", err)
	}
	for _, want := range []string{"merging the event tail failed", "refusing new events"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}

	// The obstacle goes; the idle writer's next merge succeeds.
	if _, err := raw.Exec(`DELETE FROM event_runs WHERE user_id = ?`, users[1]); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for db.TailFull() || db.Unmerged() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("tail still full (%d unmerged) 10s after merges could succeed", db.Unmerged())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := appendRound(); err != nil {
		t.Fatalf("append after the tail merged: %v", err)
	}
	acked++
	// Every acknowledged event is in its log, once, in order.
	if err := db.View(context.Background(), func(tx *store.Tx) error {
		for _, u := range users {
			evs, err := tx.EventsAfter(u, 0, 10_000)
			if err != nil {
				return err
			}
			if len(evs) != 5*acked {
				return fmt.Errorf("user %s has %d events, want %d", u, len(evs), 5*acked)
			}
			for i, e := range evs {
				if e.ID != int64(i+1) {
					return fmt.Errorf("user %s: event %d has id %d", u, i, e.ID)
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"merging the event tail again", "taking new events again"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
}
