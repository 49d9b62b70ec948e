package browsertest

import (
	"net/http"
	"testing"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestRegistrationClosedPage: with registration closed the login page
// shows no way to register and says where accounts come from.
func TestRegistrationClosedPage(t *testing.T) {
	rootBrowser(t)
	n := servertest.Start(t, func(c *config.Config) { c.Registration = config.RegistrationClosed })
	tb := newUser(t, "visitor")
	tb.open(n.URL)
	tb.waitFor("the closed-registration note", `!document.getElementById("registration-closed").hidden && document.getElementById("register-switch").hidden`,
		waitLong, `document.getElementById("auth-view").innerText`)
	tb.screenshot("registration-closed")
}

// TestSystemMessageShown: a message the app's backend posts (kind system,
// no sender) appears in the conversation marked as such, from "System".
func TestSystemMessageShown(t *testing.T) {
	rootBrowser(t)
	n := servertest.Start(t)
	pro := register(t, n.URL, "pro", "professional")
	cl := register(t, n.URL, "client", "client")
	var conv struct{ ID string }
	if res := n.Do(t, "POST", "/api/conversations", cl.Token, map[string]any{"professional_id": pro.ID,
		"message": map[string]any{"body": "hello"}}, &conv); res.StatusCode != http.StatusCreated {
		t.Fatalf("open: %d %s", res.StatusCode, res.Body)
	}
	if res := n.Do(t, "POST", "/api/server/conversations/"+conv.ID+"/messages", servertest.APIKey,
		map[string]any{"body": "Your appointment is confirmed."}, nil); res.StatusCode != http.StatusCreated {
		t.Fatalf("system message: %d %s", res.StatusCode, res.Body)
	}
	tb := inConversation(t, "client", n.URL, cl.Username, conv.ID)
	sys := `document.querySelector('[data-testid="message"][data-kind="system"]')`
	tb.waitFor("the system message", sys+` && `+sys+`.querySelector(".sender").textContent === "System" && `+
		sys+`.querySelector('[data-testid="message-body"]').textContent === "Your appointment is confirmed." && `+
		sys+`.classList.contains("system") && !`+sys+`.classList.contains("own")`,
		waitLong, `document.getElementById("message-list").innerHTML`)
	tb.screenshot("system-message")
}
