package httpapi

import (
	"testing"
	"time"
)

// TestLoginGuardDelays: five free failures, then a wait that doubles with
// each failure up to the cap; an attempt under way counts at once (so a
// burst cannot slip in before the first hash fails); success clears it;
// usernames are counted apart and without case.
func TestLoginGuardDelays(t *testing.T) {
	var g loginGuard
	now := time.Unix(1_000_000, 0)
	for i := range freeLoginFailures {
		if w := g.begin("Victim", now); w != 0 {
			t.Fatalf("attempt %d waits %v", i+1, w)
		}
	}
	// The sixth attempt already waits (docs/security.md: five may fail).
	want := time.Second
	for range 14 {
		if w := g.begin("victim", now); w != want {
			t.Fatalf("wait %v, want %v", w, want)
		}
		now = now.Add(want)
		if w := g.begin("victim", now); w != 0 {
			t.Fatalf("attempt after the wait refused (%v)", w)
		}
		want = min(2*want, maxLoginDelay)
	}
	if want != maxLoginDelay {
		t.Fatalf("the wait never reached its cap: %v", want)
	}
	if w := g.begin("someone-else", now); w != 0 {
		t.Fatalf("another username waits %v", w)
	}
	g.succeeded("VICTIM")
	if w := g.begin("victim", now); w != 0 {
		t.Fatalf("after a success: wait %v", w)
	}
	// Forgotten after an hour without failures.
	var h loginGuard
	for range freeLoginFailures + 1 {
		h.begin("x", now)
	}
	later := now.Add(loginForget + 2*time.Minute)
	if w := h.begin("x", later); w != 0 {
		t.Fatalf("an hour later: wait %v", w)
	}
	if n := h.users["x"].n; n != 1 {
		t.Fatalf("an hour later the count is %d, want a fresh 1", n)
	}
}
