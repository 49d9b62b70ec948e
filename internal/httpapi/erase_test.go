package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/servertest"
)

// TestEraseUser: DELETE /api/server/users/{external_id} really removes. The
// erased user's streams get session.expired and their token stops working;
// the peer gets message.deleted for each of their messages; and then
// everything the peer can read — history, the conversation list and its
// last_message, the stream replayed from 0, the poll from 0, reply
// previews in the peer's own messages — is searched byte for byte for the
// text the erased user wrote, their name and their external id, which must
// be nowhere.
func TestEraseUser(t *testing.T) {
	n := appNode(t, nil, nil)
	const secret = "ZEBRA-SECRET" // every text the erased user writes holds it
	aliceSub, bobSub := "alice|"+unique("e"), "bob|"+unique("e")
	if res := n.Do(t, "PUT", extPath(bobSub), servertest.APIKey, map[string]any{"role": "professional", "display_name": "Bob"}, nil); res.StatusCode != http.StatusCreated {
		t.Fatalf("put bob: %d %s", res.StatusCode, res.Body)
	}
	alice := servertest.SignHS(t, "HS256", []byte(servertest.AppSecret), claims(aliceSub, map[string]any{"name": "Alice"}))
	var bobTok struct{ Token string }
	if res := n.Do(t, "POST", "/api/server/tokens", servertest.APIKey, map[string]any{"external_id": bobSub}, &bobTok); res.StatusCode != http.StatusCreated {
		t.Fatalf("mint bob: %d %s", res.StatusCode, res.Body)
	}
	bob := bobTok.Token

	aliceStream := n.OpenStream(t, alice, -1)
	aliceStream.NextOf(t, "ready", 5*time.Second)
	bobStream := n.OpenStream(t, bob, -1)
	bobStream.NextOf(t, "ready", 5*time.Second)

	var conv struct{ ID string }
	if res := n.Do(t, "POST", "/api/conversations", alice, map[string]any{"professional_external_id": bobSub, "subject": "tax",
		"message": map[string]any{"body": secret + " one: my account number"}}, &conv); res.StatusCode != http.StatusCreated {
		t.Fatalf("open: %d %s", res.StatusCode, res.Body)
	}
	send := func(tok, body, replyTo string) string {
		t.Helper()
		var m struct{ ID string }
		req := map[string]any{"body": body}
		if replyTo != "" {
			req["reply_to_id"] = replyTo
		}
		if res := n.Do(t, "POST", "/api/conversations/"+conv.ID+"/messages", tok, req, &m); res.StatusCode != http.StatusCreated {
			t.Fatalf("send %q: %d %s", body, res.StatusCode, res.Body)
		}
		return m.ID
	}
	a2 := send(alice, secret+" two: my address", "")
	send(bob, "noted, thanks", a2) // quotes alice: a reply preview of her text
	a3 := send(alice, secret+" three", "")
	if res := n.Do(t, "PATCH", "/api/messages/"+a3, alice, map[string]any{"body": secret + " three, edited"}, nil); res.StatusCode != 200 {
		t.Fatalf("edit: %d %s", res.StatusCode, res.Body)
	}
	if res := n.Do(t, "POST", "/api/server/conversations/"+conv.ID+"/messages", servertest.APIKey, map[string]any{"body": "Appointment confirmed"}, nil); res.StatusCode != http.StatusCreated {
		t.Fatalf("system message: %d %s", res.StatusCode, res.Body)
	}
	last := send(bob, "see you then", a3) // the newest message quotes alice too
	_ = last

	if res := n.Do(t, "DELETE", extPath(aliceSub), servertest.APIKey, nil, nil); res.StatusCode != http.StatusNoContent {
		t.Fatalf("erase: %d %s", res.StatusCode, res.Body)
	}
	aliceStream.NextOf(t, "session.expired", 5*time.Second)
	wantError(t, n.Do(t, "GET", "/api/me", alice, nil, nil), http.StatusUnauthorized, "unauthorized")
	if res := n.Do(t, "GET", extPath(aliceSub), servertest.APIKey, nil, nil); res.StatusCode != http.StatusNotFound {
		t.Fatalf("the erased user is still there: %d %s", res.StatusCode, res.Body)
	}
	for range 3 {
		var m struct {
			Deleted bool   `json:"deleted"`
			Body    string `json:"body"`
		}
		bobStream.NextOf(t, "message.deleted", 5*time.Second).Decode(t, &m)
		if !m.Deleted || m.Body != "" {
			t.Fatalf("message.deleted = %+v", m)
		}
	}

	// Everything bob can read, as raw bytes.
	places := map[string][]byte{}
	get := func(name, path string) {
		res := n.Do(t, "GET", path, bob, nil, nil)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d %s", name, res.StatusCode, res.Body)
		}
		places[name] = res.Body
	}
	get("history", "/api/conversations/"+conv.ID+"/messages?limit=200")
	get("conversations (last_message)", "/api/conversations")
	get("conversation", "/api/conversations/"+conv.ID)
	get("poll from 0", "/api/events/poll?after=0&wait=0")
	places["stream replay from 0"] = n.Replay(t, bob)
	if !strings.Contains(string(places["history"]), `"kind":"system"`) || !strings.Contains(string(places["history"]), "noted, thanks") {
		t.Fatalf("history lost what was not the erased user's: %s", places["history"])
	}
	var c struct {
		Client struct {
			DisplayName string  `json:"display_name"`
			ExternalID  *string `json:"external_id"`
		} `json:"client"`
	}
	_ = json.Unmarshal(places["conversation"], &c)
	if c.Client.DisplayName != "Deleted user" || c.Client.ExternalID != nil {
		t.Errorf("the erased client is shown as %+v", c.Client)
	}
	// Nor her name or her app's id for her: bob's log keeps the
	// conversation.created he got, with the view of her he had then.
	for _, name := range []string{"history", "conversations (last_message)", "conversation", "stream replay from 0", "poll from 0"} {
		b := places[name]
		for _, what := range []string{secret, aliceSub, `"Alice"`} {
			if i := strings.Index(string(b), what); i >= 0 {
				t.Errorf("%s still holds the erased user's %q: …%s…", name, what, b[max(0, i-80):min(len(b), i+60)])
			}
		}
	}
	if !strings.Contains(string(places["stream replay from 0"]), "conversation.created") {
		t.Errorf("bob's replay lost his conversation.created: %s", places["stream replay from 0"])
	}
	// A new token with the same sub is a new user, with none of the past.
	again := servertest.SignHS(t, "HS256", []byte(servertest.AppSecret), claims(aliceSub, nil))
	var convs struct {
		Conversations []json.RawMessage `json:"conversations"`
	}
	if res := n.Do(t, "GET", "/api/conversations", again, nil, &convs); res.StatusCode != 200 || len(convs.Conversations) != 0 {
		t.Fatalf("the sub's new user sees %d conversations (%d)", len(convs.Conversations), res.StatusCode)
	}
	// Bob's conversation goes on; what he sends reaches only him.
	send(bob, "anyone there?", "")
}
