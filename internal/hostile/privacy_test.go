package hostile

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestEditAndDeleteLeaveNoTrace: after an edit, the old text is nowhere the
// peer can read it, and after a delete, no text of the message is: not in
// history, the conversation list and its last_message, the conversation,
// the poll and the stream replayed from 0 (message.created and
// message.updated alike), the replies' previews, or search. The reply's
// preview follows the quoted message (the edited text, then "").
func TestEditAndDeleteLeaveNoTrace(t *testing.T) {
	n := servertest.Start(t)
	alice := n.Register(t, "a", parley.RoleClient)
	bob := n.Register(t, "b", parley.RoleProfessional)
	const original, edited = "ORIGINALZEBRA text", "EDITEDZEBRA text"

	var conv struct{ ID string }
	if res := n.Do(t, "POST", "/api/conversations", alice.Token, map[string]any{"professional_id": bob.ID,
		"message": map[string]any{"body": "hello"}}, &conv); res.StatusCode != http.StatusCreated {
		t.Fatalf("open: %d %s", res.StatusCode, res.Body)
	}
	send := func(tok, body, replyTo string) parley.Message {
		t.Helper()
		var m parley.Message
		req := map[string]any{"body": body}
		if replyTo != "" {
			req["reply_to_id"] = replyTo
		}
		if res := n.Do(t, "POST", "/api/conversations/"+conv.ID+"/messages", tok, req, &m); res.StatusCode != http.StatusCreated {
			t.Fatalf("send %q: %d %s", body, res.StatusCode, res.Body)
		}
		return m
	}
	secret := send(alice.Token, original, "")
	reply := send(bob.Token, "a reply", secret.ID)
	if reply.ReplyTo == nil || reply.ReplyTo.Preview != original {
		t.Fatalf("reply_to = %+v", reply.ReplyTo)
	}
	// The quoted message is the newest one's reply: last_message carries a preview.

	places := func() map[string]string {
		out := map[string]string{}
		get := func(name, path string) {
			res := n.Do(t, "GET", path, bob.Token, nil, nil)
			if res.StatusCode != 200 {
				t.Fatalf("%s: %d %s", name, res.StatusCode, res.Body)
			}
			out[name] = string(res.Body)
		}
		get("history", "/api/conversations/"+conv.ID+"/messages?limit=200")
		get("conversations", "/api/conversations")
		get("conversation", "/api/conversations/"+conv.ID)
		get("poll from 0", "/api/events/poll?after=0&wait=0")
		get("search (original)", "/api/search?q="+url.QueryEscape("ORIGINALZEBRA"))
		get("search (edited)", "/api/search?q="+url.QueryEscape("EDITEDZEBRA"))
		out["stream replay from 0"] = string(n.Replay(t, bob.Token))
		return out
	}
	noTrace := func(when, text string, p map[string]string) {
		t.Helper()
		for name, b := range p {
			if i := strings.Index(b, text); i >= 0 {
				t.Errorf("%s: %s still holds %q: …%s…", when, name, text, b[max(0, i-100):min(len(b), i+40)])
			}
		}
	}
	if before := places(); !strings.Contains(before["poll from 0"], original) || !strings.Contains(before["search (original)"], original) {
		t.Fatalf("the test reads the wrong places: the text is not there before the edit: %q", before["poll from 0"])
	}

	if res := n.Do(t, "PATCH", "/api/messages/"+secret.ID, alice.Token, map[string]any{"body": edited}, nil); res.StatusCode != 200 {
		t.Fatalf("edit: %d %s", res.StatusCode, res.Body)
	}
	afterEdit := places()
	noTrace("after the edit", "ORIGINALZEBRA", afterEdit)
	if !strings.Contains(afterEdit["history"], `"preview":"`+edited+`"`) {
		t.Errorf("the reply's preview does not follow the edit: %s", afterEdit["history"])
	}

	if res := n.Do(t, "DELETE", "/api/messages/"+secret.ID, alice.Token, nil, nil); res.StatusCode != 200 && res.StatusCode != 204 {
		t.Fatalf("delete: %d %s", res.StatusCode, res.Body)
	}
	afterDelete := places()
	noTrace("after the delete", "ZEBRA", afterDelete)
	var hist struct{ Messages []parley.Message }
	n.Do(t, "GET", "/api/conversations/"+conv.ID+"/messages?limit=200", bob.Token, nil, &hist)
	for _, m := range hist.Messages {
		if m.ID == reply.ID && (m.ReplyTo == nil || m.ReplyTo.ID != secret.ID || m.ReplyTo.Preview != "") {
			t.Errorf("the reply to a deleted message: reply_to = %+v, want its id with preview \"\"", m.ReplyTo)
		}
		if m.ID == secret.ID && (!m.Deleted || m.Body != "") {
			t.Errorf("the deleted message reads %+v", m)
		}
	}
	// The events keep their places in the log: created, updated, deleted.
	if got := strings.Count(afterDelete["poll from 0"], secret.ID); got < 3 {
		t.Errorf("the poll from 0 names the message %d times, want its three events", got)
	}
}

