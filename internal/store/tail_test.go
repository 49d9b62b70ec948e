package store

import (
	"encoding/json"
	"math"
	"math/bits"
	"slices"
	"testing"

	"github.com/parley-chat/parley"
)

func ev(user string, id int64) parley.Event {
	return parley.Event{UserID: user, ID: id, Type: "app.t", Data: json.RawMessage(`{}`)}
}

func idsOf(evs []parley.Event) []int64 {
	out := make([]int64, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// A merge step takes whole users in key order, reports the batch rows it
// empties, and its events stay readable until every read begun before it
// has ended.
func TestTailMergeAndDrop(t *testing.T) {
	tl := NewTail()
	tl.Add(Batch{Seq: tl.nextSeq(), Events: []parley.Event{ev("u_b", 1), ev("u_a", 1), ev("u_c", 1)}})
	tl.Add(Batch{Seq: tl.nextSeq(), Events: []parley.Event{ev("u_a", 2), ev("u_a", 3)}})
	if n := tl.Unmerged(); n != 5 {
		t.Fatalf("unmerged %d, want 5", n)
	}

	s := tl.Step(2) // u_a's three events: a step takes whole users
	if got := idsOf(s.Events); !slices.Equal(got, []int64{1, 2, 3}) || s.Events[0].UserID != "u_a" {
		t.Fatalf("first step = %v", s.Events)
	}
	if !slices.Equal(s.Done, []int64{2}) {
		t.Fatalf("first step empties batches %v, want [2]", s.Done)
	}

	old := tl.BeginRead() // a read whose snapshot may predate the merge
	tl.Merged(s)
	if n := tl.Unmerged(); n != 2 {
		t.Fatalf("unmerged after the step %d, want 2", n)
	}
	if got := idsOf(tl.after("u_a", 0, 10)); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("merged events dropped under an older read: %v", got)
	}
	fresh := tl.BeginRead()
	tl.EndRead(old)
	tl.Drop()
	if got := tl.after("u_a", 0, 10); got != nil {
		t.Fatalf("merged events held after the older read ended: %v", got)
	}
	tl.EndRead(fresh)

	s = tl.Step(100) // the round goes on with u_b and u_c
	if len(s.Events) != 2 || s.Events[0].UserID != "u_b" || s.Events[1].UserID != "u_c" || !slices.Equal(s.Done, []int64{1}) {
		t.Fatalf("second step = %v, done %v", s.Events, s.Done)
	}
	tl.Merged(s)
	if tl.Unmerged() != 0 || tl.Held() != 0 || tl.Step(100) != nil {
		t.Fatalf("tail not empty: unmerged %d, held %d", tl.Unmerged(), tl.Held())
	}
}

// Steps planned in one transaction take disjoint events, so each batch row
// is listed as done by the step that takes its last event; a rollback gives
// them all back.
func TestTailStepsInOneTransaction(t *testing.T) {
	tl := NewTail()
	tl.Add(
		Batch{Seq: tl.nextSeq(), Events: []parley.Event{ev("u_a", 1)}},
		Batch{Seq: tl.nextSeq(), Events: []parley.Event{ev("u_b", 1)}},
		Batch{Seq: tl.nextSeq(), Events: []parley.Event{ev("u_b", 2), ev("u_c", 1)}},
	)
	plan := func() [][]int64 {
		var done [][]int64
		for s := tl.Step(1); s != nil; s = tl.Step(1) {
			done = append(done, s.Done)
		}
		return done
	}
	// u_a empties batch 1; u_b empties batch 2 and half of 3; u_c the rest.
	want := [][]int64{{1}, {2}, {3}}
	if got := plan(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("done per step = %v, want %v", got, want)
	}
	tl.Rollback()
	if got := plan(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("after a rollback, done per step = %v, want %v", got, want)
	}
	steps := slices.Clone(tl.open)
	for _, s := range steps {
		tl.Merged(s)
	}
	if tl.Unmerged() != 0 || len(tl.batches) != 0 || tl.Step(10) != nil {
		t.Fatalf("after merging: %d unmerged, batches %v", tl.Unmerged(), tl.batches)
	}
}

func TestUnionByID(t *testing.T) {
	mk := func(ids ...int64) []parley.Event {
		out := make([]parley.Event, len(ids))
		for i, id := range ids {
			out[i] = ev("u", id)
		}
		return out
	}
	for _, c := range []struct {
		name          string
		table, recent []int64
		limit         int
		want          []int64
	}{
		{"table then tail", []int64{1, 2}, []int64{3, 4}, 10, []int64{1, 2, 3, 4}},
		{"merged events in both", []int64{1, 2, 3}, []int64{2, 3, 4}, 10, []int64{1, 2, 3, 4}},
		{"limit", []int64{1, 2}, []int64{3, 4}, 3, []int64{1, 2, 3}},
		{"tail only", nil, []int64{5, 6}, 10, []int64{5, 6}},
		// The tail still holds 1–2, merged and since pruned from the
		// table, which starts at 5: they are not part of the log.
		{"pruned events left out", []int64{5, 6}, []int64{1, 2, 7}, 10, []int64{5, 6, 7}},
	} {
		if got := idsOf(unionByID(mk(c.table...), mk(c.recent...), c.limit, 0)); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// chunks covers the input in order, in parts of a few sizes only, and a
// remainder in as few parts as it has bits set.
func TestChunksFewShapes(t *testing.T) {
	shapes := map[int]bool{}
	for n := range 1200 {
		in := make([]int, n)
		for i := range in {
			in[i] = i
		}
		var out []int
		parts := 0
		for part := range chunks(in, 200) {
			shapes[len(part)] = true
			out = append(out, part...)
			parts++
		}
		if !slices.Equal(in, out) {
			t.Fatalf("n=%d: chunks gave back %d elements, out of order or short", n, len(out))
		}
		if want := n/200 + bits.OnesCount(uint(n%200)); parts != want {
			t.Errorf("n=%d: %d parts, want %d", n, parts, want)
		}
	}
	for size := range shapes {
		if size != 200 && (size >= 200 || size&(size-1) != 0) {
			t.Errorf("a part of %d elements: not 200 nor a power of two below it", size)
		}
	}
	if len(shapes) != 9 {
		t.Errorf("%d shapes, want 9 (200, 128, 64, …, 1)", len(shapes))
	}
}

// Reads at the ends of the id range neither wrap around nor panic.
func TestTailAfterBounds(t *testing.T) {
	tl := NewTail()
	tl.Add(Batch{Seq: tl.nextSeq(), Events: []parley.Event{ev("u_a", 1), ev("u_a", 2)}})
	if got := tl.after("u_a", math.MaxInt64, 10); got != nil {
		t.Fatalf("after the largest id: %v", got)
	}
	if got := idsOf(tl.after("u_a", 0, math.MaxInt)); !slices.Equal(got, []int64{1, 2}) {
		t.Fatalf("with the largest limit: %v", got)
	}
	if got := idsOf(tl.after("u_a", 1, 1)); !slices.Equal(got, []int64{2}) {
		t.Fatalf("after 1, limit 1: %v", got)
	}
}
