package bench

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"time"
)

func init() { register(func() Workload { return &fanout{} }) }

// fanout measures one event delivered to many streams: N users hold one
// stream each, and every publish call addresses all N of them (an app event
// "to everyone", one durable event in each user's log). At a fixed rate it
// reports the publish-to-receive latency of each delivery; with --rate 0 it
// publishes as fast as --publishers calls in flight allow, to find the
// deliveries per second the server saturates at and what each costs it in CPU.
type fanout struct {
	streams    int
	rate       float64
	duration   time.Duration
	publishers int
	drain      time.Duration
}

func (*fanout) Name() string { return "fanout" }

func (*fanout) Synopsis() string {
	return "publish events addressed to all N users: deliveries/s, delivery latency, server CPU-s per 1M deliveries (--rate 0: saturation)"
}

func (w *fanout) Flags(fs *flag.FlagSet) {
	fs.IntVar(&w.streams, "streams", 1000, "users, each holding one stream; every publish addresses all of them (at most 10,000)")
	fs.Float64Var(&w.rate, "rate", 10, "publish calls per second (0: as fast as --publishers allow)")
	fs.DurationVar(&w.duration, "duration", 10*time.Second, "how long to publish")
	fs.IntVar(&w.publishers, "publishers", 4, "publish calls in flight at most")
	fs.DurationVar(&w.drain, "drain", 20*time.Second, "how long to wait for the last deliveries after publishing stops")
}

func (w *fanout) Run(ctx context.Context, env *Env) (*Result, error) {
	if w.streams < 1 || w.streams > 10000 || w.rate < 0 || w.duration <= 0 || w.publishers < 1 {
		return nil, errFlag("--streams must be 1..10000, --rate not negative, --duration and --publishers positive")
	}
	users, err := env.Users(ctx, w.streams)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(users))
	for i, u := range users {
		ids[i] = u.ID
	}
	set, open, err := env.OpenStreams(ctx, users, streamOptions{Track: true, Reconnect: true})
	if err != nil {
		return nil, err
	}
	defer set.stop(context.Background())
	if open.Opened < int64(len(users)) {
		return nil, fmt.Errorf("%d of %d streams opened; fanout needs them all", open.Opened, len(users))
	}
	base := set.received()
	cpu0, haveProc := env.Proc()
	start := time.Now()
	var pub *publisher
	if w.rate > 0 {
		env.Logf("publishing %.1f calls/s to all %d users for %v (%.0f deliveries/s)", w.rate, w.streams, w.duration, w.rate*float64(w.streams))
		pub = publishAtRate(ctx, env, users, w.rate*float64(w.streams), w.duration, w.streams, w.publishers)
	} else {
		env.Logf("publishing to all %d users as fast as %d calls in flight allow, for %v", w.streams, w.publishers, w.duration)
		pub = publishFlat(ctx, env, ids, w.duration, w.publishers)
	}
	caught := set.waitReceived(ctx, base+pub.events.Load(), w.drain)
	end := time.Now()
	cpu1, _ := env.Proc()
	if !caught {
		env.Logf("not every delivery arrived within --drain %v", w.drain)
	}
	final, err := set.stop(ctx)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	published := pub.events.Load()
	wall := end.Sub(start).Seconds()
	r := &Result{}
	r.Add("streams", "streams", float64(w.streams))
	r.Add("target_rate", "calls/s", w.rate)
	r.Add("publish_calls", "calls", float64(pub.calls.Load()))
	r.Add("publish_errors", "calls", float64(pub.errors.Load()))
	r.Add("deliveries", "events", float64(final.Events))
	r.Add("lost", "events", float64(published-final.Events))
	r.Add("gaps", "ids", float64(final.Gaps))
	r.Add("dups", "events", float64(final.Dups))
	r.Add("deliveries_per_s", "events/s", float64(final.Events)/wall)
	r.Add("publish_wall", "s", pub.elapsed.Seconds())
	r.Add("delivery_wall", "s", wall)
	lat := final.Latency
	r.Add("latency_p50", "ms", ms(lat.Quantile(0.5)))
	r.Add("latency_p90", "ms", ms(lat.Quantile(0.9)))
	r.Add("latency_p99", "ms", ms(lat.Quantile(0.99)))
	r.Add("latency_max", "ms", ms(lat.Max()))
	r.Add("publish_p50", "ms", ms(pub.latency.Quantile(0.5)))
	r.Add("publish_p99", "ms", ms(pub.latency.Quantile(0.99)))
	if haveProc {
		r.Add("server_cpu", "% of a core", cpuPercent(cpu0, cpu1))
		// The server's peak since it started (a spawned server started
		// for this run): what a publish overload costs in memory.
		r.Add("server_rss_peak", "MiB", float64(cpu1.Peak)/(1<<20))
		if final.Events > 0 {
			r.Add("cpu_s_per_1M_deliveries", "CPU-s", cpuSeconds(cpu0, cpu1)/float64(final.Events)*1e6)
		}
	}
	r.Add("streams_dropped", "streams", float64(final.Dropped))
	if pub.behind.Load() > 0 {
		r.Notef("the publishers fell behind the schedule %d times (all %d calls in flight)", pub.behind.Load(), w.publishers)
	}
	if s := pub.sample(); s != "" {
		r.Notef("publish error: %s", s)
	}
	r.Notef("load generator and server share the machine: deliveries/s at saturation is bounded by both")
	return r, nil
}

// publishFlat publishes to all ids, back to back from inflight callers, for d.
func publishFlat(ctx context.Context, env *Env, ids []string, d time.Duration, inflight int) *publisher {
	p := &publisher{}
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for i := 0; i < inflight; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dctx.Err() == nil {
				// The call itself runs on ctx: a call started before the
				// deadline completes and counts.
				p.publishOnce(ctx, env, ids)
			}
		}()
	}
	wg.Wait()
	p.elapsed = time.Since(start)
	return p
}
