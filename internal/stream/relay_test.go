package stream_test

import (
	"sync"
	"testing"

	"github.com/parley-chat/parley/internal/stream"
)

// recSink records what the hub offers a stream.
type recSink struct {
	mu     sync.Mutex
	frames []*stream.Frame
	offers int
	kicked string
}

func (r *recSink) Offer(fs []*stream.Frame) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.frames = append(r.frames, fs...)
	r.offers++
	return true
}

func (r *recSink) Kick(reason string, _ *stream.Frame) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.kicked = reason
}

type recRelay struct {
	ephemeral [][]string
	kicks     []string
}

func (r *recRelay) Ephemeral(typ string, _ []byte, users []string) {
	r.ephemeral = append(r.ephemeral, append([]string{typ}, users...))
}

func (r *recRelay) KickSession(userID, sessionID string) {
	r.kicks = append(r.kicks, userID+"/"+sessionID)
}

func TestRelay(t *testing.T) {
	h := stream.NewHub(stream.Limits{PerUser: 4, Buffer: 8}, nil)
	relay := &recRelay{}
	h.SetRelay(relay)
	sink := &recSink{}
	sub, err := h.Subscribe("u1", "s1", sink)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Unsubscribe(sub)

	h.Ephemeral("typing", []byte(`{}`), "u1", "u2")
	h.EphemeralLocal("presence", []byte(`{}`), "u1")
	if len(sink.frames) != 2 {
		t.Fatalf("local stream got %d frames, want 2", len(sink.frames))
	}
	if len(relay.ephemeral) != 1 || relay.ephemeral[0][0] != "typing" || len(relay.ephemeral[0]) != 3 {
		t.Fatalf("relayed %v, want only the typing event for both users", relay.ephemeral)
	}

	h.KickSessionLocal("u1", "other")
	h.KickSession("u1", "s1")
	if sink.kicked != stream.ReasonExpired {
		t.Fatalf("stream kicked %q", sink.kicked)
	}
	if len(relay.kicks) != 1 || relay.kicks[0] != "u1/s1" {
		t.Fatalf("relayed kicks %v", relay.kicks)
	}
}

func TestPokeAll(t *testing.T) {
	h := stream.NewHub(stream.Limits{PerUser: 4, Buffer: 8}, nil)
	var sinks []*recSink
	for _, u := range []string{"a", "b", "c"} {
		s := &recSink{}
		sub, err := h.Subscribe(u, "s", s)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Unsubscribe(sub)
		sinks = append(sinks, s)
	}
	h.PokeAll()
	for i, s := range sinks {
		if len(s.frames) != 1 || s.frames[0].Event.ID <= 0 {
			t.Fatalf("stream %d got %v, want one poke", i, s.frames)
		}
	}
}
