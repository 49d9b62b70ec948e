package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// readyData is the data of event: ready.
type readyData struct {
	UserID     string `json:"user_id"`
	LastID     *int64 `json:"last_id"`
	ServerTime string `json:"server_time"`
}

// resetData is the data of event: reset.
type resetData struct {
	Reason string `json:"reason"`
	LastID *int64 `json:"last_id"`
}

// wantReady checks a ready event; lastID < 0 accepts any last_id.
func wantReady(tb testing.TB, e servertest.Event, userID string, lastID int64) {
	tb.Helper()
	if e.Type != parley.EventReady || e.HasID {
		tb.Fatalf("first event = %+v, want ready without an id", e)
	}
	var d readyData
	e.Decode(tb, &d)
	if d.UserID != userID || d.LastID == nil || (lastID >= 0 && *d.LastID != lastID) {
		tb.Fatalf("ready = %s, want user_id %s and last_id %d", e.Data, userID, lastID)
	}
	at, err := time.Parse(time.RFC3339Nano, d.ServerTime)
	if err != nil || !strings.HasSuffix(d.ServerTime, "Z") || len(d.ServerTime) < len("2006-01-02T15:04:05.000Z") {
		tb.Fatalf("ready server_time %q is not RFC 3339 UTC with milliseconds", d.ServerTime)
	}
	if skew := time.Since(at); skew < -time.Minute || skew > time.Minute {
		tb.Fatalf("ready server_time %v is %v off", at, skew)
	}
}

func wantReset(tb testing.TB, e servertest.Event, lastID int64) {
	tb.Helper()
	if e.Type != parley.EventReset || e.HasID {
		tb.Fatalf("event = %+v, want reset without an id", e)
	}
	var d resetData
	e.Decode(tb, &d)
	if d.Reason != "history_expired" || d.LastID == nil || *d.LastID != lastID {
		tb.Fatalf("reset = %s, want {\"reason\":\"history_expired\",\"last_id\":%d}", e.Data, lastID)
	}
}

// wantEvents reads durable events and checks that they are exactly ids
// from..to in order, skipping nothing.
func wantEvents(tb testing.TB, s *servertest.Stream, from, to int64) {
	tb.Helper()
	for id := from; id <= to; id++ {
		e := s.Next(tb, 5*time.Second)
		if !e.HasID || e.ID != id {
			tb.Fatalf("got %+v, want durable event %d", e, id)
		}
	}
}

// TestStreamHandshake checks the SSE response headers, that the body starts
// with retry: and then ready (no id:) carrying user_id, last_id and
// server_time, that an idle stream sends ": ping" each heartbeat, and that a user's ids run 1, 2, 3… across replay and live.
func TestStreamHandshake(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		c.Retry = 1500 * time.Millisecond
		c.Heartbeat = 200 * time.Millisecond
	})
	u := n.Register(t, "hand", parley.RoleClient)

	req := newRequest(t, n, "GET", "/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+u.Token)
	req.Header.Set("Accept-Encoding", "gzip") // must not be honoured
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := http.DefaultTransport.RoundTrip(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	for k, want := range map[string]string{
		"Content-Type":      "text/event-stream",
		"Cache-Control":     "no-cache, no-transform",
		"X-Accel-Buffering": "no",
		"Content-Encoding":  "",
	} {
		if got := res.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	// The first bytes arrive without any event being published: the
	// server flushes the preamble at once.
	br := bufio.NewReader(res.Body)
	var lines []string
	for len(lines) < 5 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", lines, err)
		}
		lines = append(lines, strings.TrimRight(line, "\n"))
	}
	if lines[0] != "retry: 1500" || lines[1] != "" {
		t.Fatalf("stream starts with %q, want retry: 1500 and a blank line", lines[:2])
	}
	if lines[2] != "event: ready" || !strings.HasPrefix(lines[3], "data: ") || lines[4] != "" {
		t.Fatalf("second event is %q, want event: ready / data: … with no id:", lines[2:])
	}
	var d readyData
	if err := json.Unmarshal([]byte(strings.TrimPrefix(lines[3], "data: ")), &d); err != nil {
		t.Fatal(err)
	}
	if d.UserID != u.ID || d.LastID == nil || *d.LastID != 0 || d.ServerTime == "" {
		t.Fatalf("ready data %s", lines[3])
	}
	// Then, with nothing to send, a ": ping" comment every heartbeat.
	var pings []time.Time
	for len(pings) < 2 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("waiting for pings: %v", err)
		}
		switch line {
		case ": ping\n":
			pings = append(pings, time.Now())
		case "\n":
		default:
			t.Fatalf("idle stream sent %q, want only pings", line)
		}
	}
	if gap := pings[1].Sub(pings[0]); gap < 100*time.Millisecond || gap > 3*time.Second {
		t.Fatalf("pings %v apart with a 200ms heartbeat", gap)
	}

	// Ids are contiguous from 1: three events before a stream that resumes
	// from 0 (replayed), three after (live).
	for i := 1; i <= 3; i++ {
		if ids := n.Publish(t, "app.before", map[string]int{"i": i}, u.ID); ids[u.ID] != int64(i) {
			t.Fatalf("publish %d got id %d", i, ids[u.ID])
		}
	}
	s := n.OpenStream(t, u.Token, 0)
	wantReady(t, s.Next(t, 5*time.Second), u.ID, 3)
	wantEvents(t, s, 1, 3)
	for i := 4; i <= 6; i++ {
		n.Publish(t, "app.after", map[string]int{"i": i}, u.ID)
	}
	wantEvents(t, s, 4, 6)

	// Without a resume point the stream starts live: nothing is replayed.
	live := n.OpenStream(t, u.Token, -1)
	wantReady(t, live.Next(t, 5*time.Second), u.ID, 6)
	n.Publish(t, "app.after", map[string]int{"i": 7}, u.ID)
	e := live.Next(t, 5*time.Second)
	if e.ID != 7 || e.Type != "app.after" || e.Data != `{"i":7}` {
		t.Fatalf("live event %+v, want id 7 app.after {\"i\":7}", e)
	}
	wantEvents(t, s, 7, 7)
}

