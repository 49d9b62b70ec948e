package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func init() { register(func() Workload { return &latency{} }) }

// latency measures publish-to-receive time: users hold one stream each while
// durable events are published to random users at a fixed rate through
// POST /api/publish. Each event carries its send time; each stream checks
// that its ids follow each other with no gap or duplicate. On the embedded
// store it also reports the writer's own share (store_wait_*,
// store_commit_p99, from its histograms in /metrics).
type latency struct {
	users      int
	rate       float64
	duration   time.Duration
	batch      int
	publishers int
	drain      time.Duration
}

func (*latency) Name() string { return "latency" }

func (*latency) Synopsis() string {
	return "publish events to random users at a fixed rate: publish-to-receive p50/p90/p99/max, lost events"
}

func (w *latency) Flags(fs *flag.FlagSet) {
	fs.IntVar(&w.users, "users", 1000, "users, each holding one stream")
	fs.Float64Var(&w.rate, "rate", 1000, "events published per second, in total")
	fs.DurationVar(&w.duration, "duration", 10*time.Second, "how long to publish")
	fs.IntVar(&w.batch, "batch", 0, "users per publish call (0: rate/200, between 1 and 100)")
	fs.IntVar(&w.publishers, "publishers", 32, "publish calls in flight at most")
	fs.DurationVar(&w.drain, "drain", 10*time.Second, "how long to wait for the last events after publishing stops")
}

func (w *latency) Run(ctx context.Context, env *Env) (*Result, error) {
	if w.users < 1 || w.rate <= 0 || w.duration <= 0 || w.publishers < 1 {
		return nil, errFlag("--users, --rate, --duration and --publishers must be positive")
	}
	batch := w.batch
	if batch <= 0 {
		batch = min(max(int(w.rate/200), 1), 100)
	}
	batch = min(batch, w.users)
	users, err := env.Users(ctx, w.users)
	if err != nil {
		return nil, err
	}
	set, open, err := env.OpenStreams(ctx, users, streamOptions{Track: true, Reconnect: true})
	if err != nil {
		return nil, err
	}
	defer set.stop(context.Background()) // stop is idempotent: this covers early returns
	if open.Opened < int64(len(users)) {
		return nil, fmt.Errorf("%d of %d streams opened; latency needs them all (see the idle workload for capacity)", open.Opened, len(users))
	}

	env.Logf("publishing %.0f events/s to %d users for %v (%d per call)", w.rate, w.users, w.duration, batch)
	// Before the CPU reading: the scrape is not the workload's cost.
	times0 := readStoreTimes(ctx, env)
	cpu0, haveProc := env.Proc()
	pub := publishAtRate(ctx, env, users, w.rate, w.duration, batch, w.publishers)
	if !set.waitReceived(ctx, pub.events.Load(), w.drain) {
		env.Logf("not every event arrived within --drain %v", w.drain)
	}
	cpu1, _ := env.Proc()
	times1 := readStoreTimes(ctx, env)
	final, err := set.stop(ctx)
	if err != nil {
		return nil, err
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	r := &Result{}
	published := pub.events.Load()
	r.Add("users", "users", float64(w.users))
	r.Add("target_rate", "events/s", w.rate)
	r.Add("achieved_rate", "events/s", float64(published)/pub.elapsed.Seconds())
	r.Add("published", "events", float64(published))
	r.Add("publish_calls", "calls", float64(pub.calls.Load()))
	r.Add("publish_errors", "calls", float64(pub.errors.Load()))
	r.Add("received", "events", float64(final.Events))
	r.Add("lost", "events", float64(published-final.Events))
	r.Add("gaps", "ids", float64(final.Gaps))
	r.Add("dups", "events", float64(final.Dups))
	r.Add("streams_dropped", "streams", float64(final.Dropped))
	lat := final.Latency
	r.Add("latency_p50", "ms", ms(lat.Quantile(0.5)))
	r.Add("latency_p90", "ms", ms(lat.Quantile(0.9)))
	r.Add("latency_p99", "ms", ms(lat.Quantile(0.99)))
	r.Add("latency_max", "ms", ms(lat.Max()))
	r.Add("publish_p50", "ms", ms(pub.latency.Quantile(0.5)))
	r.Add("publish_p99", "ms", ms(pub.latency.Quantile(0.99)))
	addStoreTimes(r, times0, times1)
	if haveProc && published > 0 {
		// From the first publish until the last event arrived: the cost of
		// an event is its publish call, its commit and its delivery.
		r.Add("server_cpu", "% of a core", cpuPercent(cpu0, cpu1))
		r.Add("server_cpu_per_event", "µs", cpuSeconds(cpu0, cpu1)/float64(published)*1e6)
	}
	if pub.behind.Load() > 0 {
		r.Notef("the publishers fell behind the schedule %d times (all %d calls in flight): at those moments the server answered too slowly for the rate", pub.behind.Load(), w.publishers)
	}
	if final.Resets > 0 || final.BadData > 0 {
		r.Notef("%d reset events, %d events without a readable send time", final.Resets, final.BadData)
	}
	if s := pub.sample(); s != "" {
		r.Notef("publish error: %s", s)
	}
	return r, nil
}

// failures counts failed calls and keeps the first error as a sample.
type failures struct {
	errors    atomic.Int64
	mu        sync.Mutex
	errSample string
}

// fail records err unless ctx has ended (a call cut off by the end of the
// run is not a failure).
func (f *failures) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	f.errors.Add(1)
	f.mu.Lock()
	if f.errSample == "" {
		f.errSample = err.Error()
	}
	f.mu.Unlock()
}

