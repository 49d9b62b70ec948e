package stream_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/stream"
)

// TestOpeningTurns: with one opening at a time, a client that asks for a
// long replay and then reads nothing must not hold the turn; the next stream
// opens while the first still waits on its reader. Both stream engines.
func TestOpeningTurns(t *testing.T) {
	for _, engine := range []string{"goroutine", "loop"} {
		t.Run(engine, func(t *testing.T) {
			log := &memLog{}
			pad := strings.Repeat("x", 16<<10)
			for i := range 600 { // ~10 MB: more than any socket buffers hold
				log.append("app.x", fmt.Sprintf(`{"i":%d,"pad":%q}`, i, pad))
			}
			hub := stream.NewHub(stream.Limits{PerUser: 4, Buffer: 64}, nil)
			srv := &stream.Server{Hub: hub, Log: log, Heartbeat: time.Hour, Retry: time.Second,
				WriteTimeout: time.Minute, Openings: 1}
			ts := serveStreams(t, srv, engine)

			stuck, err := net.Dial("tcp", ts.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer stuck.Close()
			if err := stuck.(*net.TCPConn).SetReadBuffer(4 << 10); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(stuck, "GET /api/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 0\r\n\r\n")
			// Wait until the stuck stream has filled its socket: its server
			// side is then waiting on the client.
			time.Sleep(300 * time.Millisecond)

			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL, nil)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("a second stream while the first waits on its reader: %v", err)
			}
			defer res.Body.Close()
			if e, ok := <-readEvents(bufio.NewReader(res.Body)); !ok || e.typ != "ready" {
				t.Fatalf("second stream: first event %+v, want ready", e)
			}
		})
	}
}

// TestAdmitTakesTurns: Admit hands out Openings turns at once, End may be
// called twice, and a waiting Admit gives up with its context.
func TestAdmitTakesTurns(t *testing.T) {
	srv := &stream.Server{Openings: 2}
	ctx := context.Background()
	admit := func() *stream.Turn {
		t.Helper()
		turn, err := srv.Admit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return turn
	}
	noTurn := func(why string) {
		t.Helper()
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		if _, err := srv.Admit(short); err == nil {
			t.Fatal(why)
		}
	}
	a, b := admit(), admit()
	noTurn("a third turn while two are out")
	a.End()
	a.End() // a second End must not give up b's turn
	c := admit()
	noTurn("End called twice freed two turns")
	b.End()
	c.End()
	var none *stream.Turn
	none.End() // no bound: Admit returns nil turns
	unbounded := &stream.Server{}
	if tn, err := unbounded.Admit(ctx); err != nil || tn != nil {
		t.Fatalf("unbounded Admit = %v, %v", tn, err)
	}
}