// TestStreamResumeUnderLoad publishes 500 events as fast as one publisher
// can while a client drops its stream at 10 random moments and resumes with
// Last-Event-ID; what it received must be ids 1..500, in order, each once.
func TestStreamResumeUnderLoad(t *testing.T) {
	const total, reconnects = 500, 10
	n := servertest.Start(t)
	u := n.Register(t, "resume", parley.RoleClient)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	// The moments to drop the stream, as the last id received before it.
	var drops []int64
	for len(drops) < reconnects {
		if id := 1 + rng.Int64N(total-1); !slices.Contains(drops, id) {
			drops = append(drops, id)
		}
	}
	slices.Sort(drops)

	// A safety net only: the test takes a few seconds, more on a loaded
	// machine, where every publish waits for its fsync.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pubErr := make(chan error, 1)
	var pubDone atomic.Bool
	start := time.Now()
	go func() {
		err := publishSequence(ctx, n, u.ID, total)
		t.Logf("published %d events in %v", total, time.Since(start))
		pubDone.Store(true)
		pubErr <- err
	}()

	var got []int64
	last := int64(0)
	dropped, unexpected, duringLoad := 0, 0, 0
	for last < total {
		s := n.OpenStream(t, u.Token, last)
		// The head moves while the stream opens, so any last_id will do.
		wantReady(t, s.Next(t, 5*time.Second), u.ID, -1)
	read:
		for {
			select {
			case e, ok := <-s.Events:
				if !ok {
					// The server may end a stream (e.g. as too slow); a
					// client resumes the same way.
					unexpected++
					break read
				}
				if !e.HasID {
					t.Fatalf("unexpected ephemeral event %+v after id %d", e, last)
				}
				checkPublished(t, e)
				if e.ID != last+1 {
					t.Fatalf("after id %d got id %d (resumed %d times)", last, e.ID, dropped)
				}
				last = e.ID
				got = append(got, e.ID)
				if last == total {
					s.Close()
					break read
				}
				if len(drops) > 0 && last == drops[0] {
					drops = drops[1:]
					// Let the publisher run ahead a random bit, so some
					// resumes replay from the log and some land live.
					time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
					s.Close()
					dropped++
					if !pubDone.Load() {
						duringLoad++
					}
					break read
				}
			case <-ctx.Done():
				t.Fatalf("timed out at id %d", last)
			}
		}
	}
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}
	if dropped != reconnects {
		t.Fatalf("dropped %d times, want %d", dropped, reconnects)
	}
	if len(got) != total || got[0] != 1 || got[len(got)-1] != total {
		t.Fatalf("received %d events, want ids 1..%d", len(got), total)
	}
	t.Logf("%d events, %d resumes (%d while publishing), %d server-side closes", len(got), dropped, duringLoad, unexpected)
}

