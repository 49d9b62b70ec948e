package bench

import (
	"context"
	"flag"
	"fmt"
	"math"
	"time"
)

func init() { register(func() Workload { return &soak{} }) }

// soak holds N streams under steady private traffic for a long time and
// watches the server's memory and goroutines: flat from the 1-minute mark to
// the end means nothing grows with the events delivered; after all streams
// close, what remains shows per-stream state that outlives its stream.
type soak struct {
	streams    int
	rate       float64
	duration   time.Duration
	every      time.Duration
	mark       time.Duration
	publishers int
}

func (*soak) Name() string { return "soak" }

func (*soak) Synopsis() string {
	return "N streams under R events/s for D: server RSS and goroutines at the 1-minute mark, at the end and after all streams close"
}

func (w *soak) Flags(fs *flag.FlagSet) {
	fs.IntVar(&w.streams, "streams", 1000, "users, each holding one stream")
	fs.Float64Var(&w.rate, "rate", 2000, "events per second to random users")
	fs.DurationVar(&w.duration, "duration", 3*time.Minute, "how long to publish")
	fs.DurationVar(&w.every, "every", 10*time.Second, "sampling interval")
	fs.DurationVar(&w.mark, "mark", time.Minute, "the early sample the end is compared with")
	fs.IntVar(&w.publishers, "publishers", 32, "publish calls in flight at most")
}

type soakSample struct {
	at         time.Duration
	rss        float64 // MiB
	goroutines float64
	heap       float64 // MiB
	// httpConns is the server's connections that are not streams, each
	// served by a goroutine of net/http's; NaN when not known.
	httpConns float64
}

