package bench

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

func init() { register(func() Workload { return &throughput{} }) }

// throughput measures how many durable events per second the server appends
// when concurrent publishers send small batches as fast as it answers.
type throughput struct {
	users       int
	duration    time.Duration
	concurrency int
	batch       int
	streams     bool
	drain       time.Duration
}

func (*throughput) Name() string { return "throughput" }

func (*throughput) Synopsis() string {
	return "publish as fast as the server answers: durable events/s and publish latency"
}

func (w *throughput) Flags(fs *flag.FlagSet) {
	fs.IntVar(&w.users, "users", 1000, "users the events go to")
	fs.DurationVar(&w.duration, "duration", 10*time.Second, "how long to publish")
	fs.IntVar(&w.concurrency, "concurrency", 8, "publishers, each with one call in flight")
	fs.IntVar(&w.batch, "batch", 10, "users per publish call")
	fs.BoolVar(&w.streams, "streams", false, "also hold a stream per user and count what arrives")
	fs.DurationVar(&w.drain, "drain", 10*time.Second, "with --streams, how long to wait for the last events")
}

func (w *throughput) Run(ctx context.Context, env *Env) (*Result, error) {
	if w.users < 1 || w.duration <= 0 || w.concurrency < 1 || w.batch < 1 {
		return nil, errFlag("--users, --duration, --concurrency and --batch must be positive")
	}
	batch := min(w.batch, w.users)
	users, err := env.Users(ctx, w.users)
	if err != nil {
		return nil, err
	}
	var set *streamSet
	if w.streams {
		var open poolStats
		if set, open, err = env.OpenStreams(ctx, users, streamOptions{Track: true, Reconnect: true}); err != nil {
			return nil, err
		}
		defer set.stop(context.Background()) // stop is idempotent: this covers early returns
		if open.Opened < int64(len(users)) {
			return nil, fmt.Errorf("%d of %d streams opened; see the idle workload for capacity", open.Opened, len(users))
		}
	}
	cpu0, haveProc := env.Proc()
	env.Logf("%d publishers, %d users per call, for %v", w.concurrency, batch, w.duration)
	p := &publisher{}
	runCtx, cancel := context.WithTimeout(ctx, w.duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < w.concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := make([]string, batch)
			for runCtx.Err() == nil {
				// Consecutive users from a random start: distinct within
				// a call, spread over all users across calls.
				at := rand.N(len(users))
				for j := range ids {
					ids[j] = users[(at+j)%len(users)].ID
				}
				// The call itself runs under ctx: one cut at the deadline
				// could be committed yet uncounted.
				p.publishOnce(ctx, env, append([]string(nil), ids...))
			}
		}()
	}
	wg.Wait()
	p.elapsed = time.Since(start)
	cpu1, _ := env.Proc()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	r := &Result{}
	events := p.events.Load()
	r.Add("events_per_s", "events/s", float64(events)/p.elapsed.Seconds())
	r.Add("calls_per_s", "calls/s", float64(p.calls.Load())/p.elapsed.Seconds())
	r.Add("events", "events", float64(events))
	r.Add("errors", "calls", float64(p.errors.Load()))
	r.Add("publish_p50", "ms", ms(p.latency.Quantile(0.5)))
	r.Add("publish_p99", "ms", ms(p.latency.Quantile(0.99)))
	r.Add("publish_max", "ms", ms(p.latency.Max()))
	if haveProc {
		r.Add("server_cpu", "% of a core", cpuPercent(cpu0, cpu1))
	}
	if set != nil {
		if !set.waitReceived(ctx, events, w.drain) {
			env.Logf("not every event arrived within --drain %v", w.drain)
		}
		final, err := set.stop(ctx)
		if err != nil {
			return nil, err
		}
		r.Add("received", "events", float64(final.Events))
		r.Add("lost", "events", float64(events-final.Events))
		r.Add("gaps", "ids", float64(final.Gaps))
		r.Add("dups", "events", float64(final.Dups))
		r.Add("latency_p50", "ms", ms(final.Latency.Quantile(0.5)))
		r.Add("latency_p99", "ms", ms(final.Latency.Quantile(0.99)))
	}
	if s := p.sample(); s != "" {
		r.Notef("publish error: %s", s)
	}
	return r, nil
}
