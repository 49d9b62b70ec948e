package sqlite_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/sqlite"
	"github.com/parley-chat/parley/internal/store/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, hook store.CommitHook) store.Store {
		db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "parley.db"), hook)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

// TestViewReturnsReadersAfterFailures: reads that fail, panic or are
// cancelled must each give their connection back, or the store would stall
// once the eight readers were gone.
func TestViewReturnsReadersAfterFailures(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "parley.db"), nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer db.Close()
	boom := errors.New("boom")
	for i := range 30 {
		func() {
			defer func() { _ = recover() }()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_ = db.View(ctx, func(tx *store.Tx) error {
				_, _, _ = tx.LogBounds("usr_nobody")
				switch i % 3 {
				case 0:
					panic("read panicked")
				case 1:
					cancel()
				}
				return boom
			})
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = db.View(ctx, func(tx *store.Tx) error {
		_, _, err := tx.LogBounds("usr_nobody")
		return err
	})
	if parley.ErrorCode(err) != parley.ENotFound {
		t.Fatalf("a read after 30 failed ones: %v, want not_found", err)
	}
}

// TestWALStaysBounded: under a steady stream of commits the WAL must start
// over now and then. With only the background checkpoint, which rarely
// completes between two busy commits, it grew without end.
func TestWALStaysBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	db, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer db.Close()
	if n, err := sqlite.WriterPragma(db, "PRAGMA wal_autocheckpoint"); err != nil || n != 1000 {
		t.Fatalf("the writer's wal_autocheckpoint is %d (%v), want SQLite's 1,000 pages", n, err)
	}
	ctx := context.Background()
	var uid string
	err = db.Update(ctx, func(tx *store.Tx) error {
		u := &parley.User{ID: parley.NewID("u"), Username: parley.Ptr("wal"), DisplayName: "x", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: time.Now()}
		uid = u.ID
		return tx.CreateUser(u)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Random text: the log compresses its batches.
	body := func() json.RawMessage {
		b := make([]byte, 6000)
		rand.Read(b)
		return json.RawMessage(`{"body":"` + base64.StdEncoding.EncodeToString(b) + `"}`)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 400 {
				err := db.Update(ctx, func(tx *store.Tx) error {
					_, err := tx.Append(parley.NewEvent{UserID: uid, Type: "app.x", Data: body()})
					return err
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// 3,200 events of 8 KB, in commits of up to 8, are some 28 MiB of WAL
	// if it never starts over; the auto-checkpoint restarts it at ~1,000
	// pages (4 MiB) and one commit.
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 12<<20 {
		t.Fatalf("WAL is %d MiB after 3,200 events of 8 KB: it never started over", fi.Size()>>20)
	}
}

// TestHeadsAcrossPruneAndReopen: appends move no head row (HeadCache), so
// an emptied log's head comes from the row that pruning brought up to date;
// after a restart, ids go on from there.
func TestHeadsAcrossPruneAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	ctx := context.Background()
	open := func() *sqlite.DB {
		db, err := sqlite.Open(ctx, path, nil)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return db
	}
	appendOne := func(db *sqlite.DB, user string) int64 {
		var got []parley.Event
		err := db.Update(ctx, func(tx *store.Tx) (err error) {
			got, err = tx.Append(ev(user, "x"))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return got[0].ID
	}
	db := open()
	users := mustCreateUsers(t, db, 2)
	for range 3 {
		for _, u := range users {
			appendOne(db, u)
		}
	}
	err := db.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.PruneEvents(time.Now().Add(time.Hour), 0) // empties both logs
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = open()
	defer db.Close()
	err = db.View(ctx, func(tx *store.Tx) error {
		for _, u := range users {
			first, last, err := tx.LogBounds(u)
			if err != nil {
				return err
			}
			if first != 4 || last != 3 {
				t.Errorf("bounds after prune and reopen = (%d, %d), want (4, 3)", first, last)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		if id := appendOne(db, u); id != 4 {
			t.Errorf("first id after reopen = %d, want 4", id)
		}
	}
}

// TestSecondOpenRefused: a database file has one store at a time. A second
// one would keep log heads and a tail of its own (ids would collide, and
// neither would see the other's newest events), so Open refuses it until
// the first closes.
func TestSecondOpenRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	ctx := context.Background()
	first, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if second, err := sqlite.Open(ctx, path, nil); err == nil {
		second.Close()
		t.Fatal("a second store opened the same file")
	} else if !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second open: %v, want an in-use error", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := sqlite.Open(ctx, path, nil)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	again.Close()
}
