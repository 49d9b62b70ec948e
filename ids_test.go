package parley

import (
	"regexp"
	"testing"
	"time"
)

func TestNewTimeID(t *testing.T) {
	shape := regexp.MustCompile(`^msg_[a-z2-7]{20}$`) // NewID's shape: clients see no difference
	seen := make(map[string]bool)
	prev := NewTimeID("msg")
	for range 2000 {
		id := NewTimeID("msg")
		if !shape.MatchString(id) {
			t.Fatalf("id %q has not NewID's shape", id)
		}
		if seen[id] {
			t.Fatalf("id %q made twice", id)
		}
		seen[id] = true
		// The first 9 characters after "msg_" are the time in 8 ms steps.
		if id[:13] < prev[:13] {
			t.Fatalf("%q sorts before %q, made earlier", id, prev)
		}
		prev = id
	}
	later := func() string { time.Sleep(2 * time.Millisecond); return NewTimeID("msg") }
	a, b := NewTimeID("msg"), later()
	if !(a < b) {
		t.Fatalf("%q made 2 ms before %q sorts after it", a, b)
	}
}
