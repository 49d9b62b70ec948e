package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/client"
)

func init() { register(func() Workload { return &chat{} }) }

// chat is the conversation workload of issue 3: client users each open one
// conversation with a professional (POST /api/conversations with the first
// message), every user of both sides holds one stream, and messages are sent
// at a fixed total rate in random conversations and random directions. Each
// body carries its send time. It measures send-to-receive latency (the
// recipient's message.created), delivered-receipt latency (until the
// sender's stream gets a receipt of kind delivered covering the message's
// seq), server CPU per 1,000 messages over the send window, and lost or
// duplicated messages; on the embedded store, the writer's share of the
// latency as well (store_wait_*, store_commit_p99).
//
// With several --url nodes, user k's stream and its API calls go to node
// k mod N, and a client and its professional sit on different nodes.
type chat struct {
	conversations int
	professionals int
	rate          float64
	duration      time.Duration
	senders       int
	drain         time.Duration
	aux           stringList

	// Users and conversations are kept across --runs.
	clients, pros []chatUser
	convs         []chatConv
}

type chatUser struct {
	User
	node int
}

type chatConv struct {
	id          string
	client, pro int // indexes into clients and pros
}

func (*chat) Name() string { return "chat" }

func (*chat) Synopsis() string {
	return "client/professional conversations, messages at a fixed rate: send-to-receive and delivered-receipt p50/p99, CPU-s per 1k messages"
}

func (w *chat) Flags(fs *flag.FlagSet) {
	fs.IntVar(&w.conversations, "conversations", 1000, "client users, each opening one conversation")
	fs.IntVar(&w.professionals, "professionals", 0, "professional users; conversations are spread over them round-robin (0: one per conversation)")
	fs.Float64Var(&w.rate, "rate", 500, "messages per second, in total")
	fs.DurationVar(&w.duration, "duration", 10*time.Second, "how long to send")
	fs.IntVar(&w.senders, "senders", 128, "message requests in flight at most")
	fs.DurationVar(&w.drain, "drain", 15*time.Second, "how long to wait for the last messages and receipts after sending stops")
	fs.Var(&w.aux, "aux-pid", "`name=pid` of a helper process (PostgreSQL's postmaster, redis-server) whose CPU, with its children's, is reported per 1k messages (repeatable)")
}

// chatState is what the streams of one run observed.
type chatState struct {
	recvLat, delivLat  Hist
	received, dupMsgs  atomic.Int64
	delivered          atomic.Int64
	idGaps, idDups     atomic.Int64
	dropped, badEvents atomic.Int64

	mu   sync.Mutex
	seen map[string]struct{} // message ids received by their recipient
}

// chatBodyPrefix starts each timed message body; the first messages of the
// conversations lack it and are not measured.
const chatBodyPrefix = "bench t="

