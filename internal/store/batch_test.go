package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

func batchOf(users int, data string) []parley.Event {
	shared := json.RawMessage(data)
	evs := make([]parley.Event, 0, users+1)
	for i := range users {
		evs = append(evs, parley.Event{UserID: fmt.Sprintf("usr_%03d", i), ID: int64(i + 1), Type: "app.news", Data: shared})
	}
	// One event with a payload of its own.
	return append(evs, parley.Event{UserID: "usr_000", ID: 2, Type: "message.created", Data: json.RawMessage(`{"body":"é\n"}`)})
}

// A batch row round-trips, and a payload shared by a fan-out is stored once.
func TestBatchRoundTrip(t *testing.T) {
	at := Now()
	payload := `{"text":"` + string(bytes.Repeat([]byte("x"), 500)) + `"}`
	in := batchOf(1000, payload)
	b := encodeBatch(in)
	if len(b) > 20000 {
		t.Fatalf("encoded %d bytes: the 500-byte payload was not stored once", len(b))
	}
	out, err := decodeBatch(b, at)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i].Time = parley.T(at) // a row's events share its created_at
	}
	checkEvents(t, out, in)
}

// checkEvents fails t unless got and want hold the same events.
func checkEvents(t *testing.T, got, want []parley.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("decoded %d events, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.UserID != w.UserID || g.ID != w.ID || g.Type != w.Type ||
			!bytes.Equal(g.Data, w.Data) || !g.Time.Equal(w.Time.Time) {
			t.Fatalf("event %d = %+v, want %+v", i, g, w)
		}
	}
}

// FuzzDecodeBatch: a corrupt row is an error, never a panic or a huge
// allocation, and whatever decodes encodes back to the same events.
func FuzzDecodeBatch(f *testing.F) {
	f.Add(encodeBatch(batchOf(3, `{"a":1}`)))
	f.Add([]byte{1, 0, 0})
	f.Add([]byte{1, 1, 3, 'a', 'p', 'p', 0, 1, 1, 'u', 1, 0})
	f.Add([]byte{2})
	f.Fuzz(func(t *testing.T, b []byte) {
		at := time.Unix(1700000000, 0)
		evs, err := decodeBatch(b, at)
		if err != nil || len(evs) == 0 {
			return
		}
		again, err := decodeBatch(encodeBatch(evs), at)
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		checkEvents(t, again, evs)
	})
}
