package browsertest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestIdleLogout: with a 3 s idle timeout, a logged-in page left alone goes
// back to the login screen by itself, saying why, and its session cookie no
// longer works.
func TestIdleLogout(t *testing.T) {
	rootBrowser(t)
	const idle = 3 * time.Second
	n := servertest.Start(t, func(c *config.Config) { c.IdleTimeout = idle })
	client := register(t, n.URL, "client", "client")

	cl := newUser(t, "client")
	cl.open(n.URL)
	cl.typeInto("#login-username", client.Username)
	cl.typeInto("#login-password", password)
	clicked := time.Now() // the session's last activity is after this
	cl.click("#login-submit")
	cl.waitMain()
	cookie := cl.cookie(n.URL, "parley_session")
	if cookie == "" {
		t.Fatal("no parley_session cookie after login")
	}
	cl.screenshot("17-logged-in-before-idle")

	// No input from here on.
	cl.waitFor("the login screen after the idle timeout", `document.getElementById("app").dataset.screen === "auth"`, idle+waitLong,
		`document.getElementById("app").dataset.screen`)
	d := time.Since(clicked)
	t.Logf("back on the login screen %v after logging in", d.Round(time.Millisecond))
	if d < idle-200*time.Millisecond {
		t.Fatalf("logged out %v after logging in, before the %v idle timeout had passed", d, idle)
	}
	var notice struct {
		Hidden bool
		Text   string
	}
	cl.eval(`({Hidden: document.getElementById("auth-notice").hidden, Text: document.getElementById("auth-notice").textContent})`, &notice)
	if notice.Hidden || !strings.Contains(notice.Text, "inactivity") {
		t.Errorf("auth notice hidden=%v %q, want a visible notice about inactivity", notice.Hidden, notice.Text)
	}
	cl.waitFor("the login form", `!document.getElementById("login-form").hidden`, waitLong, "")
	cl.screenshot("18-idle-logged-out")

	r := call(t, n.URL, "GET", "/api/me", "cookie:parley_session="+cookie, nil, nil)
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("GET /api/me with the old cookie: %d %s, want 401", r.Status, r.Body)
	}
	r = call(t, n.URL, "GET", "/api/conversations", "cookie:parley_session="+cookie, nil, nil)
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("GET /api/conversations with the old cookie: %d, want 401", r.Status)
	}
}