func (w *chat) Run(ctx context.Context, env *Env) (*Result, error) {
	if w.conversations < 1 || w.professionals < 0 || w.rate <= 0 || w.duration <= 0 || w.senders < 1 {
		return nil, errFlag("--conversations, --rate, --duration and --senders must be positive")
	}
	pros := w.professionals
	if pros == 0 || pros > w.conversations {
		pros = w.conversations
	}
	aux, err := parseAux(w.aux)
	if err != nil {
		return nil, err
	}
	nodes := max(len(env.Target.URLs), 1)
	tr := client.NewTransport(nil)
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 4*w.senders, 2*w.senders
	defer tr.CloseIdleConnections()
	rest := make([]*client.Client, nodes)
	for i := range rest {
		rest[i] = client.New(env.Target.nodeURL(i), client.WithHTTPClient(&http.Client{Transport: tr, Timeout: 60 * time.Second}))
	}
	if err := w.setup(ctx, env, rest, pros); err != nil {
		return nil, err
	}

	st := &chatState{seen: map[string]struct{}{}}
	streams := newChatStreams(env, st)
	all := append(append([]chatUser(nil), w.clients...), w.pros...)
	start := time.Now()
	env.Logf("opening %d streams", len(all))
	opened, refused := streams.open(ctx, all)
	defer streams.stop()
	env.Logf("%d of %d streams open in %v", opened, len(all), time.Since(start).Round(time.Millisecond))
	if opened < len(all) {
		return nil, fmt.Errorf("%d of %d streams opened (%s); chat needs them all (401: the idle logout ended sessions between runs; give the server --idle-timeout 0)", opened, len(all), refused)
	}
	if !sleepCtx(ctx, time.Second) { // let presence and earlier events pass
		return nil, ctx.Err()
	}

	env.Logf("sending %.0f messages/s in %d conversations for %v", w.rate, len(w.convs), w.duration)
	load0 := loadAvg()
	// Before the CPU reading: the scrape is not the workload's cost.
	times0 := readStoreTimes(ctx, env)
	cpu0, haveProc := env.Proc()
	aux0 := auxTicks(aux)
	snd := w.send(ctx, rest, st)
	deadline := time.Now().Add(w.drain)
	for (st.received.Load() < snd.ok.Load() || st.delivered.Load() < snd.ok.Load()) && time.Now().Before(deadline) {
		if !sleepCtx(ctx, 20*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	cpu1, _ := env.Proc()
	times1 := readStoreTimes(ctx, env)
	aux1 := auxTicks(aux)
	window := cpu1.At.Sub(cpu0.At)
	streams.stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	sent := snd.ok.Load()
	r := &Result{}
	r.Add("conversations", "conversations", float64(len(w.convs)))
	r.Add("professionals", "users", float64(len(w.pros)))
	r.Add("streams", "streams", float64(opened))
	r.Add("target_rate", "messages/s", w.rate)
	r.Add("achieved_rate", "messages/s", float64(sent)/snd.elapsed.Seconds())
	r.Add("sent", "messages", float64(sent))
	r.Add("send_errors", "requests", float64(snd.errors.Load()))
	r.Add("received", "messages", float64(st.received.Load()))
	r.Add("lost", "messages", float64(sent-st.received.Load()))
	r.Add("duplicated", "messages", float64(st.dupMsgs.Load()+st.idDups.Load()))
	r.Add("id_gaps", "ids", float64(st.idGaps.Load()))
	r.Add("streams_dropped", "streams", float64(st.dropped.Load()))
	r.Add("latency_p50", "ms", ms(st.recvLat.Quantile(0.5)))
	r.Add("latency_p99", "ms", ms(st.recvLat.Quantile(0.99)))
	r.Add("latency_max", "ms", ms(st.recvLat.Max()))
	r.Add("delivered_receipts", "messages", float64(st.delivered.Load()))
	r.Add("delivered_p50", "ms", ms(st.delivLat.Quantile(0.5)))
	r.Add("delivered_p99", "ms", ms(st.delivLat.Quantile(0.99)))
	r.Add("send_p50", "ms", ms(snd.latency.Quantile(0.5)))
	r.Add("send_p99", "ms", ms(snd.latency.Quantile(0.99)))
	addStoreTimes(r, times0, times1)
	if haveProc && sent > 0 {
		r.Add("server_cpu", "% of a core", cpuPercent(cpu0, cpu1))
		r.Add("server_cpu_per_1k", "CPU-s/1k messages", cpuSeconds(cpu0, cpu1)/(float64(sent)/1000))
		r.Add("server_rss", "MiB", float64(cpu1.RSS)/(1<<20))
	}
	for _, a := range aux {
		if t0, ok0 := aux0[a.name]; ok0 && sent > 0 {
			if t1, ok1 := aux1[a.name]; ok1 {
				r.Add(a.name+"_cpu_per_1k", "CPU-s/1k messages", float64(t1-t0)/clockTicks/(float64(sent)/1000))
			}
		}
	}
	env.Logf("run: %.0f messages/s sent, %d lost, latency p50 %.1f ms p99 %.1f ms, delivered p50 %.1f ms p99 %.1f ms",
		float64(sent)/snd.elapsed.Seconds(), sent-st.received.Load(), ms(st.recvLat.Quantile(0.5)), ms(st.recvLat.Quantile(0.99)),
		ms(st.delivLat.Quantile(0.5)), ms(st.delivLat.Quantile(0.99)))
	r.Notef("machine load average (1 min) %s at the start of sending, %s at the end", load0, loadAvg())
	r.Notef("CPU window %.1fs: from the first send until every message and receipt arrived (or --drain)", window.Seconds())
	if snd.behind.Load() > 0 {
		r.Notef("the senders fell behind the schedule %d times (all %d requests in flight)", snd.behind.Load(), w.senders)
	}
	if s := snd.sample(); s != "" {
		r.Notef("send error: %s", s)
	}
	if n := st.badEvents.Load(); n > 0 {
		r.Notef("%d events could not be read", n)
	}
	return r, nil
}

// setup registers the users and opens the conversations, once.
func (w *chat) setup(ctx context.Context, env *Env, rest []*client.Client, pros int) error {
	if len(w.convs) == w.conversations && len(w.pros) == pros {
		return nil
	}
	w.clients, w.pros, w.convs = nil, nil, nil
	start := time.Now()
	nodes := len(rest)
	// User k (clients first, then professionals) lives on node k mod N.
	var err error
	if w.clients, err = registerRole(ctx, env, rest, "c", client.RoleClient, w.conversations, 0); err != nil {
		return err
	}
	if w.pros, err = registerRole(ctx, env, rest, "p", client.RoleProfessional, pros, w.conversations); err != nil {
		return err
	}
	env.Logf("registered %d users in %v", w.conversations+pros, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	convs := make([]chatConv, w.conversations)
	err = parallel(ctx, env.opts.registerConcurrency, len(convs), func(ctx context.Context, i int) error {
		c := w.clients[i]
		p := w.pros[i%pros]
		conv, err := retry(ctx, func() (*client.Conversation, error) {
			return rest[c.node%nodes].WithToken(c.Token).CreateConversation(ctx, client.CreateConversation{
				ProfessionalID: p.ID, Subject: "bench",
				Message: client.NewMessage{Body: "hello", ClientID: "open-" + strconv.Itoa(i)}})
		})
		if err != nil {
			return err
		}
		convs[i] = chatConv{id: conv.ID, client: i, pro: i % pros}
		return nil
	})
	if err != nil {
		return fmt.Errorf("open conversations: %w", err)
	}
	w.convs = convs
	env.Logf("opened %d conversations in %v", len(convs), time.Since(start).Round(time.Millisecond))
	return nil
}

// registerRole registers n users of a role, named bench_<run>_<tag><i>; user
// i is on node (offset+i) mod N.
func registerRole(ctx context.Context, env *Env, rest []*client.Client, tag, role string, n, offset int) ([]chatUser, error) {
	out := make([]chatUser, n)
	err := parallel(ctx, env.opts.registerConcurrency, n, func(ctx context.Context, i int) error {
		node := (offset + i) % len(rest)
		name := fmt.Sprintf("bench_%s_%s%d", env.users.runID, tag, i)
		a, err := retry(ctx, func() (*client.Auth, error) {
			return rest[node].WithToken("").Register(ctx, client.Register{Username: name, Password: benchPassword, Role: role})
		})
		if err != nil {
			return fmt.Errorf("register %s: %w", name, err)
		}
		out[i] = chatUser{User{a.User.ID, a.Token}, node}
		return nil
	})
	return out, err
}

// retry calls f until it succeeds, waiting out 429, 503 and transport errors
// (at most 20 tries).
func retry[T any](ctx context.Context, f func() (T, error)) (T, error) {
	for attempt := 0; ; attempt++ {
		v, err := f()
		if err == nil {
			return v, nil
		}
		var e *client.Error
		isErr := errors.As(err, &e)
		if ctx.Err() != nil || attempt >= 20 ||
			(isErr && e.Status != http.StatusTooManyRequests && e.Status != http.StatusServiceUnavailable) {
			return v, err
		}
		wait := 100 * time.Millisecond
		if isErr {
			wait = max(e.RetryAfter, wait)
		}
		if !sleepCtx(ctx, wait) {
			return v, ctx.Err()
		}
	}
}

// parallel runs f(0..n-1) on conc goroutines and returns the first error.
func parallel(ctx context.Context, conc, n int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for g := 0; g < min(max(conc, 1), n); g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = ctx.Err()
	}
	return first
}

// chatSender counts the messages sent.
type chatSender struct {
	failures
	ok, behind atomic.Int64
	latency    Hist
	elapsed    time.Duration
}

// send posts rate messages per second for the duration (later if the server
// answers too slowly: every scheduled message is sent), each in a random
// conversation from a random side, with at most w.senders in flight.
func (w *chat) send(ctx context.Context, rest []*client.Client, st *chatState) *chatSender {
	s := &chatSender{}
	jobs := make(chan int, w.senders)
	var wg sync.WaitGroup
	for i := 0; i < w.senders; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				c := w.convs[rand.N(len(w.convs))]
				u := w.clients[c.client]
				if rand.N(2) == 1 {
					u = w.pros[c.pro]
				}
				t := time.Now()
				body := chatBodyPrefix + strconv.FormatInt(t.UnixNano(), 10)
				_, err := rest[u.node%len(rest)].WithToken(u.Token).SendMessage(ctx, c.id,
					client.SendMessage{Body: body, ClientID: "m" + strconv.Itoa(n) + "-" + strconv.FormatInt(t.UnixNano(), 36)})
				s.latency.Record(time.Since(t))
				if err != nil {
					s.fail(ctx, err)
					continue
				}
				s.ok.Add(1)
			}
		}()
	}
	interval := min(max(time.Duration(float64(time.Second)/w.rate), time.Millisecond), 100*time.Millisecond)
	tick := time.NewTicker(interval)
	start := time.Now()
	sent := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-tick.C:
			el := min(now.Sub(start), w.duration)
			for due := int(w.rate*el.Seconds()) - sent; due > 0; due-- {
				select {
				case jobs <- sent:
				default:
					s.behind.Add(1)
					select {
					case jobs <- sent:
					case <-ctx.Done():
						break loop
					}
				}
				sent++
			}
			if el >= w.duration {
				break loop
			}
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	s.elapsed = time.Since(start)
	return s
}

