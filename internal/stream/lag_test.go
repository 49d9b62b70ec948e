package stream_test

import (
	"bufio"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/stream"
)

// TestLagSettles: once the workers have flushed everything queued, Lag is 0
// again. A lag left over from the last busy moment would hold every later
// publish back for its longest wait.
func TestLagSettles(t *testing.T) {
	log := &memLog{}
	hub := stream.NewHub(stream.Limits{PerUser: 64, Buffer: 256}, nil)
	srv := &stream.Server{Hub: hub, Log: log, Heartbeat: time.Hour, Retry: time.Second, WriteTimeout: 5 * time.Second}
	ts := serveStreams(t, srv, "loop")
	addr := ts.Listener.Addr().String()

	const streams, events = 32, 50
	readers := make([]*bufio.Reader, streams)
	for i := range readers {
		c := dialStream(t, addr, 0)
		defer c.Close()
		readers[i] = bufio.NewReader(c)
	}
	for i := 1; i <= events; i++ {
		hub.Publish([]parley.Event{log.append("app.x", fmt.Sprintf(`{"i":%d}`, i))})
	}
	for i, r := range readers {
		for want := int64(1); want <= events; {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream %d: %v before id %d", i, err, want)
			}
			if strings.HasPrefix(line, "id: ") {
				if line != fmt.Sprintf("id: %d\n", want) {
					t.Fatalf("stream %d: got %q, want id %d", i, line, want)
				}
				want++
			}
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for srv.Lag() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Lag is %v with nothing queued, want 0", srv.Lag())
		}
		time.Sleep(time.Millisecond)
	}
}