// publishSequence publishes events {"i": 1..count} to one user, one request
// each, and checks that event i got id i.
func publishSequence(ctx context.Context, n *servertest.Node, userID string, count int) error {
	for i := 1; i <= count; i++ {
		ids, err := publish(ctx, n, "app.seq", map[string]int{"i": i}, userID)
		if err != nil {
			return fmt.Errorf("publish %d: %w", i, err)
		}
		if ids[userID] != int64(i) {
			return fmt.Errorf("publish %d got id %d", i, ids[userID])
		}
	}
	return nil
}

// checkPublished checks that an event of publishSequence carries its own id.
func checkPublished(tb testing.TB, e servertest.Event) {
	tb.Helper()
	var d struct{ I int64 }
	e.Decode(tb, &d)
	if e.Type != "app.seq" || d.I != e.ID {
		tb.Fatalf("event %d is %s %s, want app.seq {\"i\":%d}", e.ID, e.Type, e.Data, e.ID)
	}
}

// TestPollResumeUnderLoad is the resume test for the long-poll fallback: 500
// events published as fast as possible while the client polls with after =
// the last id it has, and 10 of its polls are cut off in flight at random
// moments (the answer, if any, is lost). The client must still end with ids
// 1..500, in order, each once.
func TestPollResumeUnderLoad(t *testing.T) {
	const total, aborts = 500, 10
	n := servertest.Start(t)
	u := n.Register(t, "pollres", parley.RoleClient)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))

	// A safety net only: the test takes a few seconds, more on a loaded
	// machine, where every publish waits for its fsync.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pubErr := make(chan error, 1)
	start := time.Now()
	go func() {
		err := publishSequence(ctx, n, u.ID, total)
		t.Logf("published %d events in %v", total, time.Since(start))
		pubErr <- err
	}()

	last, received, aborted, polls := int64(0), 0, 0, 0
	for last < total || aborted < aborts {
		if ctx.Err() != nil {
			t.Fatalf("timed out at id %d after %d aborted polls", last, aborted)
		}
		polls++
		pctx, pcancel := ctx, context.CancelFunc(func() {})
		// A long poll, as a client does: it answers as soon as there is
		// something after last.
		wait := 1 + rng.IntN(2)
		if aborted < aborts && (rng.IntN(8) == 0 || last == total) {
			// Cut this poll off at a random moment: before it is sent,
			// while it waits, or while its answer is on the way.
			pctx, pcancel = context.WithTimeout(ctx, time.Duration(rng.IntN(5000))*time.Microsecond)
		}
		res, err := pollCtx(pctx, n, u.Token, last, wait)
		pcancel()
		if err != nil {
			if pctx.Err() == nil {
				t.Fatalf("poll after=%d: %v", last, err)
			}
			aborted++
			continue
		}
		if res.Reset != nil {
			t.Fatalf("poll after=%d answered a reset %+v", last, *res.Reset)
		}
		for _, e := range res.Events {
			if e.ID != last+1 {
				t.Fatalf("poll after=%d: got id %d, want %d", last, e.ID, last+1)
			}
			var d struct{ I int64 }
			if err := json.Unmarshal(e.Data, &d); err != nil || e.Type != "app.seq" || d.I != e.ID {
				t.Fatalf("event %d is %s %s", e.ID, e.Type, e.Data)
			}
			if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
				t.Fatalf("event %d time %q: %v", e.ID, e.Time, err)
			}
			last = e.ID
			received++
		}
		if res.LastID != last {
			t.Fatalf("poll last_id %d, want the last event's id %d", res.LastID, last)
		}
	}
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}
	if received != total || last != total {
		t.Fatalf("received %d events up to id %d, want 1..%d", received, last, total)
	}
	t.Logf("%d events in %d polls, %d cut off", received, polls, aborted)
}

// pollCtx is poll for loops that must survive a cancelled request.
func pollCtx(ctx context.Context, n *servertest.Node, token string, after int64, wait int) (*pollResult, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/api/events/poll?after=%d&wait=%d", n.URL, after, wait), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var out pollResult
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", res.StatusCode)
	}
	return &out, nil
}

