package auth_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/store"
)

// cached is a Service on a real SQLite store with the session cache on, as
// a node on the embedded store runs.
func cached(t *testing.T) (*auth.Service, func(fn func(*store.Tx) error)) {
	t.Helper()
	db := mustOpen(t)
	s := auth.New(db, []byte(secret), time.Hour, time.Hour, 4)
	db.OnChange(s.CacheSessions(100))
	update := func(fn func(*store.Tx) error) {
		t.Helper()
		if err := db.Update(context.Background(), fn); err != nil {
			t.Fatal(err)
		}
	}
	return s, update
}

func mustAuth(t *testing.T, s *auth.Service, token string) *auth.Principal {
	t.Helper()
	p, err := s.Authenticate(context.Background(), token, false)
	if err != nil {
		t.Fatalf("authenticate: %v", err)
	}
	return p
}

func mustRefuse(t *testing.T, s *auth.Service, token, after string) {
	t.Helper()
	if _, err := s.Authenticate(context.Background(), token, false); parley.ErrorCode(err) != parley.EUnauthorized {
		t.Fatalf("after %s: authenticate = %v, want unauthorized", after, err)
	}
}

// TestSessionCacheForgetsChanges: every change to a session or a user is
// seen by the next request, though the one before it was answered from the
// cache.
func TestSessionCacheForgetsChanges(t *testing.T) {
	ctx := context.Background()
	s, update := cached(t)

	alice := mustRegister(t, s, "alice")
	p := mustAuth(t, s, alice.Token)
	p.User.DisplayName = "changed by a handler" // what a caller does to its copy stays there
	if got := mustAuth(t, s, alice.Token).User.DisplayName; got != "alice" {
		t.Fatalf("display name from the cache %q, want alice", got)
	}
	name := "Alice A."
	if _, err := s.UpdateProfile(ctx, p.User.ID, auth.ProfileUpdate{DisplayName: &name}); err != nil {
		t.Fatal(err)
	}
	if got := mustAuth(t, s, alice.Token).User.DisplayName; got != name {
		t.Fatalf("after a profile update: display name %q, want %q", got, name)
	}
	update(func(tx *store.Tx) error { return tx.UpdateUser(p.User.ID, name, parley.RoleProfessional) })
	if got := mustAuth(t, s, alice.Token).User.Role; got != parley.RoleProfessional {
		t.Fatalf("after a role change: role %q", got)
	}

	before := mustAuth(t, s, alice.Token).Session.LastActive
	time.Sleep(2 * time.Millisecond)
	if err := s.Touch(ctx, p.Session.ID); err != nil {
		t.Fatal(err)
	}
	if after := mustAuth(t, s, alice.Token).Session.LastActive; !after.After(before) {
		t.Fatalf("after a touch: last active %v, was %v", after, before)
	}

	seen := time.Now()
	update(func(tx *store.Tx) error { return tx.SetLastSeen(p.User.ID, seen) })
	if ls := mustAuth(t, s, alice.Token).User.LastSeen; ls == nil || ls.Time.UnixMicro() != seen.UnixMicro() {
		t.Fatalf("after last_seen was set: %v, want %v", ls, seen)
	}

	if err := s.Logout(ctx, p.Session.ID); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, s, alice.Token, "logout")

	// Every session of a user, through the user.
	bob := mustRegister(t, s, "bob")
	bob2, err := s.Login(ctx, "bob", "password123")
	if err != nil {
		t.Fatal(err)
	}
	mustAuth(t, s, bob.Token)
	bobID := mustAuth(t, s, bob2.Token).User.ID
	if _, err := s.LogoutUser(ctx, bobID); err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, s, bob.Token, "logging out every session of the user")
	mustRefuse(t, s, bob2.Token, "logging out every session of the user")

	carol := mustRegister(t, s, "carol")
	carolID := mustAuth(t, s, carol.Token).User.ID
	update(func(tx *store.Tx) error { return tx.MarkErased(carolID, time.Now()) })
	mustRefuse(t, s, carol.Token, "the account was marked erased")
}

// TestSessionCacheServes: a session read once is answered from memory. The
// store is closed under it, so a request that read it would fail.
func TestSessionCacheServes(t *testing.T) {
	db := mustOpen(t)
	s := auth.New(db, []byte(secret), time.Hour, time.Hour, 4)
	db.OnChange(s.CacheSessions(100))
	warm, cold := mustRegister(t, s, "warm"), mustRegister(t, s, "cold")
	mustAuth(t, s, warm.Token)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if p := mustAuth(t, s, warm.Token); p.User.Name() != "warm" {
		t.Fatalf("from the cache: user %q", p.User.Name())
	}
	if _, err := s.Authenticate(context.Background(), cold.Token, false); err == nil {
		t.Fatal("a session never read was answered with the store closed")
	}
}

// TestSessionCacheLogoutRace: once Logout returns, no request that starts
// afterwards is let in, whatever loads of the session ran alongside it.
func TestSessionCacheLogoutRace(t *testing.T) {
	ctx := context.Background()
	s, _ := cached(t)
	for round := range 20 {
		g := mustRegister(t, s, "racer"+string(rune('a'+round)))
		sid := mustAuth(t, s, g.Token).Session.ID
		var out atomic.Bool
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 200 {
					wasOut := out.Load()
					_, err := s.Authenticate(ctx, g.Token, false)
					if wasOut && err == nil {
						errs <- errors.New("a request that began after logout was let in")
						return
					}
					if err != nil && parley.ErrorCode(err) != parley.EUnauthorized {
						errs <- err
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(round%5) * 100 * time.Microsecond)
		if err := s.Logout(ctx, sid); err != nil {
			t.Fatal(err)
		}
		out.Store(true)
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		mustRefuse(t, s, g.Token, "logout")
	}
}
