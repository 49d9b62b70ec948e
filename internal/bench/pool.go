package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/client"
)

// poolSpec tells a stream pool, in this process or in a worker, which streams
// to hold and how.
type poolSpec struct {
	URL      string `json:"url"`
	SourceIP string `json:"source_ip,omitempty"`
	Users    []User `json:"users"`
	// OpenConcurrency bounds the streams being opened at once.
	OpenConcurrency int `json:"open_concurrency"`
	// OpenTimeout bounds the wait for a stream's ready event.
	OpenTimeout time.Duration `json:"open_timeout"`
	// Track parses each durable event's {"t": unix nanos} into Latency.
	Track bool `json:"track"`
	// Reconnect reopens a stream the server ended, from its last id.
	Reconnect bool `json:"reconnect"`
}

// poolStats is what pools report; the stats of several pools add up.
type poolStats struct {
	Attempted    int64    `json:"attempted"`
	Opened       int64    `json:"opened"`
	Refused503   int64    `json:"refused_503"`
	NoRetryAfter int64    `json:"refused_503_without_retry_after"`
	Refused429   int64    `json:"refused_429"`
	Failed       int64    `json:"failed"`
	FailSamples  []string `json:"fail_samples,omitempty"`
	Dropped      int64    `json:"dropped"`       // streams the server ended while held
	ReopenFailed int64    `json:"reopen_failed"` // failed attempts to reopen them
	Pings        int64    `json:"pings"`         // heartbeat comments received
	Events       int64    `json:"events"`        // distinct durable events received
	Dups         int64    `json:"dups"`          // durable ids received again
	Gaps         int64    `json:"gaps"`          // durable ids skipped over
	Resets       int64    `json:"resets"`
	BadData      int64    `json:"bad_data"` // tracked events without a readable "t"
	OpenLatency  *Hist    `json:"open_latency"`
	Latency      *Hist    `json:"latency"`
}

const maxFailSamples = 5

// add merges o into s.
func (s *poolStats) add(o poolStats) {
	s.Attempted += o.Attempted
	s.Opened += o.Opened
	s.Refused503 += o.Refused503
	s.NoRetryAfter += o.NoRetryAfter
	s.Refused429 += o.Refused429
	s.Failed += o.Failed
	for _, f := range o.FailSamples {
		if len(s.FailSamples) < maxFailSamples {
			s.FailSamples = append(s.FailSamples, f)
		}
	}
	s.Dropped += o.Dropped
	s.ReopenFailed += o.ReopenFailed
	s.Pings += o.Pings
	s.Events += o.Events
	s.Dups += o.Dups
	s.Gaps += o.Gaps
	s.Resets += o.Resets
	s.BadData += o.BadData
	for _, h := range []struct {
		dst **Hist
		src *Hist
	}{{&s.OpenLatency, o.OpenLatency}, {&s.Latency, o.Latency}} {
		if h.src == nil {
			continue
		}
		if *h.dst == nil {
			*h.dst = new(Hist)
		}
		(*h.dst).Merge(h.src)
	}
}

// poolHandle is a pool in this process or in a worker process.
type poolHandle interface {
	// waitOpened waits until every stream has been opened or refused once.
	waitOpened(ctx context.Context) (poolStats, error)
	// received returns the durable events received so far (recent, not
	// necessarily exact for a worker).
	received() int64
	// stop closes the streams and returns the final stats.
	stop(ctx context.Context) (poolStats, error)
}

// localPool holds streams in this process, one goroutine each, reading them
// with the client's allocation-free wire parser.
type localPool struct {
	spec   poolSpec
	base   *client.Client
	tr     *http.Transport
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}

	wg        sync.WaitGroup // one per stream goroutine
	opening   sync.WaitGroup // one per stream until its first open is settled
	openedCh  chan struct{}
	stopOnce  sync.Once
	finalStat poolStats

	attempted, opened, refused503, noRetryAfter, refused429, failed   atomic.Int64
	dropped, reopenFailed, pings, events, dups, gaps, resets, badData atomic.Int64
	openLat, lat                                                      Hist

	mu      sync.Mutex
	samples []string
}

