package auth

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store/sqlite"
)

func TestTokenCache(t *testing.T) {
	c := newTokenCache(3)
	now := time.Now()
	exp := now.Add(time.Minute)
	c.put("tok", tokenClaims{sessionID: "s", subject: "u", expires: exp})
	if tc, ok := c.get("tok", now); !ok || tc.sessionID != "s" || tc.subject != "u" {
		t.Fatalf("get = %+v, %v", tc, ok)
	}
	if _, ok := c.get("tok ", now); ok {
		t.Fatal("another string was a hit")
	}
	// The parser's leeway (valid before exp+leeway), and not a moment more.
	if _, ok := c.get("tok", exp.Add(tokenLeeway-time.Nanosecond)); !ok {
		t.Fatal("refused within the leeway")
	}
	if _, ok := c.get("tok", exp.Add(tokenLeeway)); ok {
		t.Fatal("served at expiry plus leeway")
	}
	if len(c.entries) != 0 {
		t.Fatal("an expired token was kept")
	}
	for i := range 5 {
		c.put(fmt.Sprint("t", i), tokenClaims{expires: exp})
	}
	if len(c.entries) != 3 {
		t.Fatalf("%d entries, want the bound 3", len(c.entries))
	}
	if _, ok := c.get("t4", now); !ok {
		t.Fatal("the newest entry was evicted")
	}
}

// A stream's or a poll's token (no activity) is verified and not kept; a
// request's is kept, and then serves the others too.
func TestTokensKeptForRequests(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "parley.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := New(db, []byte("tokens-test-secret-tokens-test-secret"), time.Hour, time.Hour, 4)
	g, err := s.Register(ctx, Registration{Username: "alice", Password: "password123", Role: parley.RoleClient})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, g.Token, false); err != nil {
		t.Fatal(err)
	}
	if n := len(s.tokens.entries); n != 0 {
		t.Fatalf("a passive authentication kept %d tokens", n)
	}
	for _, activity := range []bool{true, false} {
		if p, err := s.Authenticate(ctx, g.Token, activity); err != nil || p.User.ID != g.User.ID {
			t.Fatalf("authenticate (activity %v): %v", activity, err)
		}
	}
	if _, ok := s.tokens.get(g.Token, time.Now()); !ok || len(s.tokens.entries) != 1 {
		t.Fatalf("a request's token was not kept (%d entries)", len(s.tokens.entries))
	}
}
