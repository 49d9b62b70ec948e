package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// login starts another session of an existing user and returns its token.
func login(tb testing.TB, n *servertest.Node, username string) string {
	tb.Helper()
	var out struct {
		Token string `json:"token"`
	}
	res := n.Do(tb, "POST", "/api/auth/login", "", map[string]string{"username": username, "password": "password123"}, &out)
	if res.StatusCode != http.StatusOK || out.Token == "" {
		tb.Fatalf("login %s: status %d: %s", username, res.StatusCode, res.Body)
	}
	return out.Token
}

// wantExpired reads the stream's remaining events: the last must be
// session.expired (without an id), and the server must then close it.
func wantExpired(tb testing.TB, s *servertest.Stream, timeout time.Duration) {
	tb.Helper()
	rest := ended(tb, s, timeout)
	if len(rest) == 0 {
		tb.Fatalf("stream closed without session.expired")
	}
	if e := rest[len(rest)-1]; e.Type != parley.EventSessionExpired || e.HasID {
		tb.Fatalf("stream closed after %+v, want session.expired without an id", e)
	}
}

// TestLogoutClosesStreams: logout revokes the one session at once. Its open
// streams get session.expired and are closed, its token gets 401 everywhere
// (REST, stream, poll); the same user's other session and its stream go on.
func TestLogoutClosesStreams(t *testing.T) {
	n := servertest.Start(t)
	u := n.Register(t, "logout", parley.RoleClient)
	other := login(t, n, u.Username)

	a1 := n.OpenStream(t, u.Token, -1)
	a2 := n.OpenStream(t, u.Token, -1)
	b := n.OpenStream(t, other, -1)
	for _, s := range []*servertest.Stream{a1, a2, b} {
		wantReady(t, s.Next(t, 5*time.Second), u.ID, 0)
	}

	res := n.Do(t, "POST", "/api/auth/logout", u.Token, nil, nil)
	if res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: status %d: %s", res.StatusCode, res.Body)
	}
	cleared := false
	for _, c := range res.Cookies() {
		cleared = cleared || (c.Name == "parley_session" && c.Value == "" && c.MaxAge < 0)
	}
	if !cleared {
		t.Fatalf("logout did not clear the session cookie: %v", res.Header["Set-Cookie"])
	}
	wantExpired(t, a1, 5*time.Second)
	wantExpired(t, a2, 5*time.Second)

	for _, path := range []string{"/api/me", "/api/users", "/api/events/poll?wait=0", "/api/events"} {
		wantError(t, n.Do(t, "GET", path, u.Token, nil, nil), http.StatusUnauthorized, "unauthorized")
	}
	wantError(t, n.Do(t, "POST", "/api/auth/logout", u.Token, nil, nil), http.StatusUnauthorized, "unauthorized")
	wantError(t, n.Do(t, "POST", "/api/auth/activity", u.Token, nil, nil), http.StatusUnauthorized, "unauthorized")

	// The other session is untouched: its stream still delivers.
	n.Publish(t, "app.after_logout", nil, u.ID)
	if e := b.Next(t, 5*time.Second); e.ID != 1 || e.Type != "app.after_logout" {
		t.Fatalf("other session's stream got %+v, want event 1", e)
	}
	if res := n.Do(t, "GET", "/api/me", other, nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("other session /api/me: status %d", res.StatusCode)
	}
}