// startLocalPool starts opening the streams of spec in the background.
func startLocalPool(spec poolSpec) *localPool {
	var ip net.IP
	if spec.SourceIP != "" {
		ip = net.ParseIP(spec.SourceIP)
	}
	tr := client.NewTransport(ip)
	// Streams only send a small request; keep the per-connection write
	// buffer small, since thousands of connections each hold one.
	tr.WriteBufferSize = 1024
	tr.ReadBufferSize = 4096
	tr.MaxIdleConnsPerHost = 16
	p := &localPool{
		spec:     spec,
		base:     client.New(spec.URL, client.WithHTTPClient(&http.Client{Transport: tr})),
		tr:       tr,
		sem:      make(chan struct{}, max(spec.OpenConcurrency, 1)),
		openedCh: make(chan struct{}),
	}
	if p.spec.OpenTimeout <= 0 {
		p.spec.OpenTimeout = 30 * time.Second
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(len(spec.Users))
	p.opening.Add(len(spec.Users))
	for _, u := range spec.Users {
		go p.hold(u)
	}
	go func() { p.opening.Wait(); close(p.openedCh) }()
	return p
}

func (p *localPool) waitOpened(ctx context.Context) (poolStats, error) {
	select {
	case <-p.openedCh:
		return p.stats(), nil
	case <-ctx.Done():
		return p.stats(), ctx.Err()
	}
}

func (p *localPool) received() int64 { return p.events.Load() }

func (p *localPool) stop(context.Context) (poolStats, error) {
	p.stopOnce.Do(func() {
		p.cancel()
		p.wg.Wait()
		p.tr.CloseIdleConnections()
		p.finalStat = p.stats()
	})
	return p.finalStat, nil
}

func (p *localPool) stats() poolStats {
	p.mu.Lock()
	samples := append([]string(nil), p.samples...)
	p.mu.Unlock()
	return poolStats{
		Attempted: p.attempted.Load(), Opened: p.opened.Load(), Refused503: p.refused503.Load(),
		NoRetryAfter: p.noRetryAfter.Load(), Refused429: p.refused429.Load(), Failed: p.failed.Load(),
		FailSamples: samples, Dropped: p.dropped.Load(), ReopenFailed: p.reopenFailed.Load(),
		Pings: p.pings.Load(), Events: p.events.Load(), Dups: p.dups.Load(), Gaps: p.gaps.Load(),
		Resets: p.resets.Load(), BadData: p.badData.Load(), OpenLatency: &p.openLat, Latency: &p.lat,
	}
}

// hold opens the user's stream and reads it until the pool stops, reopening
// it from its last id if the server ends it and spec.Reconnect is set.
func (p *localPool) hold(u User) {
	defer p.wg.Done()
	c := p.base.WithToken(u.Token)
	first := true
	settle := func() {
		if first {
			first = false
			p.opening.Done()
		}
	}
	defer settle()
	var last int64 // the newest durable id seen, valid once positioned
	positioned := false
	for {
		select {
		case p.sem <- struct{}{}:
		case <-p.ctx.Done():
			return
		}
		start := time.Now()
		st, ready, release, err := p.open(c, last, positioned)
		<-p.sem
		if first {
			p.attempted.Add(1)
			if err != nil {
				p.classify(err)
				return
			}
			p.opened.Add(1)
			p.openLat.Record(time.Since(start))
			settle()
		} else if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.reopenFailed.Add(1)
			if client.StatusCode(err) == http.StatusUnauthorized {
				return // the session is gone: retrying only adds load
			}
			if !sleepCtx(p.ctx, backoff()) {
				return
			}
			continue
		}
		if !positioned {
			last, positioned = ready, true
		}
		last = p.read(st, last)
		st.Close()
		release()
		if p.ctx.Err() != nil {
			return
		}
		p.dropped.Add(1)
		if !p.spec.Reconnect || !sleepCtx(p.ctx, backoff()) {
			return
		}
	}
}

