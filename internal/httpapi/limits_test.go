package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// wantRetryAfter checks that a refusal says when to come back.
func wantRetryAfter(tb testing.TB, res *servertest.Response) {
	tb.Helper()
	v := res.Header.Get("Retry-After")
	if s, err := strconv.Atoi(v); err != nil || s < 1 {
		tb.Fatalf("Retry-After = %q, want a positive number of seconds", v)
	}
}

// TestStreamLimits: with 2 streams per user, a user's third stream is
// refused with 429 rate_limited and Retry-After (a JSON error, since nothing
// was streamed yet) while other users are unaffected; with a process cap of
// 3 streams, the fourth stream of anyone gets 503 unavailable with
// Retry-After. Polls are not streams and still work. A closed stream frees
// its place.
func TestStreamLimits(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		c.MaxStreamsPerUser = 2
		c.MaxStreams = 3
	})
	u := n.Register(t, "limit", parley.RoleClient)
	v := n.Register(t, "limit", parley.RoleClient)

	u1 := n.OpenStream(t, u.Token, -1)
	n.OpenStream(t, u.Token, -1)
	s, res := n.TryStream(t, u.Token, -1)
	if s != nil {
		t.Fatalf("third stream of a user was admitted")
	}
	wantError(t, res, http.StatusTooManyRequests, "rate_limited")
	wantRetryAfter(t, res)

	n.OpenStream(t, v.Token, -1)
	if got := metric(t, n, "parley_streams_open"); got != 3 {
		t.Fatalf("parley_streams_open = %v, want 3", got)
	}
	s, res = n.TryStream(t, v.Token, -1)
	if s != nil {
		t.Fatalf("stream over the process cap was admitted")
	}
	wantError(t, res, http.StatusServiceUnavailable, "unavailable")
	wantRetryAfter(t, res)

	// At the cap, the poll fallback still answers.
	poll(t, n, v.Token, 0, 0)

	// Closing a stream gives its place back (once the server sees it go).
	u1.Next(t, 5*time.Second) // ready
	u1.Close()
	eventually(t, 5*time.Second, "the closed stream's place", func() bool {
		s, _ := n.TryStream(t, u.Token, -1)
		return s != nil
	})
}

// TestSlowReaderIsCut opens two streams of one user: a fast one that reads
// everything, and a raw TCP one with a tiny receive buffer that stops
// reading after the handshake. While 120 events of 64 KiB are published (far
// more than the socket buffers hold), the slow stream must be closed by the
// server, and the fast one must receive every event, in order, untouched.
func TestSlowReaderIsCut(t *testing.T) {
	const count, size = 120, 64 << 10
	n := servertest.Start(t, func(c *config.Config) {
		c.StreamBuffer = 8
		c.WriteTimeout = 500 * time.Millisecond
	})
	u := n.Register(t, "slow", parley.RoleClient)

	slow, slowBody := openRawStream(t, n, u.Token)
	fast := n.OpenStream(t, u.Token, -1)
	wantReady(t, fast.Next(t, 5*time.Second), u.ID, 0)
	if got := metric(t, n, "parley_streams_open"); got != 2 {
		t.Fatalf("parley_streams_open = %v, want 2", got)
	}
	closesBefore := closes(t, n)

	// The publisher keeps at most a few events ahead of the fast reader,
	// so what happens to the slow one is only its own doing.
	pad := strings.Repeat("x", size)
	next := int64(1)
	read := func(upTo int64) {
		t.Helper()
		for ; next <= upTo; next++ {
			e := fast.Next(t, 10*time.Second)
			if e.ID != next || e.Type != "app.big" || len(e.Data) < size || !strings.HasPrefix(e.Data, fmt.Sprintf(`{"i":%d,`, next)) {
				t.Fatalf("fast reader got id %d %s (%d bytes), want id %d", e.ID, e.Type, len(e.Data), next)
			}
		}
	}
	for i := int64(1); i <= count; i++ {
		ids := n.Publish(t, "app.big", map[string]any{"i": i, "pad": pad}, u.ID)
		if ids[u.ID] != i {
			t.Fatalf("publish %d got id %d", i, ids[u.ID])
		}
		read(i - 2)
	}
	read(count)

	// The slow stream is gone on the server side…
	eventually(t, 10*time.Second, "the slow stream to be closed", func() bool {
		return metric(t, n, "parley_streams_open") == 1
	})
	after := closes(t, n)
	t.Logf("stream closes before %v, after %v", closesBefore, after)
	if after["slow"] != closesBefore["slow"]+1 {
		t.Fatalf("parley_stream_closes_total{reason=\"slow\"} went from %v to %v, want one more", closesBefore["slow"], after["slow"])
	}
	// …and the connection ends: reading it now reaches EOF, with only part
	// of the events in it.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	var slowIDs []int64
	err := servertest.ReadSSE(slowBody, func(e servertest.Event) {
		if e.HasID {
			slowIDs = append(slowIDs, e.ID)
		}
	})
	if err == nil || (err != io.EOF && !strings.Contains(err.Error(), "reset") && !isUnexpectedEOF(err)) {
		t.Fatalf("slow connection did not end: %v", err)
	}
	if len(slowIDs) >= count {
		t.Fatalf("slow reader received all %d events; it was not cut", len(slowIDs))
	}
	for i, id := range slowIDs {
		if id != int64(i+1) {
			t.Fatalf("slow reader's events before the cut are %v, want 1, 2, 3…", slowIDs)
		}
	}
	t.Logf("slow reader got %d of %d events before it was cut", len(slowIDs), count)

	// The fast stream is still open and live.
	n.Publish(t, "app.big", map[string]any{"i": count + 1, "pad": "x"}, u.ID)
	if e := fast.Next(t, 5*time.Second); e.ID != count+1 {
		t.Fatalf("fast reader got %+v after the cut", e)
	}
}

