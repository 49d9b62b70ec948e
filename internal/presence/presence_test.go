package presence_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

const grace = 300 * time.Millisecond

type presenceEvent struct {
	UserID   string       `json:"user_id"`
	Online   bool         `json:"online"`
	LastSeen *parley.Time `json:"last_seen"`
}

func nextPresence(t *testing.T, s *servertest.Stream, timeout time.Duration) (presenceEvent, time.Time) {
	t.Helper()
	e := s.NextOf(t, parley.EventPresence, timeout)
	if e.HasID {
		t.Fatalf("presence event has an id")
	}
	var p presenceEvent
	e.Decode(t, &p)
	return p, time.Now()
}

// noPresence fails if a presence event arrives on s within d.
func noPresence(t *testing.T, s *servertest.Stream, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case e, ok := <-s.Events:
			if !ok {
				t.Fatalf("stream ended")
			}
			if e.Type == parley.EventPresence {
				t.Fatalf("unexpected presence: %s", e.Data)
			}
		case <-deadline:
			return
		}
	}
}

func getUser(t *testing.T, n *servertest.Node, token, id string) parley.User {
	t.Helper()
	var u parley.User
	if res := n.Do(t, "GET", "/api/users/"+id, token, nil, &u); res.StatusCode != http.StatusOK {
		t.Fatalf("get user: %d %s", res.StatusCode, res.Body)
	}
	return u
}

func TestPresence(t *testing.T) {
	t.Parallel()
	n := servertest.Start(t, func(c *config.Config) { c.PresenceGrace = grace })
	client := n.Register(t, "c", parley.RoleClient)
	pro := n.Register(t, "p", parley.RoleProfessional)
	stranger := n.Register(t, "s", parley.RoleClient)
	var conv parley.Conversation
	if res := n.Do(t, "POST", "/api/conversations", client.Token, map[string]any{"professional_id": pro.ID, "message": map[string]any{"body": "hi"}}, &conv); res.StatusCode != 201 {
		t.Fatalf("open: %d %s", res.StatusCode, res.Body)
	}
	if u := getUser(t, n, pro.Token, client.ID); u.Online || u.LastSeen != nil {
		t.Fatalf("never connected: %+v", u)
	}
	proStream := n.OpenStream(t, pro.Token, -1)
	strangerStream := n.OpenStream(t, stranger.Token, -1)

	// First stream: online, to the contact only.
	s1 := n.OpenStream(t, client.Token, -1)
	p, _ := nextPresence(t, proStream, 5*time.Second)
	if p.UserID != client.ID || !p.Online {
		t.Fatalf("presence = %+v", p)
	}
	if u := getUser(t, n, pro.Token, client.ID); !u.Online || u.LastSeen == nil {
		t.Fatalf("while streaming: %+v", u)
	}
	var c parley.Conversation
	n.Do(t, "GET", "/api/conversations/"+conv.ID, pro.Token, nil, &c)
	if !c.Client.Online || !c.Professional.Online {
		t.Fatalf("conversation users: client %v, professional %v", c.Client.Online, c.Professional.Online)
	}

	// A second stream, and a reconnect within the grace period: no event.
	s2 := n.OpenStream(t, client.Token, -1)
	s1.Close()
	s2.Close()
	time.Sleep(50 * time.Millisecond)
	s3 := n.OpenStream(t, client.Token, -1)
	noPresence(t, proStream, 2*grace)
	if u := getUser(t, n, pro.Token, client.ID); !u.Online {
		t.Fatalf("offline after a quick reconnect")
	}

	// Gone for good: offline once the grace period has passed, with last_seen.
	s3.Close()
	closed := time.Now()
	p, at := nextPresence(t, proStream, 5*time.Second)
	if p.UserID != client.ID || p.Online || p.LastSeen == nil {
		t.Fatalf("offline presence = %+v", p)
	}
	if waited := at.Sub(closed); waited < grace-20*time.Millisecond {
		t.Fatalf("offline after %v, before the %v grace", waited, grace)
	}
	if d := p.LastSeen.Sub(closed); d < -time.Second || d > time.Second {
		t.Fatalf("last_seen %v is not the close time %v", p.LastSeen, closed)
	}
	u := getUser(t, n, pro.Token, client.ID)
	if u.Online || u.LastSeen == nil || !u.LastSeen.Equal(p.LastSeen.Time) {
		t.Fatalf("after offline: %+v, event last_seen %v", u, p.LastSeen)
	}
	eventuallyStored(t, n, pro, client.ID, p.LastSeen.Time)

	// A poll counts as being online.
	if res := n.Do(t, "GET", "/api/events/poll?wait=0", client.Token, nil, nil); res.StatusCode != 200 {
		t.Fatalf("poll: %d", res.StatusCode)
	}
	p, _ = nextPresence(t, proStream, 5*time.Second)
	if !p.Online || p.UserID != client.ID {
		t.Fatalf("after a poll: %+v", p)
	}
	if u := getUser(t, n, pro.Token, client.ID); !u.Online {
		t.Fatalf("offline right after a poll")
	}

	// The stranger shares no conversation and heard nothing.
	noPresence(t, strangerStream, 50*time.Millisecond)
}