// TestPollWait checks the long poll: with nothing new it holds the request
// for wait seconds and answers an empty list; an event arriving meanwhile
// ends the wait early; wait=0 answers at once.
func TestPollWait(t *testing.T) {
	n := servertest.Start(t)
	u := n.Register(t, "pollwait", parley.RoleClient)

	start := time.Now()
	res := poll(t, n, u.Token, 0, 0)
	if d := time.Since(start); d > 500*time.Millisecond || len(res.Events) != 0 || res.LastID != 0 || res.Reset != nil {
		t.Fatalf("wait=0 on an empty log: %+v after %v", res, d)
	}

	// An event 300 ms into a 10 s wait ends it.
	go func() {
		time.Sleep(300 * time.Millisecond)
		_, _ = publish(context.Background(), n, "app.wake", map[string]int{"i": 1}, u.ID)
	}()
	start = time.Now()
	res = poll(t, n, u.Token, 0, 10)
	d := time.Since(start)
	if len(res.Events) != 1 || res.Events[0].ID != 1 || res.Events[0].Type != "app.wake" || res.LastID != 1 {
		t.Fatalf("poll woken by an event answered %+v", res)
	}
	if d < 250*time.Millisecond || d > 5*time.Second {
		t.Fatalf("poll woken by an event took %v, want about 300ms", d)
	}

	// Nothing after id 1: an empty answer after the full wait.
	start = time.Now()
	res = poll(t, n, u.Token, 1, 1)
	d = time.Since(start)
	if len(res.Events) != 0 || res.LastID != 1 || res.Reset != nil {
		t.Fatalf("empty poll answered %+v", res)
	}
	if d < 950*time.Millisecond || d > 4*time.Second {
		t.Fatalf("empty poll with wait=1 took %v, want about 1s", d)
	}

	// Events already there are answered at once, whatever the wait.
	n.Publish(t, "app.more", map[string]int{"i": 2}, u.ID)
	start = time.Now()
	res = poll(t, n, u.Token, 0, 30)
	if d := time.Since(start); d > 2*time.Second || len(res.Events) != 2 || res.LastID != 2 {
		t.Fatalf("poll with events waiting answered %+v after %v", res, d)
	}
}

// TestResetAfterRetention runs a node that keeps only the newest 5 events of
// each log: a resume point older than what is kept, or newer than the head,
// gets event: reset {"reason":"history_expired","last_id":N} and then live
// events from N on, never a partial replay; a resume point just before the
// oldest kept event replays normally; the poll answers the same with its
// reset field.
func TestResetAfterRetention(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		c.RetentionEvents = 5
		c.RetentionAge = 0
		c.RetentionEvery = 50 * time.Millisecond
	})
	u := n.Register(t, "retain", parley.RoleClient)
	for i := 1; i <= 20; i++ {
		n.Publish(t, "app.old", map[string]int{"i": i}, u.ID)
	}
	// Once after=14 is refused, the log holds exactly 16..20.
	eventually(t, 10*time.Second, "events up to 15 to be pruned", func() bool {
		return poll(t, n, u.Token, 14, 0).Reset != nil
	})

	// Resuming from 15 = oldest kept - 1 loses nothing: a plain replay.
	s := n.OpenStream(t, u.Token, 15)
	wantReady(t, s.Next(t, 5*time.Second), u.ID, 20)
	wantEvents(t, s, 16, 20)
	n.Publish(t, "app.new", nil, u.ID)
	wantEvents(t, s, 21, 21)

	// Resuming from 3, whose successors are gone: reset, then live.
	old := n.OpenStream(t, u.Token, 3)
	wantReady(t, old.Next(t, 5*time.Second), u.ID, 21)
	wantReset(t, old.Next(t, 5*time.Second), 21)
	n.Publish(t, "app.new", nil, u.ID)
	wantEvents(t, old, 22, 22)

	// Resuming from beyond the head (the log was rebuilt): reset too.
	ahead := n.OpenStream(t, u.Token, 1000)
	wantReady(t, ahead.Next(t, 5*time.Second), u.ID, 22)
	wantReset(t, ahead.Next(t, 5*time.Second), 22)
	n.Publish(t, "app.new", nil, u.ID)
	wantEvents(t, ahead, 23, 23)
	wantEvents(t, old, 23, 23)
	wantEvents(t, s, 22, 23)

	// The poll: a reset field with the head, no events.
	for _, after := range []int64{0, 3, 1000} {
		res := poll(t, n, u.Token, after, 1)
		if res.Reset == nil || res.Reset.Reason != "history_expired" || res.Reset.LastID != 23 || len(res.Events) != 0 || res.LastID != 23 {
			t.Fatalf("poll after=%d: %+v, want reset history_expired with last_id 23", after, res)
		}
	}
	if res := poll(t, n, u.Token, 22, 1); res.Reset != nil || len(res.Events) != 1 || res.Events[0].ID != 23 {
		t.Fatalf("poll after=22: %+v, want event 23", res)
	}

	// A user with an empty log: 0 is a valid resume point, 5 is not.
	v := n.Register(t, "retain", parley.RoleClient)
	fresh := n.OpenStream(t, v.Token, 5)
	wantReady(t, fresh.Next(t, 5*time.Second), v.ID, 0)
	wantReset(t, fresh.Next(t, 5*time.Second), 0)
	zero := n.OpenStream(t, v.Token, 0)
	wantReady(t, zero.Next(t, 5*time.Second), v.ID, 0)
	n.Publish(t, "app.first", nil, v.ID)
	wantEvents(t, fresh, 1, 1)
	wantEvents(t, zero, 1, 1)
}

