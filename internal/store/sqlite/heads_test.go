package sqlite_test

import (
	"context"
	"errors"
	"testing"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/sqlite"
)

// TestCreatedUserHeadCached: once a user's creation commits, the writer
// knows their head (0), so the first event to them reads none. The test
// moves the stored head behind the cache's back: an append that read it
// would take id 42.
func TestCreatedUserHeadCached(t *testing.T) {
	db := mustOpenDB(t, nil)
	user := mustCreateUsers(t, db, 1)[0]
	if err := sqlite.WriterExec(db, `UPDATE event_heads SET last_id = 41 WHERE user_id = ?`, user); err != nil {
		t.Fatal(err)
	}
	got, err := appendEvent(db, user, "first")
	if err != nil {
		t.Fatal(err)
	}
	if got[0].ID != 1 {
		t.Fatalf("the first event to a new user took id %d, want 1 from the cached head", got[0].ID)
	}
}

// TestCreatedUserRolledBackNotCached: a creation that rolls back leaves no
// head in the cache, so an event to that id is refused as to an unknown
// user, alone or sharing a commit with a creation that succeeds.
func TestCreatedUserRolledBackNotCached(t *testing.T) {
	db := mustOpenDB(t, nil)
	ctx := context.Background()
	boom := errors.New("boom")
	create := func(id string, fail bool) error {
		return db.Update(ctx, func(tx *store.Tx) error {
			if err := tx.CreateUser(newUser(id)); err != nil {
				return err
			}
			if fail {
				return boom
			}
			return nil
		})
	}
	gone, kept := parley.NewID("u"), parley.NewID("u")
	errs := make(chan error, 2)
	go func() { errs <- create(gone, true) }()
	go func() { errs <- create(kept, false) }()
	for range 2 {
		if err := <-errs; err != nil && !errors.Is(err, boom) {
			t.Fatal(err)
		}
	}
	if _, err := appendEvent(db, kept, "x"); err != nil {
		t.Fatalf("append to the created user: %v", err)
	}
	if _, err := appendEvent(db, gone, "x"); parley.ErrorCode(err) != parley.ENotFound {
		t.Fatalf("append to a user whose creation rolled back: %v, want not found", err)
	}
}

// TestCreatedAndErasedNotCached: a user created and whose log is removed (an
// erasure) in one transaction leaves no head in the cache.
func TestCreatedAndErasedNotCached(t *testing.T) {
	db := mustOpenDB(t, nil)
	ctx := context.Background()
	id := parley.NewID("u")
	err := db.Update(ctx, func(tx *store.Tx) error {
		if err := tx.CreateUser(newUser(id)); err != nil {
			return err
		}
		return tx.RemoveLog(id)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := appendEvent(db, id, "x"); parley.ErrorCode(err) != parley.ENotFound {
		t.Fatalf("append to a user created and erased: %v, want not found", err)
	}
}

// newUser is a client with the given id, for CreateUser.
func newUser(id string) *parley.User {
	return &parley.User{ID: id, Username: parley.Ptr(id), DisplayName: "u", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: store.Now()}
}

// appendEvent appends one event to the user's log in a request of its own.
func appendEvent(db *sqlite.DB, user, m string) (got []parley.Event, err error) {
	err = db.Update(context.Background(), func(tx *store.Tx) error {
		got, err = tx.Append(ev(user, m))
		return err
	})
	return got, err
}