// backoff is the pause before reopening a dropped stream: about the SSE
// retry default, jittered so that many drops do not come back as one wave.
func backoff() time.Duration { return 500*time.Millisecond + rand.N(time.Second) }

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// open opens a stream and reads its ready event, within spec.OpenTimeout. It
// returns the stream, the ready event's last_id, and the function that
// releases the stream's context once the stream is closed.
func (p *localPool) open(c *client.Client, last int64, resume bool) (*client.Stream, int64, context.CancelFunc, error) {
	ctx, cancel := context.WithCancel(p.ctx)
	timer := time.AfterFunc(p.spec.OpenTimeout, cancel)
	st, err := c.Stream(ctx, client.StreamOptions{LastEventID: last, Resume: resume, BufferSize: 512})
	var raw client.RawEvent
	if err == nil {
		raw, err = st.Reader().Next()
	}
	if !timer.Stop() {
		err = fmt.Errorf("no ready event within %v", p.spec.OpenTimeout)
	}
	var lastID int64
	if err == nil {
		lastID, err = readyLastID(raw)
	}
	if err != nil {
		if st != nil {
			st.Close()
		}
		cancel()
		return nil, 0, nil, err
	}
	return st, lastID, cancel, nil
}

// readyLastID checks that a stream's first event is ready and returns its
// last_id.
func readyLastID(raw client.RawEvent) (int64, error) {
	if string(raw.Type) != client.EventReady {
		return 0, fmt.Errorf("first event is %q, not ready", raw.Type)
	}
	var ready struct {
		LastID int64 `json:"last_id"`
	}
	err := json.Unmarshal(raw.Data, &ready)
	return ready.LastID, err
}

// classify counts a failed first open.
func (p *localPool) classify(err error) {
	var e *client.Error
	switch {
	case errors.As(err, &e) && e.Status == http.StatusServiceUnavailable:
		p.refused503.Add(1)
		if e.RetryAfter <= 0 {
			p.noRetryAfter.Add(1)
		}
		return
	case errors.As(err, &e) && e.Status == http.StatusTooManyRequests:
		p.refused429.Add(1)
		return
	}
	p.failed.Add(1)
	p.mu.Lock()
	if len(p.samples) < maxFailSamples {
		p.samples = append(p.samples, err.Error())
	}
	p.mu.Unlock()
}

// read consumes a stream until it ends, checking that durable ids follow
// each other, and returns the newest id.
func (p *localPool) read(st *client.Stream, last int64) int64 {
	r := st.Reader()
	defer func() { p.pings.Add(r.Comments()) }()
	for {
		raw, err := r.Next()
		if err != nil {
			return last
		}
		if !raw.HasID {
			if string(raw.Type) == client.EventReset {
				var reset struct {
					LastID int64 `json:"last_id"`
				}
				if json.Unmarshal(raw.Data, &reset) == nil {
					last = reset.LastID
				}
				p.resets.Add(1)
			}
			continue
		}
		id, err := strconv.ParseInt(string(raw.ID), 10, 64)
		if err != nil {
			p.badData.Add(1)
			continue
		}
		switch {
		case id <= last:
			p.dups.Add(1)
			continue
		case id > last+1:
			p.gaps.Add(id - last - 1)
		}
		last = id
		p.events.Add(1)
		if p.spec.Track {
			if t, ok := parseSendTime(raw.Data); ok {
				p.lat.Record(time.Duration(time.Now().UnixNano() - t))
			} else {
				p.badData.Add(1)
			}
		}
	}
}

var sendTimeKey = []byte(`"t":`)

// parseSendTime reads the unix-nanosecond "t" of an event's data without
// decoding the whole object.
func parseSendTime(data []byte) (int64, bool) {
	i := bytes.Index(data, sendTimeKey)
	if i < 0 {
		return 0, false
	}
	b := bytes.TrimLeft(data[i+len(sendTimeKey):], " ")
	n, j := int64(0), 0
	for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
		n = n*10 + int64(b[j]-'0')
	}
	return n, j > 0 && j < 20
}

// streamSet is the streams of one workload, spread over pools.
type streamSet struct{ parts []poolHandle }

// received sums the events the pools have received so far.
func (s *streamSet) received() int64 {
	var n int64
	for _, p := range s.parts {
		n += p.received()
	}
	return n
}

// stop closes every pool and merges their stats.
func (s *streamSet) stop(ctx context.Context) (poolStats, error) {
	var total poolStats
	var errs []error
	for _, p := range s.parts {
		st, err := p.stop(ctx)
		total.add(st)
		errs = append(errs, err)
	}
	return total, errors.Join(errs...)
}

// waitReceived waits until the pools have received want events, or timeout.
func (s *streamSet) waitReceived(ctx context.Context, want int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for s.received() < want {
		if time.Now().After(deadline) || !sleepCtx(ctx, 50*time.Millisecond) {
			return false
		}
	}
	return true
}
