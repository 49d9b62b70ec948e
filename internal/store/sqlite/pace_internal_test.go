package sqlite

import (
	"testing"
	"time"
)

// TestPaceFollowsRate: the pace is the time paceBatch requests took to
// arrive over the recent commits, between commitPace and slowPace.
// (TestCommitPacing covers the waiting itself; timing the stretch from
// outside could not tell 4 ms from 8 on a busy machine.)
func TestPaceFollowsRate(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	// commits every apart, each holding held requests
	pace := func(apart time.Duration, held int) time.Duration {
		var db DB
		for i := range demandCommits {
			db.lastCommit = t0.Add(time.Duration(i) * apart)
			db.noteDemand(held)
		}
		return db.pace()
	}
	for _, c := range []struct {
		name  string
		apart time.Duration
		held  int
		want  time.Duration
	}{
		{"1,000 a second: eight take 8 ms", 4 * time.Millisecond, 4, 8 * time.Millisecond},
		{"1,500 a second", 4 * time.Millisecond, 6, 5333333 * time.Nanosecond},
		{"2,000 a second and more: commitPace", 4 * time.Millisecond, 8, commitPace},
		{"5,000 a second", 4 * time.Millisecond, 20, commitPace},
		{"a trickle: no more than slowPace", 50 * time.Millisecond, 2, slowPace},
	} {
		if got := pace(c.apart, c.held); got != c.want {
			t.Errorf("%s: pace %v, want %v", c.name, got, c.want)
		}
	}
	var fresh DB
	if got := fresh.pace(); got != commitPace {
		t.Errorf("with no commits yet: pace %v, want commitPace", got)
	}
}
