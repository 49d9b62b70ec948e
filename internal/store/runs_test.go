package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley"
)

// logOf is a user's events first..first+n-1, a second apart, the newest at.
func logOf(user string, first int64, n int, at time.Time) []parley.Event {
	evs := make([]parley.Event, n)
	for i := range evs {
		evs[i] = parley.Event{UserID: user, ID: first + int64(i), Type: "app.test",
			Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i)),
			Time: parley.T(at.Add(time.Duration(i-n+1) * time.Second))}
	}
	return evs
}

// A run round-trips with each event's own time.
func TestRunRoundTrip(t *testing.T) {
	at := Now()
	in := logOf("usr_a", 41, 10, at)
	out, err := decodeRun("usr_a", 41, 50, Micros(at), encodeRun(in, Micros(at)))
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, out, in)
	// The row's ids must agree with what it holds.
	if _, err := decodeRun("usr_a", 41, 51, Micros(at), encodeRun(in, Micros(at))); err == nil {
		t.Fatal("a run of 10 events decoded as ids 41 to 51")
	}
}

// splitRuns cuts at a change of user, at a gap in ids and at maxRun.
func TestSplitRuns(t *testing.T) {
	at := Now()
	var evs []parley.Event
	evs = append(evs, logOf("usr_a", 1, maxRun+3, at)...)
	evs = append(evs, logOf("usr_b", 5, 2, at)...)
	evs = append(evs, logOf("usr_b", 9, 1, at)...)
	var got []string
	for _, run := range splitRuns(evs) {
		got = append(got, fmt.Sprintf("%s:%d-%d", run[0].UserID, run[0].ID, run[len(run)-1].ID))
	}
	want := []string{fmt.Sprintf("usr_a:1-%d", maxRun), fmt.Sprintf("usr_a:%d-%d", maxRun+1, maxRun+3), "usr_b:5-6", "usr_b:9-9"}
	if !slices.Equal(got, want) {
		t.Fatalf("runs %v, want %v", got, want)
	}
}

// FuzzDecodeRun: a corrupt row is an error, never a panic or a huge
// allocation, and whatever decodes encodes back to the same events.
func FuzzDecodeRun(f *testing.F) {
	at := Micros(time.Unix(1700000000, 0))
	f.Add(encodeRun(logOf("usr_a", 1, 3, FromMicros(at)), at), int64(1), int64(3))
	f.Add([]byte{2, 0}, int64(1), int64(0))
	f.Add([]byte{2, 1, 3, 'a', 'p', 'p', 0, 1}, int64(7), int64(7))
	f.Add([]byte{1}, int64(1), int64(1))
	f.Fuzz(func(t *testing.T, b []byte, first, last int64) {
		evs, err := decodeRun("usr_a", first, last, at, b)
		if err != nil || len(evs) == 0 {
			return
		}
		again, err := decodeRun("usr_a", first, last, at, encodeRun(evs, at))
		if err != nil {
			t.Fatalf("re-encoded run does not decode: %v", err)
		}
		checkEvents(t, again, evs)
	})
}