func (f *failures) sample() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errSample
}

// publisher counts what publishAtRate and throughput sent.
type publisher struct {
	failures
	events, calls, behind atomic.Int64
	latency               Hist
	elapsed               time.Duration
}

// publishOnce publishes one app.bench event, stamped with the current time, to
// ids and counts the outcome.
func (p *publisher) publishOnce(ctx context.Context, env *Env, ids []string) {
	data := json.RawMessage(strconv.AppendInt([]byte(`{"t":`), time.Now().UnixNano(), 10))
	data = append(data, '}')
	start := time.Now()
	got, err := env.Rest.Publish(ctx, ids, "app.bench", data)
	p.latency.Record(time.Since(start))
	p.calls.Add(1)
	if err != nil {
		p.fail(ctx, err)
		return
	}
	p.events.Add(int64(len(got)))
}

// publishAtRate publishes rate events per second for d (rate×d events in all;
// later than d when the server answers too slowly), batch users per call,
// with at most inflight calls at once. Users are drawn from a shuffled order,
// so one call never names a user twice and all users get about as many events.
func publishAtRate(ctx context.Context, env *Env, users []User, rate float64, d time.Duration, batch, inflight int) *publisher {
	p := &publisher{}
	jobs := make(chan []string, inflight)
	var wg sync.WaitGroup
	for i := 0; i < inflight; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ids := range jobs {
				p.publishOnce(ctx, env, ids)
			}
		}()
	}
	order := rand.Perm(len(users))
	next := 0
	pick := func(k int) []string {
		if next+k > len(order) {
			rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			next = 0
		}
		ids := make([]string, k)
		for i := range ids {
			ids[i] = users[order[next+i]].ID
		}
		next += k
		return ids
	}
	interval := time.Duration(float64(batch) / rate * float64(time.Second))
	interval = min(max(interval, time.Millisecond), 100*time.Millisecond)
	tick := time.NewTicker(interval)
	start := time.Now()
	var sent int64
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-tick.C:
			el := now.Sub(start)
			if el > d {
				el = d
			}
			due := int64(rate*el.Seconds()) - sent
			for due > 0 {
				k := int(min(due, int64(batch)))
				ids := pick(k)
				select {
				case jobs <- ids:
				default:
					// Every publisher is busy: wait for one. The schedule
					// catches up afterwards, so every scheduled event is
					// sent and achieved_rate shows the delay.
					p.behind.Add(1)
					select {
					case jobs <- ids:
					case <-ctx.Done():
						break loop
					}
				}
				sent += int64(k)
				due -= int64(k)
			}
			if el >= d {
				break loop
			}
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	p.elapsed = time.Since(start)
	return p
}
