package stream

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/parley-chat/parley"
)

// mergeRuns must give the order a full sort gives, for any number of runs,
// including odd ones out and runs that interleave users.
func TestMergeRunsSorts(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		runs := 1 + rng.IntN(7)
		next := map[string]int64{} // each user's next id, rising across runs as across requests
		var fs []*Frame
		for range runs {
			users := rng.Perm(20)[:1+rng.IntN(20)]
			slices.Sort(users)
			for _, u := range users {
				id := fmt.Sprintf("u_%02d", u)
				for range 1 + rng.IntN(3) {
					next[id]++
					fs = append(fs, &Frame{Event: parley.Event{UserID: id, ID: next[id]}})
				}
			}
		}
		want := slices.SortedFunc(slices.Values(fs), byUser)
		got := mergeRuns(slices.Clone(fs))
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d (%d runs): merged order differs from sorted order", trial, runs)
		}
	}
}
