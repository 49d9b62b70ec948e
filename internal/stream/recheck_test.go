package stream_test

import (
	"bufio"
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/stream"
)

// TestRecheckCatchesUnnotifiedEvents: with Recheck (several nodes, where a
// bus notification can be lost), an event written to the log without any
// notification reaches the open stream at its next heartbeat, on both
// engines.
func TestRecheckCatchesUnnotifiedEvents(t *testing.T) {
	for _, engine := range []string{"goroutine", "loop"} {
		t.Run(engine, func(t *testing.T) {
			log := &memLog{}
			log.append("app.before", `{}`)
			hub := stream.NewHub(stream.Limits{PerUser: 4, Buffer: 8}, nil)
			srv := &stream.Server{Hub: hub, Log: log, Heartbeat: 200 * time.Millisecond, Recheck: true,
				Retry: time.Second, WriteTimeout: time.Second}
			ts := serveStreams(t, srv, engine)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/events", nil)
			req.Header.Set("Last-Event-ID", "0")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			ids := make(chan int64, 16)
			go func() {
				defer close(ids)
				for e := range readEvents(bufio.NewReader(res.Body)) {
					if e.id > 0 {
						ids <- e.id
					}
				}
			}()
			if id := <-ids; id != 1 {
				t.Fatalf("replay gave id %d, want 1", id)
			}
			log.append("app.unnotified", `{}`) // no hub.Notify: the bus lost it
			select {
			case id, ok := <-ids:
				if !ok || id != 2 {
					t.Fatalf("got id %d (open %v), want 2", id, ok)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("an event written without a notification never reached the stream")
			}
		})
	}
}