// chatStreams holds one stream per user and reads what chat measures.
type chatStreams struct {
	env    *Env
	st     *chatState
	tr     *http.Transport
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

func newChatStreams(env *Env, st *chatState) *chatStreams {
	tr := client.NewTransport(nil)
	tr.WriteBufferSize, tr.ReadBufferSize = 1024, 4096
	s := &chatStreams{env: env, st: st, tr: tr}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

func (s *chatStreams) stop() {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.tr.CloseIdleConnections()
	})
}

// open opens every user's stream and returns how many opened, and a summary
// of the failures.
func (s *chatStreams) open(ctx context.Context, users []chatUser) (int, string) {
	nodes := max(len(s.env.Target.URLs), 1)
	hc := &http.Client{Transport: s.tr}
	base := make([]*client.Client, nodes)
	for i := range base {
		base[i] = client.New(s.env.Target.nodeURL(i), client.WithHTTPClient(hc))
	}
	sem := make(chan struct{}, max(s.env.opts.openConcurrency, 1))
	var opened atomic.Int64
	var mu sync.Mutex
	fails := map[string]int{}
	var openWG sync.WaitGroup
	for _, u := range users {
		s.wg.Add(1)
		openWG.Add(1)
		go func(u chatUser) {
			defer s.wg.Done()
			c := base[u.node%nodes].WithToken(u.Token)
			var last int64
			for first := true; ; first = false {
				sem <- struct{}{}
				sctx, cancel := context.WithCancel(s.ctx)
				timer := time.AfterFunc(30*time.Second, cancel)
				stream, err := c.Stream(sctx, client.StreamOptions{LastEventID: last, Resume: !first, BufferSize: 4096})
				var raw client.RawEvent
				if err == nil {
					raw, err = stream.Reader().Next()
					if err == nil && string(raw.Type) != client.EventReady {
						err = fmt.Errorf("first event %q", raw.Type)
					}
				}
				if !timer.Stop() && err == nil {
					err = errors.New("no ready event within 30s")
				}
				<-sem
				if first {
					if err != nil {
						mu.Lock()
						fails[errSummary(err)]++
						mu.Unlock()
					} else {
						opened.Add(1)
					}
					openWG.Done()
				}
				if err != nil {
					if stream != nil {
						stream.Close()
					}
					cancel()
					if first || !sleepCtx(s.ctx, backoff()) {
						return
					}
					continue
				}
				if first {
					var ready struct {
						LastID int64 `json:"last_id"`
					}
					_ = json.Unmarshal(raw.Data, &ready)
					last = ready.LastID
				}
				last = s.read(stream, u.ID, last)
				cancel()
				if s.ctx.Err() != nil {
					return
				}
				s.st.dropped.Add(1)
				if !sleepCtx(s.ctx, backoff()) {
					return
				}
			}
		}(u)
	}
	openWG.Wait()
	var parts []string
	for k, v := range fails {
		parts = append(parts, fmt.Sprintf("%d× %s", v, k))
	}
	return int(opened.Load()), strings.Join(parts, "; ")
}