// TestShutdownAndResume: a graceful shutdown ends open streams at once
// (they do not hold the shutdown up), and a client that resumes on the next
// node over the same data dir loses nothing: the log and its ids go on.
func TestShutdownAndResume(t *testing.T) {
	a := servertest.Start(t)
	u := a.Register(t, "restart", parley.RoleClient)
	s := a.OpenStream(t, u.Token, 0)
	wantReady(t, s.Next(t, 5*time.Second), u.ID, 0)
	for i := 1; i <= 3; i++ {
		a.Publish(t, "app.before", map[string]int{"i": i}, u.ID)
	}
	wantEvents(t, s, 1, 3)

	start := time.Now()
	a.Stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("shutdown with an open stream took %v", d)
	}
	if rest := ended(t, s, 5*time.Second); len(rest) != 0 {
		t.Fatalf("stream got %+v while shutting down", rest)
	}

	c := a.Config
	c.Addr = "127.0.0.1:0"
	b := servertest.StartConfig(t, c)
	// The same token works: the session is in the store.
	b.Publish(t, "app.after", map[string]int{"i": 4}, u.ID)
	r := b.OpenStream(t, u.Token, 3)
	wantReady(t, r.Next(t, 5*time.Second), u.ID, 4)
	wantEvents(t, r, 4, 4)
}

// TestPollLimitAndLongReplay writes 504 events (from 8 publishers at once,
// which group commit folds together): a poll answers at most 500, in order,
// and the next one the rest; a stream resuming from 0 replays all 504 across
// its 500-event read batches, in order.
func TestPollLimitAndLongReplay(t *testing.T) {
	const publishers, each = 8, 63
	n := servertest.Start(t)
	u := n.Register(t, "limit500", parley.RoleClient)
	t0 := time.Now()
	errs := make(chan error, publishers)
	for range publishers {
		go func() {
			for i := 0; i < each; i++ {
				if _, err := publish(context.Background(), n, "app.bulk", nil, u.ID); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range publishers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	const total = publishers * each
	t.Logf("published at %v", time.Since(t0))

	first := poll(t, n, u.Token, 0, 0)
	if len(first.Events) != 500 || first.LastID != 500 {
		t.Fatalf("poll after=0 answered %d events up to %d, want 500 up to 500", len(first.Events), first.LastID)
	}
	for i, e := range first.Events {
		if e.ID != int64(i+1) {
			t.Fatalf("poll event %d has id %d", i, e.ID)
		}
	}
	rest := poll(t, n, u.Token, 500, 0)
	if len(rest.Events) != total-500 || rest.Events[0].ID != 501 || rest.LastID != total {
		t.Fatalf("poll after=500 answered %d events up to %d, want %d up to %d", len(rest.Events), rest.LastID, total-500, total)
	}

	s := n.OpenStream(t, u.Token, 0)
	wantReady(t, s.Next(t, 5*time.Second), u.ID, total)
	wantEvents(t, s, 1, total)
	t.Logf("replayed at %v", time.Since(t0))
}
