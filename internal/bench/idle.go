package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"sort"
	"strings"
	"time"
)

func init() { register(func() Workload { return &idle{} }) }

// idle holds many quiet streams: what one open stream costs the server in
// memory, what the server burns at rest with all of them (heartbeats), and
// whether streams past its capacity are refused cleanly (503 + Retry-After).
type idle struct {
	streams int
	hold    time.Duration
	settle  time.Duration
}

func (*idle) Name() string { return "idle" }

func (*idle) Synopsis() string {
	return "hold N idle streams: server memory per stream, CPU at rest, clean 503s past capacity"
}

func (w *idle) Flags(fs *flag.FlagSet) {
	fs.IntVar(&w.streams, "streams", 1000, "streams to open, one per user; more than the server's capacity checks its 503s")
	fs.DurationVar(&w.hold, "hold", 60*time.Second, "how long to hold the streams open while measuring CPU")
	fs.DurationVar(&w.settle, "settle", 2*time.Second, "pause before each memory reading")
}

// Metric names of the server's /metrics that idle reads.
const (
	mStreamsOpen = "parley_streams_open"
	mHeapInuse   = "go_memstats_heap_inuse_bytes"
	mGoroutines  = "go_goroutines"
	mCloses      = "parley_stream_closes_total"
)

func (w *idle) Run(ctx context.Context, env *Env) (*Result, error) {
	if w.streams < 1 || w.hold < 0 {
		return nil, errFlag("--streams must be positive and --hold not negative")
	}
	users, err := env.Users(ctx, w.streams)
	if err != nil {
		return nil, err
	}
	if !sleepCtx(ctx, w.settle) {
		return nil, ctx.Err()
	}
	exactHeap := env.CollectGarbage(ctx)
	m0 := env.ServerMetrics(ctx, mStreamsOpen, mHeapInuse, mGoroutines)
	before, haveProc := env.Proc()

	start := time.Now()
	set, open, err := env.OpenStreams(ctx, users, streamOptions{})
	if err != nil {
		return nil, err
	}
	openTime := time.Since(start)
	defer set.stop(context.Background()) // stop is idempotent: this covers early returns

	sleepCtx(ctx, w.settle)
	exactHeap = env.CollectGarbage(ctx) && exactHeap
	m1 := env.ServerMetrics(ctx, mStreamsOpen, mHeapInuse, mGoroutines, mCloses)
	after, _ := env.Proc()
	env.Logf("holding %d streams for %v", open.Opened, w.hold)
	cpu0, _ := env.Proc()
	held := sleepCtx(ctx, w.hold)
	cpu1, _ := env.Proc()
	mHeld := env.ServerMetrics(ctx, mCloses)
	final, err := set.stop(ctx)
	if err != nil {
		return nil, err
	}
	if !held {
		return nil, ctx.Err()
	}
	waitStreamsClosed(ctx, env, m0[mStreamsOpen])
	// What the server still holds once the streams are gone: per-user
	// state it keeps (or leaks) beyond a stream's life.
	env.CollectGarbage(ctx)
	m2 := env.ServerMetrics(ctx, mHeapInuse)

	r := &Result{}
	opened := float64(open.Opened)
	r.Add("streams_requested", "streams", float64(w.streams))
	r.Add("streams_opened", "streams", opened)
	r.Add("open_rate", "streams/s", opened/openTime.Seconds())
	r.Add("open_p50", "ms", ms(open.OpenLatency.Quantile(0.5)))
	r.Add("open_p99", "ms", ms(open.OpenLatency.Quantile(0.99)))
	r.Add("refused_503", "streams", float64(open.Refused503))
	r.Add("refused_503_no_retry_after", "streams", float64(open.NoRetryAfter))
	r.Add("refused_429", "streams", float64(open.Refused429))
	r.Add("failed_other", "streams", float64(open.Failed))
	if v, ok := m1[mStreamsOpen]; ok {
		r.Add("server_streams_open", "streams", v)
	}
	if haveProc {
		r.Add("rss_before", "MiB", float64(before.RSS)/(1<<20))
		r.Add("rss_after", "MiB", float64(after.RSS)/(1<<20))
		if opened > 0 {
			r.Add("rss_per_stream", "KiB", float64(after.RSS-before.RSS)/1024/opened)
		}
		r.Add("cpu_at_rest", "% of a core", cpuPercent(cpu0, cpu1))
	}
	if opened > 0 {
		if h0, ok := m0[mHeapInuse]; ok {
			r.Add("heap_per_stream", "KiB", (m1[mHeapInuse]-h0)/1024/opened)
			if h2, ok := m2[mHeapInuse]; ok {
				r.Add("heap_kept_after_close", "KiB/stream", (h2-h0)/1024/opened)
			}
		}
		if g0, ok := m0[mGoroutines]; ok {
			r.Add("goroutines_per_stream", "goroutines", (m1[mGoroutines]-g0)/opened)
		}
		r.Add("pings_per_stream", "pings", float64(final.Pings)/opened)
	}
	r.Add("dropped_while_held", "streams", float64(final.Dropped))

	if open.Refused503 > 0 {
		if open.NoRetryAfter == 0 {
			r.Notef("%d streams past the server's capacity were refused with 503 and Retry-After", open.Refused503)
		} else {
			r.Notef("%d of %d 503 refusals had no Retry-After", open.NoRetryAfter, open.Refused503)
		}
	}
	if !exactHeap {
		r.Notef("the server has no /debug/pprof (--pprof): heap_per_stream includes uncollected garbage")
	}
	if hb := heartbeat(ctx, env); hb > 0 && opened > 0 {
		r.Notef("server heartbeat %v: about %.1f pings per stream expected over the hold", hb, (w.hold+2*w.settle).Seconds()/hb.Seconds())
	}
	for _, s := range open.FailSamples {
		r.Notef("open failure: %s", s)
	}
	if final.Dropped > 0 {
		r.Notef("the server ended %d idle streams while they were held; its closes since they opened: %s",
			final.Dropped, closesBetween(m1, mHeld))
	}
	return r, nil
}

// closesBetween lists the server's stream closes by reason that happened
// between two readings of /metrics.
func closesBetween(before, after map[string]float64) string {
	var parts []string
	for k, v := range after {
		if reason, ok := strings.CutPrefix(k, mCloses+"{"); ok && v > before[k] {
			parts = append(parts, fmt.Sprintf("%s %.0f", strings.TrimSuffix(reason, "}"), v-before[k]))
		}
	}
	if len(parts) == 0 {
		return "none counted"
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

// waitStreamsClosed waits up to 10 s for the server's open-stream gauge to fall
// back to base, so that the next run starts from the same state.
func waitStreamsClosed(ctx context.Context, env *Env, base float64) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m := env.ServerMetrics(ctx, mStreamsOpen)
		if v, ok := m[mStreamsOpen]; !ok || v <= base {
			return
		}
		if !sleepCtx(ctx, 100*time.Millisecond) {
			return
		}
	}
	env.Logf("server still reports open streams 10s after closing them")
}

// heartbeat reads the server's heartbeat interval from /api/config, or 0.
func heartbeat(ctx context.Context, env *Env) time.Duration {
	cfg, err := env.Rest.Config(ctx)
	if err != nil {
		return 0
	}
	var msec int64
	if json.Unmarshal(cfg["heartbeat_ms"], &msec) != nil {
		return 0
	}
	return time.Duration(msec) * time.Millisecond
}
