package stream_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/stream"
)

// memLog is an in-memory stream.Log of one user.
type memLog struct {
	mu     sync.Mutex
	events []parley.Event
}

func (l *memLog) append(typ, data string) parley.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := parley.Event{UserID: "u", ID: int64(len(l.events) + 1), Type: typ, Data: []byte(data), Time: parley.T(time.Now())}
	l.events = append(l.events, e)
	return e
}

func (l *memLog) Bounds(ctx context.Context, userID string) (int64, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return 1, int64(len(l.events)), nil
}

func (l *memLog) Heads(ctx context.Context, userIDs []string) (map[string]int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return map[string]int64{"u": int64(len(l.events))}, nil
}

func (l *memLog) After(ctx context.Context, userID string, after int64, limit, maxBytes int) ([]parley.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if after >= int64(len(l.events)) {
		return nil, nil
	}
	out := l.events[after:]
	if len(out) > limit {
		out = out[:limit]
	}
	size := 0
	for i := range out {
		if size += len(out[i].Data); size >= maxBytes {
			out = out[:i+1]
			break
		}
	}
	return append([]parley.Event(nil), out...), nil
}

// closeCounter records stream closes by reason.
type closeCounter struct {
	mu     sync.Mutex
	closed map[string]int
}

func (c *closeCounter) Replayed(int)            {}
func (c *closeCounter) Delivered(time.Duration) {}
func (c *closeCounter) Closed(reason string)    { c.mu.Lock(); c.closed[reason]++; c.mu.Unlock() }
func (c *closeCounter) count(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed[reason]
}
func (c *closeCounter) String() string { c.mu.Lock(); defer c.mu.Unlock(); return fmt.Sprint(c.closed) }
func (c *closeCounter) total() (n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range c.closed {
		n += v
	}
	return n
}

var _ stream.Metrics = (*closeCounter)(nil)

// TestSlowReaderReason runs the slow-reader scenario on both stream engines
// (the epoll loop where the platform has it, and the goroutine per stream
// used for HTTP/2 and elsewhere): a reader that stops reading is cut and
// counted as "slow" — the reason operators watch in
// parley_stream_closes_total — while a fast reader of the same user gets
// every event.
func TestSlowReaderReason(t *testing.T) {
	for _, engine := range []string{"goroutine", "loop"} {
		t.Run(engine, func(t *testing.T) {
			log := &memLog{}
			metrics := &closeCounter{closed: map[string]int{}}
			hub := stream.NewHub(stream.Limits{PerUser: 4, Buffer: 8}, nil)
			srv := &stream.Server{Hub: hub, Log: log, Metrics: metrics, Heartbeat: time.Hour, Retry: time.Second, WriteTimeout: 300 * time.Millisecond}
			ts := serveStreams(t, srv, engine)

			slow := dialStream(t, ts.Listener.Addr().String(), 256<<10)
			defer slow.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/events", nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			fastEvents := make(chan int64, 1024)
			go func() {
				defer close(fastEvents)
				r := bufio.NewReaderSize(res.Body, 1<<20)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					var id int64
					if _, err := fmt.Sscanf(line, "id: %d", &id); err == nil {
						fastEvents <- id
					}
				}
			}()

			pad := strings.Repeat("x", 64<<10)
			const count = 120
			next := int64(1)
			readUpTo := func(id int64) {
				for ; next <= id; next++ {
					select {
					case got, ok := <-fastEvents:
						if !ok || got != next {
							t.Fatalf("fast reader got %d (open %v), want %d; closes %v", got, ok, next, metrics)
						}
					case <-time.After(10 * time.Second):
						t.Fatalf("fast reader stalled before %d; closes %v", next, metrics)
					}
				}
			}
			for i := int64(1); i <= count; i++ {
				e := log.append("app.big", fmt.Sprintf(`{"i":%d,"pad":%q}`, i, pad))
				hub.Publish([]parley.Event{e})
				readUpTo(i - 2)
			}
			readUpTo(count)
			deadline := time.Now().Add(10 * time.Second)
			for metrics.total() == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the slow reader was not cut")
				}
				time.Sleep(20 * time.Millisecond)
			}
			if metrics.total() != 1 || metrics.count(stream.ReasonSlow) != 1 {
				t.Fatalf("closes by reason %v, want one %q", metrics, stream.ReasonSlow)
			}
			if hub.Open() != 1 {
				t.Fatalf("%d streams open, want the fast one", hub.Open())
			}
		})
	}
}

// dialStream opens the stream on a raw connection, reads up to the ready
// event and returns the connection. rcvbuf > 0 sets its receive buffer.
func dialStream(t *testing.T, addr string, rcvbuf int) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn := c.(*net.TCPConn)
	if rcvbuf > 0 {
		if err := conn.SetReadBuffer(rcvbuf); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Fprintf(conn, "GET /api/events HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	// Read byte by byte so nothing after the ready event is consumed here.
	var line []byte
	b := make([]byte, 1)
	for {
		if _, err := conn.Read(b); err != nil {
			t.Fatalf("stream handshake: %v", err)
		}
		line = append(line, b[0])
		if b[0] == '\n' {
			if string(line) == "event: ready\n" {
				break
			}
			line = line[:0]
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return conn
}

// serveStreams serves srv's stream for user "u" on a test server, on the
// event loop when engine is "loop" and a goroutine per stream otherwise, and
// closes hub, server and loop when the test ends.
func serveStreams(t *testing.T, srv *stream.Server, engine string) *httptest.Server {
	t.Helper()
	if engine == "loop" {
		if err := srv.Start(); err != nil {
			t.Fatalf("start loop: %v", err)
		}
		t.Cleanup(srv.Stop)
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		turn, err := srv.Admit(r.Context())
		if err != nil {
			return
		}
		defer turn.End()
		if err := srv.Serve(w, r, "u", "s", turn); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(srv.Hub.Close)
	return ts
}