func errSummary(err error) string {
	var e *client.Error
	if errors.As(err, &e) {
		return fmt.Sprintf("HTTP %d %s", e.Status, e.Code)
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// chatPending is a message of the stream's user still waiting for its
// delivered receipt.
type chatPending struct {
	seq int64
	t   int64 // send time, unix nanos
}

// read consumes one stream until it ends and returns the newest durable id.
func (s *chatStreams) read(stream *client.Stream, me string, last int64) int64 {
	defer stream.Close()
	r := stream.Reader()
	pending := map[string][]chatPending{} // by conversation
	var msg struct {
		ID             string `json:"id"`
		ConversationID string `json:"conversation_id"`
		Seq            int64  `json:"seq"`
		SenderID       string `json:"sender_id"`
		Body           string `json:"body"`
	}
	var rc struct {
		ConversationID string `json:"conversation_id"`
		UserID         string `json:"user_id"`
		Kind           string `json:"kind"`
		UpToSeq        int64  `json:"up_to_seq"`
	}
	for {
		raw, err := r.Next()
		if err != nil {
			return last
		}
		if !raw.HasID {
			continue
		}
		id, err := strconv.ParseInt(string(raw.ID), 10, 64)
		if err != nil {
			s.st.badEvents.Add(1)
			continue
		}
		if id <= last {
			s.st.idDups.Add(1)
			continue
		}
		if id > last+1 {
			s.st.idGaps.Add(id - last - 1)
		}
		last = id
		now := time.Now().UnixNano()
		switch string(raw.Type) {
		case "message.created":
			msg.Body = ""
			if json.Unmarshal(raw.Data, &msg) != nil {
				s.st.badEvents.Add(1)
				continue
			}
			ts, ok := strings.CutPrefix(msg.Body, chatBodyPrefix)
			if !ok {
				continue
			}
			t, err := strconv.ParseInt(ts, 10, 64)
			if err != nil {
				s.st.badEvents.Add(1)
				continue
			}
			if msg.SenderID == me {
				pending[msg.ConversationID] = append(pending[msg.ConversationID], chatPending{msg.Seq, t})
				continue
			}
			s.st.mu.Lock()
			_, dup := s.st.seen[msg.ID]
			s.st.seen[msg.ID] = struct{}{}
			s.st.mu.Unlock()
			if dup {
				s.st.dupMsgs.Add(1)
				continue
			}
			s.st.received.Add(1)
			s.st.recvLat.Record(time.Duration(now - t))
		case "receipt":
			if json.Unmarshal(raw.Data, &rc) != nil {
				s.st.badEvents.Add(1)
				continue
			}
			if rc.Kind != "delivered" || rc.UserID == me {
				continue
			}
			p := pending[rc.ConversationID]
			k := 0
			for ; k < len(p) && p[k].seq <= rc.UpToSeq; k++ {
				s.st.delivered.Add(1)
				s.st.delivLat.Record(time.Duration(now - p[k].t))
			}
			if k > 0 {
				pending[rc.ConversationID] = append(p[:0], p[k:]...)
			}
		}
	}
}

// auxProc is a helper process named by --aux-pid.
type auxProc struct {
	name string
	pid  int
}

func parseAux(list stringList) ([]auxProc, error) {
	var out []auxProc
	for _, v := range list {
		name, p, ok := strings.Cut(v, "=")
		pid, err := strconv.Atoi(p)
		if !ok || name == "" || err != nil || pid <= 0 {
			return nil, errFlag(fmt.Sprintf("--aux-pid %q: want name=pid", v))
		}
		out = append(out, auxProc{name, pid})
	}
	return out, nil
}

// auxTicks samples the CPU time of each helper process tree.
func auxTicks(aux []auxProc) map[string]int64 {
	out := map[string]int64{}
	for _, a := range aux {
		if t, ok := treeTicks(a.pid); ok {
			out[a.name] = t
		}
	}
	return out
}

// loadAvg is the machine's one-minute load average, for the notes: other
// processes on a shared machine change every figure.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}
