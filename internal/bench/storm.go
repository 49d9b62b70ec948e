package bench

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/client"
)

func init() { register(func() Workload { return &storm{} }) }

// storm is a reconnect storm: N users hold one stream each, all streams are
// dropped at once (as when a load balancer or the network restarts), each
// user gets --missed durable events while it is away, and then every stream
// reconnects at once with Last-Event-ID. It reports how long until every
// stream has caught up, checks that each missed event arrived exactly once,
// and samples GET /healthz throughout the reconnection, from a separate
// probe process.
//
// The streams are held in this process (a storm is about one wave of
// reconnections, which one process can hold up to its open-files limit).
type storm struct {
	streams     int
	missed      int
	concurrency int
	batch       int
	probe       time.Duration
	deadline    time.Duration
}

func (*storm) Name() string { return "storm" }

func (*storm) Synopsis() string {
	return "drop N streams at once, publish while they are away, reconnect all with Last-Event-ID: catch-up time, exactly-once, /healthz latency"
}

func (w *storm) Flags(fs *flag.FlagSet) {
	fs.IntVar(&w.streams, "streams", 1000, "users, each holding one stream (held in this process)")
	fs.IntVar(&w.missed, "missed", 10, "durable events each user misses while its stream is down")
	fs.IntVar(&w.concurrency, "concurrency", 2000, "reconnections in flight at once (dials and ready events)")
	fs.IntVar(&w.batch, "batch", 1000, "users per publish call while the streams are down")
	fs.DurationVar(&w.probe, "probe", 10*time.Millisecond, "interval of the /healthz probe during the storm")
	fs.DurationVar(&w.deadline, "deadline", 60*time.Second, "give up on the catch-up after this long")
}

// stormStream is one user's stream across the storm.
type stormStream struct {
	user   User
	last   int64 // newest durable id seen before the drop
	target int64 // last + missed: caught up when this id arrives
	got    atomic.Int64
	dups   atomic.Int64
	gaps   atomic.Int64
	st     *client.Stream
}