// TestUsersVisibility: GET /api/users and /api/users/{id} show the
// professionals (the directory), the people the caller shares a
// conversation with, and the caller; online and last_seen only for those
// who share a conversation with the caller. Anyone else is not found.
func TestUsersVisibility(t *testing.T) {
	n := servertest.Start(t)
	alice := n.Register(t, "va", parley.RoleClient)
	stranger := n.Register(t, "vs", parley.RoleClient)
	pro := n.Register(t, "vp", parley.RoleProfessional)
	other := n.Register(t, "vq", parley.RoleProfessional)
	if res := n.Do(t, "POST", "/api/conversations", alice.Token, map[string]any{"professional_id": pro.ID,
		"message": map[string]any{"body": "hello"}}, nil); res.StatusCode != http.StatusCreated {
		t.Fatalf("open: %d %s", res.StatusCode, res.Body)
	}
	// Everyone online, so that a leak would show.
	for _, u := range []servertest.User{alice, stranger, pro, other} {
		s := n.OpenStream(t, u.Token, -1)
		s.NextOf(t, "ready", 5*time.Second)
		defer s.Close()
	}

	list := func(viewer servertest.User, query string) map[string]parley.User {
		t.Helper()
		var out struct{ Users []parley.User }
		if res := n.Do(t, "GET", "/api/users?limit=500"+query, viewer.Token, nil, &out); res.StatusCode != 200 {
			t.Fatalf("list: %d %s", res.StatusCode, res.Body)
		}
		m := map[string]parley.User{}
		for _, u := range out.Users {
			m[u.ID] = u
		}
		return m
	}
	seen := func(u parley.User) bool { return u.Online || u.LastSeen != nil }

	for _, c := range []struct {
		viewer       servertest.User
		query        string
		visible      []servertest.User
		withPresence []servertest.User
		hidden       []servertest.User
	}{
		{alice, "", []servertest.User{alice, pro, other}, []servertest.User{alice, pro}, []servertest.User{stranger}},
		{alice, "&role=professional", []servertest.User{pro, other}, []servertest.User{pro}, []servertest.User{stranger, alice}},
		{alice, "&role=client", []servertest.User{alice}, []servertest.User{alice}, []servertest.User{stranger, pro}},
		{pro, "", []servertest.User{alice, pro, other}, []servertest.User{alice, pro}, []servertest.User{stranger}},
		{pro, "&role=client", []servertest.User{alice}, []servertest.User{alice}, []servertest.User{stranger}},
		{stranger, "", []servertest.User{stranger, pro, other}, []servertest.User{stranger}, []servertest.User{alice}},
	} {
		got := list(c.viewer, c.query)
		for _, u := range c.visible {
			if _, ok := got[u.ID]; !ok {
				t.Errorf("%s%s: %s missing", c.viewer.Username, c.query, u.Username)
			}
		}
		for _, u := range c.hidden {
			if _, ok := got[u.ID]; ok {
				t.Errorf("%s%s: %s listed", c.viewer.Username, c.query, u.Username)
			}
		}
		for id, u := range got {
			want := false
			for _, w := range c.withPresence {
				want = want || w.ID == id
			}
			if seen(u) != want {
				t.Errorf("%s%s: %s online=%v last_seen=%v, want presence shown %v", c.viewer.Username, c.query, u.DisplayName, u.Online, u.LastSeen, want)
			}
		}
	}

	one := func(viewer, u servertest.User) (*servertest.Response, parley.User) {
		var got parley.User
		res := n.Do(t, "GET", "/api/users/"+u.ID, viewer.Token, nil, &got)
		return res, got
	}
	if res, u := one(alice, pro); res.StatusCode != 200 || !u.Online {
		t.Errorf("alice reads her professional: %d online=%v", res.StatusCode, u.Online)
	}
	if res, u := one(alice, other); res.StatusCode != 200 || seen(u) {
		t.Errorf("alice reads another professional: %d online=%v last_seen=%v", res.StatusCode, u.Online, u.LastSeen)
	}
	wantError(t, "a stranger read by alice", n.Do(t, "GET", "/api/users/"+stranger.ID, alice.Token, nil, nil), http.StatusNotFound, parley.ENotFound)
	wantError(t, "alice read by a stranger", n.Do(t, "GET", "/api/users/"+alice.ID, stranger.Token, nil, nil), http.StatusNotFound, parley.ENotFound)
	if res, u := one(pro, alice); res.StatusCode != 200 || !u.Online {
		t.Errorf("the professional reads their client: %d online=%v", res.StatusCode, u.Online)
	}
}
