package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/sqlite"
)

// TestDiskFull: when the database cannot grow (SQLite's max_page_count on
// the writer's connection gives the same SQLITE_FULL a full disk does), a
// write fails with 503 unavailable rather than an internal error, Ping (and
// so /readyz) reports the store full, nothing committed before is lost, and
// once there is room again Ping and writes recover without a restart.
func TestDiskFull(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "parley.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pages, err := sqlite.WriterPragma(db, "PRAGMA page_count")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.WriterPragma(db, fmt.Sprintf("PRAGMA max_page_count = %d", pages+40)); err != nil {
		t.Fatal(err)
	}
	hash := []byte(strings.Repeat("h", 3000))
	created := 0
	for ; created < 1000; created++ {
		id := fmt.Sprintf("u_full%04d", created)
		name := id
		err = db.Update(ctx, func(tx *store.Tx) error {
			return tx.CreateUser(&parley.User{ID: id, Username: &name, DisplayName: name, Role: parley.RoleProfessional, PasswordHash: hash, CreatedAt: store.Now()})
		})
		if err != nil {
			break
		}
	}
	if err == nil {
		t.Fatal("the database never filled")
	}
	if parley.ErrorCode(err) != parley.EUnavailable || !errors.Is(err, store.ErrFull) {
		t.Fatalf("write on a full database: %v, want store.ErrFull (503)", err)
	}
	if err := db.Ping(ctx); !errors.Is(err, store.ErrFull) {
		t.Fatalf("Ping while full: %v", err)
	}
	count := func() int {
		var users []*parley.User
		if err := db.View(ctx, func(tx *store.Tx) (err error) { users, err = tx.Users("", "", 2000); return err }); err != nil {
			t.Fatal(err)
		}
		return len(users)
	}
	if got := count(); got != created {
		t.Fatalf("%d users readable, %d created before the disk filled", got, created)
	}

	// Room again.
	if _, err := sqlite.WriterPragma(db, "PRAGMA max_page_count = 1073741823"); err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("Ping once there is room: %v", err)
	}
	name := "u_after"
	if err := db.Update(ctx, func(tx *store.Tx) error {
		return tx.CreateUser(&parley.User{ID: name, Username: &name, DisplayName: name, Role: parley.RoleProfessional, PasswordHash: hash, CreatedAt: store.Now()})
	}); err != nil {
		t.Fatalf("write once there is room: %v", err)
	}
	if got := count(); got != created+1 {
		t.Fatalf("%d users after recovery, want %d", got, created+1)
	}
}
