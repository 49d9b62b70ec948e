package bench

import (
	"encoding/json"
	"math/bits"
	"strconv"
	"sync/atomic"
	"time"
)

// Hist is a latency histogram that many goroutines record into without locks
// and that merges across worker processes. Values are kept in microseconds in
// log-linear buckets: exact below 128 µs, then 64 buckets per power of two,
// so a reported percentile is within 1.6 % of the true value (the maximum is
// exact).
type Hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64 // µs
	max    atomic.Int64  // µs
}

const (
	histSub     = 64                       // buckets per power of two
	histExact   = 2 * histSub              // values below this have a bucket each
	histBuckets = histSub*(64-7) + histSub // covers every non-negative int64
)

// bucketOf returns the bucket index of v µs.
func bucketOf(v int64) int {
	if v < histExact {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - 7 // v>>shift is in [64, 128)
	return histSub*shift + int(v>>shift)
}

// bucketRange returns the smallest value of bucket i and the bucket's width.
func bucketRange(i int) (low, width int64) {
	if i < histExact {
		return int64(i), 1
	}
	shift := i/histSub - 1
	return int64(i-histSub*shift) << shift, 1 << shift
}

// Record adds one observation.
func (h *Hist) Record(d time.Duration) {
	v := d.Microseconds()
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(uint64(v))
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Count returns the number of observations.
func (h *Hist) Count() uint64 { return h.n.Load() }

// Max returns the largest observation.
func (h *Hist) Max() time.Duration { return time.Duration(h.max.Load()) * time.Microsecond }

// Mean returns the average observation, or 0 without any.
func (h *Hist) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load()/n) * time.Microsecond
}

// Quantile returns the q-quantile (0 < q <= 1) as the middle of its bucket,
// never above the maximum; 0 without observations.
func (h *Hist) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			low, width := bucketRange(i)
			v := min(low+(width-1)/2, h.max.Load())
			return time.Duration(v) * time.Microsecond
		}
	}
	return h.Max()
}

// Merge adds o's observations to h.
func (h *Hist) Merge(o *Hist) {
	for i := range o.counts {
		if c := o.counts[i].Load(); c > 0 {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	for {
		m, v := h.max.Load(), o.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// histWire is the JSON form of a Hist: only the non-empty buckets.
type histWire struct {
	Counts map[string]uint64 `json:"counts"`
	N      uint64            `json:"n"`
	Sum    uint64            `json:"sum_us"`
	Max    int64             `json:"max_us"`
}

// MarshalJSON encodes the non-empty buckets, for worker results.
func (h *Hist) MarshalJSON() ([]byte, error) {
	w := histWire{Counts: map[string]uint64{}, N: h.n.Load(), Sum: h.sum.Load(), Max: h.max.Load()}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			w.Counts[strconv.Itoa(i)] = c
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON adds the encoded observations to h.
func (h *Hist) UnmarshalJSON(b []byte) error {
	var w histWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	for k, c := range w.Counts {
		i, err := strconv.Atoi(k)
		if err != nil || i < 0 || i >= histBuckets {
			return &json.UnsupportedValueError{Str: "histogram bucket " + k}
		}
		h.counts[i].Add(c)
	}
	h.n.Add(w.N)
	h.sum.Add(w.Sum)
	if w.Max > h.max.Load() {
		h.max.Store(w.Max)
	}
	return nil
}

// ms converts a duration to float milliseconds for reports.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