func (w *storm) Run(ctx context.Context, env *Env) (*Result, error) {
	if w.streams < 1 || w.missed < 1 || w.concurrency < 1 || w.batch < 1 || w.probe <= 0 {
		return nil, errFlag("--streams, --missed, --concurrency, --batch and --probe must be positive")
	}
	if w.streams > env.opts.perWorker {
		return nil, errFlag(fmt.Sprintf("storm holds its streams in this process: at most --per-worker (%d)", env.opts.perWorker))
	}
	users, err := env.Users(ctx, w.streams)
	if err != nil {
		return nil, err
	}
	tr := client.NewTransport(nil)
	tr.WriteBufferSize, tr.ReadBufferSize, tr.MaxIdleConnsPerHost = 1024, 4096, 0
	tr.DisableKeepAlives = true
	defer tr.CloseIdleConnections()
	base := client.New(env.Target.URL, client.WithHTTPClient(&http.Client{Transport: tr}))
	ss := make([]*stormStream, len(users))
	for i, u := range users {
		ss[i] = &stormStream{user: u}
	}

	// Phase 1: open every stream and read its ready event for the newest id.
	env.Logf("opening %d streams", len(ss))
	sem := make(chan struct{}, env.opts.openConcurrency)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st, last, err := stormOpen(ctx, base.WithToken(s.user.Token), 0, false)
			if err != nil {
				failed.Add(1)
				return
			}
			s.st, s.last = st, last
		}()
	}
	wg.Wait()
	closeAll := func() {
		for _, s := range ss {
			if s.st != nil {
				s.st.Close()
				s.st = nil
			}
		}
	}
	defer closeAll()
	if n := failed.Load(); n > 0 {
		return nil, fmt.Errorf("%d of %d streams did not open", n, len(ss))
	}
	m0 := env.ServerMetrics(ctx, mStreamsOpen)

	// Phase 2: drop them all at once, and wait until the server has let go.
	env.Logf("dropping all %d streams", len(ss))
	closeAll()
	waitStreamsClosed(ctx, env, m0[mStreamsOpen]-float64(len(ss)))

	// Phase 3: publish the events they miss.
	env.Logf("publishing %d events to each user while away", w.missed)
	pub := &publisher{}
	pubSem := make(chan struct{}, 16)
	for k := 0; k < w.missed; k++ {
		for i := 0; i < len(ss); i += w.batch {
			part := ss[i:min(i+w.batch, len(ss))]
			ids := make([]string, len(part))
			for j, s := range part {
				ids[j] = s.user.ID
			}
			wg.Add(1)
			pubSem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-pubSem }()
				pub.publishOnce(ctx, env, ids)
			}()
		}
		wg.Wait() // keep each user's events in order of k
	}
	if n := pub.errors.Load(); n > 0 {
		return nil, fmt.Errorf("%d publish calls failed: %s", n, pub.sample())
	}
	for _, s := range ss {
		s.target = s.last + int64(w.missed)
	}

	// Phase 4: the storm. Every stream reconnects at once (bounded by
	// --concurrency dials in flight) while /healthz is probed.
	env.Logf("reconnecting %d streams with Last-Event-ID", len(ss))
	probe, err := startProbe(env.Target.URL, w.probe, env.Stderr)
	if err != nil {
		return nil, err
	}
	dctx, cancelStorm := context.WithTimeout(ctx, w.deadline)
	defer cancelStorm()
	var caught, reopenFail atomic.Int64
	var catchLat Hist
	allDone := make(chan struct{})
	start := time.Now()
	stormSem := make(chan struct{}, w.concurrency)
	var readers sync.WaitGroup
	for _, s := range ss {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var st *client.Stream
			var err error
			for dctx.Err() == nil {
				stormSem <- struct{}{}
				st, _, err = stormOpen(dctx, base.WithToken(s.user.Token), s.last, true)
				<-stormSem
				if err == nil {
					break
				}
				reopenFail.Add(1)
				sleepCtx(dctx, 100*time.Millisecond)
			}
			if err != nil {
				return
			}
			defer st.Close()
			r := st.Reader()
			last := s.last
			for last < s.target {
				raw, err := r.Next()
				if err != nil {
					return
				}
				if !raw.HasID {
					continue
				}
				id, _ := strconv.ParseInt(string(raw.ID), 10, 64)
				switch {
				case id <= last:
					s.dups.Add(1)
					continue
				case id > last+1:
					s.gaps.Add(id - last - 1)
				}
				last = id
				s.got.Add(1)
			}
			catchLat.Record(time.Since(start))
			if caught.Add(1) == int64(len(ss)) {
				close(allDone)
			}
		}()
	}
	select {
	case <-allDone:
	case <-dctx.Done():
	}
	elapsed := time.Since(start)
	health, err := probe.stop(ctx)
	if err != nil {
		return nil, err
	}
	cancelStorm()
	readers.Wait()

	var got, dups, gaps int64
	for _, s := range ss {
		got += s.got.Load()
		dups += s.dups.Load()
		gaps += s.gaps.Load()
	}
	r := &Result{}
	r.Add("streams", "streams", float64(len(ss)))
	r.Add("missed_per_stream", "events", float64(w.missed))
	r.Add("caught_up", "streams", float64(caught.Load()))
	r.Add("catch_up_all", "s", elapsed.Seconds())
	r.Add("catch_up_p50", "ms", ms(catchLat.Quantile(0.5)))
	r.Add("catch_up_p99", "ms", ms(catchLat.Quantile(0.99)))
	r.Add("events_expected", "events", float64(len(ss)*w.missed))
	r.Add("events_received", "events", float64(got))
	r.Add("dups", "events", float64(dups))
	r.Add("gaps", "ids", float64(gaps))
	r.Add("reconnect_failures", "attempts", float64(reopenFail.Load()))
	// Probed from a process of its own (probe.go): a new connection per
	// request, then one kept-alive connection.
	r.Add("healthz_samples", "requests", float64(health.Dial.Count()))
	r.Add("healthz_p50", "ms", ms(health.Dial.Quantile(0.5)))
	r.Add("healthz_p99", "ms", ms(health.Dial.Quantile(0.99)))
	r.Add("healthz_max", "ms", ms(health.Dial.Max()))
	r.Add("healthz_errors", "requests", float64(health.DialErrors))
	r.Add("healthz_keepalive_p50", "ms", ms(health.Kept.Quantile(0.5)))
	r.Add("healthz_keepalive_p99", "ms", ms(health.Kept.Quantile(0.99)))
	r.Add("healthz_keepalive_max", "ms", ms(health.Kept.Max()))
	r.Add("healthz_keepalive_errors", "requests", float64(health.KeptErrors))
	if health.FirstFailure != "" {
		r.Notef("first failed /healthz probe: %s", health.FirstFailure)
	}
	if caught.Load() < int64(len(ss)) {
		r.Notef("%d streams had not caught up after --deadline %v", int64(len(ss))-caught.Load(), w.deadline)
	}
	return r, nil
}

// stormOpen opens a stream (from last when resume is set) and reads its ready
// event, returning the stream and the ready event's last_id.
func stormOpen(ctx context.Context, c *client.Client, last int64, resume bool) (*client.Stream, int64, error) {
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	st, err := c.Stream(ctx, client.StreamOptions{LastEventID: last, Resume: resume, BufferSize: 512})
	if err != nil {
		cancel()
		return nil, 0, err
	}
	stop := context.AfterFunc(octx, func() {
		if ctx.Err() != nil || octx.Err() == context.DeadlineExceeded {
			st.Close()
		}
	})
	raw, err := st.Reader().Next()
	stop()
	cancel()
	var lastID int64
	if err == nil {
		lastID, err = readyLastID(raw)
	}
	if err != nil {
		st.Close()
		return nil, 0, err
	}
	return st, lastID, nil
}
