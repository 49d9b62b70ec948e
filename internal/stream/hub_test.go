package stream_test

import (
	"slices"
	"testing"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/stream"
)

// A group commit of two publishes to the same users reaches each stream as
// one offer holding that user's events in id order, so it leaves in one
// write.
func TestPublishOffersEachUsersShareOnce(t *testing.T) {
	h := stream.NewHub(stream.Limits{Buffer: 16}, nil)
	sinks := map[string]*recSink{"u_a": {}, "u_b": {}}
	for u, s := range sinks {
		if _, err := h.Subscribe(u, "s", s); err != nil {
			t.Fatal(err)
		}
	}
	ev := func(u string, id int64) parley.Event {
		return parley.Event{UserID: u, ID: id, Type: "app.x", Data: []byte(`{}`)}
	}
	// As the store hands a commit over: each publish's events in user order.
	h.Publish([]parley.Event{ev("u_a", 1), ev("u_b", 7), ev("u_a", 2), ev("u_b", 8), ev("u_b", 9)})

	for u, want := range map[string][]int64{"u_a": {1, 2}, "u_b": {7, 8, 9}} {
		s := sinks[u]
		if s.offers != 1 {
			t.Errorf("%s: %d offers, want 1", u, s.offers)
		}
		var got []int64
		for _, f := range s.frames {
			if f.Event.UserID != u {
				t.Errorf("%s was offered %s's event", u, f.Event.UserID)
			}
			got = append(got, f.Event.ID)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s got ids %v, want %v", u, got, want)
		}
	}
}
