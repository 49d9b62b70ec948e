package stream_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/stream"
)

// pruningLog is a log from which events up to pruneTo disappear right after
// the first Bounds call: the retention pruner ran between a stream's position
// check and its replay.
type pruningLog struct {
	memLog
	mu      sync.Mutex
	pruneTo int64
	pruned  bool
}

func (l *pruningLog) Bounds(ctx context.Context, userID string) (int64, int64, error) {
	_, last, _ := l.memLog.Bounds(ctx, userID)
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.pruned {
		l.pruned = true
		return 1, last, nil // what the log held when asked
	}
	return l.pruneTo + 1, last, nil
}

func (l *pruningLog) After(ctx context.Context, userID string, after int64, limit, maxBytes int) ([]parley.Event, error) {
	l.mu.Lock()
	from := max(after, l.pruneTo)
	l.mu.Unlock()
	return l.memLog.After(ctx, userID, from, limit, maxBytes)
}

// sseEvent is one parsed event of a raw stream.
type sseEvent struct {
	id   int64
	typ  string
	data string
}

// readEvents parses a text/event-stream into a channel.
func readEvents(body *bufio.Reader) <-chan sseEvent {
	ch := make(chan sseEvent, 256)
	go func() {
		defer close(ch)
		var e sseEvent
		for {
			line, err := body.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if e.typ != "" {
					ch <- e
				}
				e = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				e.id, _ = strconv.ParseInt(line[4:], 10, 64)
			case strings.HasPrefix(line, "event: "):
				e.typ = line[7:]
			case strings.HasPrefix(line, "data: "):
				e.data = line[6:]
			}
		}
	}()
	return ch
}

// TestPrunedDuringResume: when the pruner removes events between a stream's
// position check and its replay, the client must get a reset (and then live
// events), never a replay with a hole in it and never a stream that stalls;
// the poll must answer its reset too. Both stream engines.
func TestPrunedDuringResume(t *testing.T) {
	for _, engine := range []string{"goroutine", "loop"} {
		t.Run(engine, func(t *testing.T) {
			log := &pruningLog{pruneTo: 5}
			for i := 1; i <= 10; i++ {
				log.append("app.x", fmt.Sprintf(`{"i":%d}`, i))
			}
			hub := stream.NewHub(stream.Limits{PerUser: 4, Buffer: 64}, nil)
			srv := &stream.Server{Hub: hub, Log: log, Heartbeat: time.Hour, Retry: time.Second, WriteTimeout: 5 * time.Second}
			ts := serveStreams(t, srv, engine)

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL, nil)
			req.Header.Set("Last-Event-ID", "2")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			events := readEvents(bufio.NewReader(res.Body))
			next := func() sseEvent {
				t.Helper()
				select {
				case e, ok := <-events:
					if !ok {
						t.Fatalf("stream ended")
					}
					return e
				case <-time.After(5 * time.Second):
					t.Fatalf("no event within 5s")
				}
				return sseEvent{}
			}
			if e := next(); e.typ != "ready" {
				t.Fatalf("first event %+v", e)
			}
			e := next()
			if e.typ != "reset" || e.id != 0 {
				t.Fatalf("after events 3..5 were pruned under the resume, got %+v, want a reset", e)
			}
			var d struct {
				Reason string `json:"reason"`
				LastID int64  `json:"last_id"`
			}
			if err := json.Unmarshal([]byte(e.data), &d); err != nil || d.Reason != "history_expired" || d.LastID != 10 {
				t.Fatalf("reset data %s, want history_expired with last_id 10", e.data)
			}
			hub.Publish([]parley.Event{log.append("app.x", `{"i":11}`)})
			if e := next(); e.id != 11 {
				t.Fatalf("after the reset got %+v, want live event 11", e)
			}

			// The poll, asked from a position whose successors go away
			// between its two reads.
			log.mu.Lock()
			log.pruned, log.pruneTo = false, 7
			log.mu.Unlock()
			pr, err := srv.Poll(context.Background(), "u", 6, 0)
			if err != nil {
				t.Fatal(err)
			}
			if pr.Reset == nil || pr.Reset.LastID != 11 || len(pr.Events) != 0 {
				t.Fatalf("poll after=6 with 7 pruned under it answered %+v (reset %+v), want a reset to 11", pr, pr.Reset)
			}
		})
	}
}