func (w *soak) Run(ctx context.Context, env *Env) (*Result, error) {
	if w.streams < 1 || w.rate <= 0 || w.duration <= w.mark || w.every <= 0 {
		return nil, errFlag("--streams and --rate must be positive and --duration longer than --mark")
	}
	users, err := env.Users(ctx, w.streams)
	if err != nil {
		return nil, err
	}
	// Registering leaves --register-concurrency keep-alive connections,
	// each a goroutine on the server, that the publishers do not need; the
	// server would close them at its idle timeout, in the middle of the run
	// (a drop of ~30 goroutines at 1m30s that was neither leak nor load).
	env.hc.CloseIdleConnections()
	env.CollectGarbage(ctx)
	base := w.sample(ctx, env, 0)
	set, open, err := env.OpenStreams(ctx, users, streamOptions{Track: true, Reconnect: true})
	if err != nil {
		return nil, err
	}
	defer set.stop(context.Background())
	if open.Opened < int64(len(users)) {
		return nil, fmt.Errorf("%d of %d streams opened; soak needs them all", open.Opened, len(users))
	}
	batch := min(max(int(w.rate/200), 1), 100, w.streams)
	env.Logf("soak: %.0f events/s to %d users for %v", w.rate, w.streams, w.duration)
	done := make(chan *publisher, 1)
	start := time.Now()
	go func() { done <- publishAtRate(ctx, env, users, w.rate, w.duration, batch, w.publishers) }()
	var samples []soakSample
	tick := time.NewTicker(w.every)
	var pub *publisher
	for pub == nil {
		select {
		case pub = <-done:
		case <-tick.C:
			s := w.sample(ctx, env, time.Since(start))
			env.Logf("soak %v: rss %.1f MiB, goroutines %.0f, http connections %.0f, heap %.1f MiB, received %d",
				s.at.Round(time.Second), s.rss, s.goroutines, s.httpConns, s.heap, set.received())
			samples = append(samples, s)
		}
	}
	tick.Stop()
	set.waitReceived(ctx, pub.events.Load(), 10*time.Second)
	final, err := set.stop(ctx)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if len(samples) == 0 {
		return nil, fmt.Errorf("no sample taken: --every %v is longer than the run", w.every)
	}
	waitStreamsClosed(ctx, env, 0)
	sleepCtx(ctx, 2*time.Second)
	env.CollectGarbage(ctx)
	after := w.sample(ctx, env, time.Since(start))

	markS := samples[0]
	for _, s := range samples {
		if s.at <= w.mark+w.every/2 {
			markS = s
		}
	}
	end := samples[len(samples)-1]
	r := &Result{}
	published := pub.events.Load()
	r.Add("streams", "streams", float64(w.streams))
	r.Add("achieved_rate", "events/s", float64(published)/pub.elapsed.Seconds())
	r.Add("published", "events", float64(published))
	r.Add("lost", "events", float64(published-final.Events))
	r.Add("gaps", "ids", float64(final.Gaps))
	r.Add("dups", "events", float64(final.Dups))
	r.Add("latency_p50", "ms", ms(final.Latency.Quantile(0.5)))
	r.Add("latency_p99", "ms", ms(final.Latency.Quantile(0.99)))
	r.Add("rss_base", "MiB", base.rss)
	r.Add("rss_at_mark", "MiB", markS.rss)
	r.Add("rss_end", "MiB", end.rss)
	r.Add("rss_end_vs_mark", "%", pctChange(markS.rss, end.rss))
	r.Add("rss_max", "MiB", maxOf(samples, func(s soakSample) float64 { return s.rss }))
	r.Add("rss_after_close", "MiB", after.rss)
	r.Add("goroutines_base", "goroutines", base.goroutines)
	// A burst of publishes opens connections that then idle until the
	// server's idle timeout, each a goroutine there; the floor over the
	// minute up to the mark and over the last minute is what a leak raises
	// and such a burst does not.
	goroutines := func(s soakSample) float64 { return s.goroutines }
	markG := floorOf(samples, markS.at-time.Minute, markS.at, goroutines)
	endG := floorOf(samples, end.at-time.Minute, end.at, goroutines)
	r.Add("goroutines_at_mark", "goroutines", markG)
	r.Add("goroutines_end", "goroutines", endG)
	r.Add("goroutines_end_vs_mark", "%", pctChange(markG, endG))
	r.Add("goroutines_after_close", "goroutines", after.goroutines)
	// Even the floors move with the load generator's pool of publish
	// connections (30 → 35 over a 10-minute soak with no leak), so the same
	// is reported without one goroutine per open HTTP connection.
	if !math.IsNaN(end.httpConns) {
		own := func(s soakSample) float64 { return s.goroutines - s.httpConns }
		markO := floorOf(samples, markS.at-time.Minute, markS.at, own)
		endO := floorOf(samples, end.at-time.Minute, end.at, own)
		r.Add("http_conns_at_mark", "connections", markS.httpConns)
		r.Add("http_conns_end", "connections", end.httpConns)
		r.Add("goroutines_less_conns_at_mark", "goroutines", markO)
		r.Add("goroutines_less_conns_end", "goroutines", endO)
		r.Add("goroutines_less_conns_end_vs_mark", "%", pctChange(markO, endO))
	}
	r.Add("heap_base", "MiB", base.heap)
	r.Add("heap_at_mark", "MiB", markS.heap)
	r.Add("heap_end", "MiB", end.heap)
	r.Add("heap_after_close", "MiB", after.heap)
	r.Add("streams_dropped", "streams", float64(final.Dropped))
	r.Notef("mark sample at %v, end sample at %v (of %d samples every %v); goroutines: fewest over the minute up to each; http_conns: the server's open connections that are not streams", markS.at.Round(time.Second), end.at.Round(time.Second), len(samples), w.every)
	if s := pub.sample(); s != "" {
		r.Notef("publish error: %s", s)
	}
	return r, nil
}

func (w *soak) sample(ctx context.Context, env *Env, at time.Duration) soakSample {
	s := soakSample{at: at}
	if p, ok := env.Proc(); ok {
		s.rss = float64(p.RSS) / (1 << 20)
	}
	m := env.ServerMetrics(ctx, mGoroutines, mHeapInuse, mStreamsOpen)
	s.goroutines = m[mGoroutines]
	s.heap = m[mHeapInuse] / (1 << 20)
	s.httpConns = math.NaN()
	if n, ok := serverConns(env.Target.PID, env.Target.URL); ok && len(env.Target.PIDs) <= 1 {
		s.httpConns = float64(n) - m[mStreamsOpen]
	}
	return s
}

func pctChange(a, b float64) float64 {
	if a == 0 {
		return 0
	}
	return (b - a) / a * 100
}

// floorOf returns the least f among the samples taken in (from, to].
func floorOf(ss []soakSample, from, to time.Duration, f func(soakSample) float64) float64 {
	m := math.Inf(1)
	for _, s := range ss {
		if s.at > from && s.at <= to {
			m = min(m, f(s))
		}
	}
	return m
}

func maxOf(ss []soakSample, f func(soakSample) float64) float64 {
	m := 0.0
	for _, s := range ss {
		m = max(m, f(s))
	}
	return m
}