// TestIdleExpiry runs a node with a 1.5 s idle timeout. A session whose only
// traffic is its stream and polls (neither counts as activity) expires: its
// stream gets session.expired and is closed, and its token gets 401. A
// session that posts /api/auth/activity stays live, stream included.
func TestIdleExpiry(t *testing.T) {
	// Short, but long enough that a loaded machine still gets an activity
	// request through in time.
	const idle = 1500 * time.Millisecond
	n := servertest.Start(t, func(c *config.Config) { c.IdleTimeout = idle })
	start := time.Now()
	u := n.Register(t, "idle", parley.RoleClient)
	busy := login(t, n, u.Username)
	poller := login(t, n, u.Username)

	idleStream := n.OpenStream(t, u.Token, -1)
	busyStream := n.OpenStream(t, busy, -1)
	wantReady(t, idleStream.Next(t, 5*time.Second), u.ID, 0)
	wantReady(t, busyStream.Next(t, 5*time.Second), u.ID, 0)

	// Keep one session busy and poll with another for 2 idle timeouts.
	// The idle stream must be closed within that time, not before the
	// timeout.
	expired := make(chan time.Duration, 1)
	go func() {
		for e := range idleStream.Events {
			if e.Type == parley.EventSessionExpired {
				expired <- time.Since(start)
			}
		}
		close(expired)
	}()
	for time.Since(start) < 2*idle {
		if res := n.Do(t, "POST", "/api/auth/activity", busy, nil, nil); res.StatusCode != http.StatusNoContent {
			t.Fatalf("activity: status %d: %s", res.StatusCode, res.Body)
		}
		// Polls keep the connection used but are not activity.
		res := n.Do(t, "GET", "/api/events/poll?wait=0", poller, nil, nil)
		if res.StatusCode != http.StatusOK && time.Since(start) < idle {
			t.Fatalf("poll before the idle timeout: status %d", res.StatusCode)
		}
		time.Sleep(idle / 6)
	}
	select {
	case d, ok := <-expired:
		if !ok {
			t.Fatalf("idle stream closed without session.expired")
		}
		if d < idle-100*time.Millisecond {
			t.Fatalf("session expired after %v, before the idle timeout %v", d, idle)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("idle stream still open %v after its last activity", time.Since(start))
	}
	if _, ok := <-expired; ok {
		t.Fatalf("more than one session.expired")
	}

	wantError(t, n.Do(t, "GET", "/api/me", u.Token, nil, nil), http.StatusUnauthorized, "unauthorized")
	wantError(t, n.Do(t, "GET", "/api/events/poll?wait=0", poller, nil, nil), http.StatusUnauthorized, "unauthorized")
	wantError(t, n.Do(t, "POST", "/api/auth/activity", u.Token, nil, nil), http.StatusUnauthorized, "unauthorized")
	if _, res := n.TryStream(t, u.Token, -1); res == nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("stream with an expired session was not refused with 401")
	}

	// The busy session outlived two idle timeouts and its stream still runs.
	if res := n.Do(t, "GET", "/api/me", busy, nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("active session /api/me: status %d: %s", res.StatusCode, res.Body)
	}
	n.Publish(t, "app.still_here", nil, u.ID)
	if e := busyStream.Next(t, 5*time.Second); e.ID != 1 || e.Type != "app.still_here" {
		t.Fatalf("active session's stream got %+v", e)
	}

	// Any authenticated REST request is activity too, not only the ping.
	rest := login(t, n, u.Username)
	for end := time.Now().Add(2 * idle); time.Now().Before(end); time.Sleep(idle / 6) {
		if res := n.Do(t, "GET", "/api/me", rest, nil, nil); res.StatusCode != http.StatusOK {
			t.Fatalf("session kept alive by GET /api/me: status %d", res.StatusCode)
		}
	}
}

// TestAttachmentFetchIsActivity: fetching a file is an authenticated request
// like any other, so it keeps its session from idling out, while a session
// with no requests at all expires beside it.
func TestAttachmentFetchIsActivity(t *testing.T) {
	const idle = 1500 * time.Millisecond
	p := newConvPair(t, func(c *config.Config) { c.IdleTimeout = idle })
	a := p.mustUpload(t, p.pro, p.conv, "notes.txt", "text/plain", []byte("notes"))
	viewer := p.pro
	viewer.Token = login(t, p.n, p.pro.Username)
	for start := time.Now(); time.Since(start) < 2*idle; time.Sleep(idle / 6) {
		if res := p.fetch(t, viewer, a.ID); res.StatusCode != http.StatusOK {
			t.Fatalf("fetch after %v: %d %s", time.Since(start), res.StatusCode, res.Body)
		}
	}
	wantError(t, p.n.Do(t, "GET", "/api/me", p.pro.Token, nil, nil), http.StatusUnauthorized, "unauthorized")
	if res := p.n.Do(t, "GET", "/api/me", viewer.Token, nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("the session that fetched a file: /api/me %d %s", res.StatusCode, res.Body)
	}
}
