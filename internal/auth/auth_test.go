package auth_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/store/sqlite"
)

const secret = "auth-test-secret-auth-test-secret"

// mustOpen returns an empty SQLite store that lives as long as the test.
func mustOpen(tb testing.TB) *sqlite.DB {
	tb.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(tb.TempDir(), "parley.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

func mustRegister(tb testing.TB, s *auth.Service, username string) *auth.Grant {
	tb.Helper()
	g, err := s.Register(context.Background(), auth.Registration{Username: username, Password: "password123", Role: parley.RoleClient})
	if err != nil {
		tb.Fatalf("register %s: %v", username, err)
	}
	return g
}

// FuzzAuthenticate feeds arbitrary strings to Authenticate. The only input
// that may succeed is the live session's token itself (the fuzzer can bend
// the signature's encoding but not what is signed); everything else, and in
// particular tokens of revoked or expired sessions in any disguise, is
// refused with unauthorized and nothing else.
func FuzzAuthenticate(f *testing.F) {
	ctx := context.Background()
	db := mustOpen(f)
	s := auth.New(db, []byte(secret), time.Hour, time.Hour, 4)
	db.OnChange(s.CacheSessions(100)) // as a node on the embedded store runs
	live := mustRegister(f, s, "alice")
	revoked := mustRegister(f, s, "bob")
	p, err := s.Authenticate(ctx, revoked.Token, false)
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Logout(ctx, p.Session.ID); err != nil {
		f.Fatal(err)
	}
	expired := mustRegister(f, auth.New(db, []byte(secret), time.Hour, -time.Minute, 4), "carol")
	other := mustRegister(f, auth.New(db, []byte("another-secret-another-secret-xx"), time.Hour, time.Hour, 4), "dave")
	livePrincipal, err := s.Authenticate(ctx, live.Token, false)
	if err != nil || livePrincipal.User.Name() != "alice" {
		f.Fatalf("the live token does not work: %v", err)
	}
	signed := live.Token[:strings.LastIndexByte(live.Token, '.')]

	for _, tok := range []string{live.Token, revoked.Token, expired.Token, other.Token, "", "x", "a.b.c", "..", "...",
		signed + ".", signed, live.Token + "=", strings.ToUpper(live.Token), " " + live.Token,
		"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + strings.Split(live.Token, ".")[1] + ".",
		"eyJhbGciOiJIUzI1NiJ9.e30.", "eyJhbGciOiJIUzI1NiJ9.bnVsbA.x", "\x00\xff", "Bearer " + live.Token} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := s.Authenticate(ctx, token, false)
		if err != nil {
			if code := parley.ErrorCode(err); code != parley.EUnauthorized {
				t.Fatalf("Authenticate(%q) failed with %q (%v), want unauthorized", token, code, err)
			}
			if p != nil {
				t.Fatalf("Authenticate(%q) returned a principal with its error", token)
			}
			return
		}
		if p == nil || p.Session.ID != livePrincipal.Session.ID || p.User.ID != livePrincipal.User.ID {
			t.Fatalf("Authenticate(%q) let in %+v", token, p)
		}
		if !strings.HasPrefix(token, signed+".") {
			t.Fatalf("Authenticate(%q) succeeded for claims other than the ones signed", token)
		}
	})
}