// eventuallyStored waits until the user's last_seen reads as want once the
// tracker has written it to the store and forgotten the user.
func eventuallyStored(t *testing.T, n *servertest.Node, viewer servertest.User, id string, want time.Time) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if u := getUser(t, n, viewer.Token, id); u.LastSeen != nil && u.LastSeen.Equal(want) && !u.Online {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("last_seen %v not kept", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A node that shuts down stores last_seen for the users still online on it.
func TestLastSeenStoredAtShutdown(t *testing.T) {
	t.Parallel()
	c := servertest.Config(t)
	c.PresenceGrace = time.Hour // only the shutdown can store it
	n := servertest.StartConfig(t, c)
	client := n.Register(t, "c", parley.RoleClient)
	n.OpenStream(t, client.Token, -1)
	before := time.Now()
	n.Stop()
	n2 := servertest.StartConfig(t, c)
	var u parley.User
	if res := n2.Do(t, "GET", "/api/me", client.Token, nil, &u); res.StatusCode != 200 {
		t.Fatalf("me: %d %s", res.StatusCode, res.Body)
	}
	if u.LastSeen == nil || u.LastSeen.Before(before.Add(-time.Second)) {
		t.Fatalf("last_seen after restart = %v", u.LastSeen)
	}
}

// A poll made while the user holds a stream (the web app checks its stream
// and reads history that way) does not keep them online once the stream
// closes: they go offline after the grace period, not after PollWindow.
func TestPollWhileStreamingKeepsOnlyTheGrace(t *testing.T) {
	t.Parallel()
	n := servertest.Start(t, func(c *config.Config) { c.PresenceGrace = grace })
	client := n.Register(t, "c", parley.RoleClient)
	pro := n.Register(t, "p", parley.RoleProfessional)
	var conv parley.Conversation
	if res := n.Do(t, "POST", "/api/conversations", client.Token, map[string]any{"professional_id": pro.ID, "message": map[string]any{"body": "hi"}}, &conv); res.StatusCode != 201 {
		t.Fatalf("open: %d %s", res.StatusCode, res.Body)
	}
	proStream := n.OpenStream(t, pro.Token, -1)
	s := n.OpenStream(t, client.Token, -1)
	if p, _ := nextPresence(t, proStream, 5*time.Second); !p.Online {
		t.Fatalf("presence = %+v", p)
	}
	if res := n.Do(t, "GET", "/api/events/poll?wait=0", client.Token, nil, nil); res.StatusCode != 200 {
		t.Fatalf("poll: %d", res.StatusCode)
	}
	s.Close()
	closed := time.Now()
	p, at := nextPresence(t, proStream, 5*time.Second)
	if p.Online || p.UserID != client.ID {
		t.Fatalf("presence = %+v", p)
	}
	if waited := at.Sub(closed); waited > 10*grace {
		t.Fatalf("offline %v after the stream closed: the poll made while streaming kept them online", waited)
	}
}
