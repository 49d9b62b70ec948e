package bench

import (
	"cmp"
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The embedded store's writer histograms. A client's latency on this
// machine mixes the server's time with the machine's (the load generator
// shares its cores); these say what the store itself added over the same
// window.
const (
	storeWait   = "parley_store_write_wait_seconds_bucket"
	storeCommit = "parley_store_commit_seconds_bucket"
)

// storeTimes is a reading of the writer's histograms, taken before and after
// a workload's window.
type storeTimes map[string]float64

// readStoreTimes scrapes the histograms; a server without them (PostgreSQL)
// gives an empty reading.
func readStoreTimes(ctx context.Context, env *Env) storeTimes {
	return env.ServerMetrics(ctx, storeWait, storeCommit)
}

// addStoreTimes adds to r the writer's wait p50 and p99 and its commit p99
// over the window between the readings, when the server has them.
func addStoreTimes(r *Result, before, after storeTimes) {
	rows := []struct {
		name, hist string
		q          float64
	}{{"store_wait_p50", storeWait, 0.5}, {"store_wait_p99", storeWait, 0.99}, {"store_commit_p99", storeCommit, 0.99}}
	for _, row := range rows {
		if v, ok := histQuantile(before, after, row.hist, row.q); ok {
			r.Add(row.name, "ms", v*1000)
		}
	}
}

// histQuantile estimates the q-quantile of what a Prometheus histogram
// observed between two readings of its cumulative buckets (name{le="…"}), by
// linear interpolation within the bucket that holds it, as PromQL's
// histogram_quantile does; past the last finite bound it answers that bound.
func histQuantile(before, after map[string]float64, name string, q float64) (float64, bool) {
	type bucket struct{ le, n float64 }
	var bs []bucket
	for k, v := range after {
		rest, ok := strings.CutPrefix(k, name+"{")
		if !ok {
			continue
		}
		i := strings.Index(rest, `le="`)
		if i < 0 {
			continue
		}
		bound, _, _ := strings.Cut(rest[i+len(`le="`):], `"`)
		le, err := strconv.ParseFloat(bound, 64) // "+Inf" parses as +Inf
		if err != nil {
			continue
		}
		bs = append(bs, bucket{le, v - before[k]})
	}
	slices.SortFunc(bs, func(a, b bucket) int { return cmp.Compare(a.le, b.le) })
	if len(bs) == 0 || !math.IsInf(bs[len(bs)-1].le, 1) || bs[len(bs)-1].n <= 0 {
		return 0, false
	}
	rank := q * bs[len(bs)-1].n
	lower, below := 0.0, 0.0
	for _, b := range bs {
		if b.n >= rank {
			if math.IsInf(b.le, 1) {
				return lower, true
			}
			return lower + (b.le-lower)*(rank-below)/(b.n-below), true
		}
		lower, below = b.le, b.n
	}
	return lower, true
}