func isUnexpectedEOF(err error) bool { return err == io.ErrUnexpectedEOF }

// closes reads parley_stream_closes_total by reason.
func closes(tb testing.TB, n *servertest.Node) map[string]float64 {
	tb.Helper()
	out := map[string]float64{}
	for _, r := range []string{"client", "slow", "session_expired", "shutdown", "write_error"} {
		out[r] = metric(tb, n, `parley_stream_closes_total{reason="`+r+`"}`)
	}
	return out
}

// openRawStream opens GET /api/events on a bare TCP connection with a small
// receive buffer (small enough to fill quickly, not so small that TCP on
// loopback degrades into retransmission backoff once the reader drains it), reads the response head and the ready event, and returns
// the connection and a reader positioned after them. Nothing reads it
// afterwards unless the test does.
func openRawStream(tb testing.TB, n *servertest.Node, token string) (*net.TCPConn, *bufio.Reader) {
	tb.Helper()
	addr := strings.TrimPrefix(n.URL, "http://")
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	conn := c.(*net.TCPConn)
	tb.Cleanup(func() { conn.Close() })
	if err := conn.SetReadBuffer(256 << 10); err != nil {
		tb.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /api/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n", addr, token)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReaderSize(conn, 4096)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		tb.Fatalf("raw stream: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		tb.Fatalf("raw stream: status %d", res.StatusCode)
	}
	// The body may be chunked; read it through the response.
	body := bufio.NewReaderSize(res.Body, 4096)
	for {
		line, err := body.ReadString('\n')
		if err != nil {
			tb.Fatalf("raw stream handshake: %v", err)
		}
		if line == "event: ready\n" {
			break
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn, body
}

// TestRateLimit: with 1 request/s (burst 2) per user, a burst of requests
// gets 429 rate_limited with Retry-After in the error shape once the bucket
// is empty, for that user only; register and login are limited per address.
func TestRateLimit(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.RateLimit = 1 })
	a := n.Register(t, "rate", parley.RoleClient)
	b := n.Register(t, "rate", parley.RoleClient)

	var limited *servertest.Response
	for range 10 {
		res := n.Do(t, "GET", "/api/me", a.Token, nil, nil)
		if res.StatusCode == http.StatusTooManyRequests {
			limited = res
			break
		}
		if res.StatusCode != http.StatusOK {
			t.Fatalf("/api/me: status %d", res.StatusCode)
		}
	}
	if limited == nil {
		t.Fatalf("10 requests at once were all admitted with a limit of 1/s")
	}
	wantError(t, limited, http.StatusTooManyRequests, "rate_limited")
	wantRetryAfter(t, limited)
	if res := n.Do(t, "GET", "/api/me", b.Token, nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("another user was limited too: status %d", res.StatusCode)
	}

	// Two registrations emptied this address's bucket: logins wait too.
	var loginLimited *servertest.Response
	for range 10 {
		res := n.Do(t, "POST", "/api/auth/login", "", map[string]string{"username": "nobody", "password": "password123"}, nil)
		if res.StatusCode == http.StatusTooManyRequests {
			loginLimited = res
			break
		}
	}
	if loginLimited == nil {
		t.Fatalf("10 logins at once from one address were all admitted with a limit of 1/s")
	}
	wantError(t, loginLimited, http.StatusTooManyRequests, "rate_limited")
	wantRetryAfter(t, loginLimited)
}
