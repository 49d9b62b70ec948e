package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
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
