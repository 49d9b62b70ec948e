package servertest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Event is one SSE event as a test sees it.
type Event struct {
	ID    int64 // 0 when the event has no id: line
	HasID bool
	Type  string
	Data  string
}

// Decode unmarshals the event's data.
func (e Event) Decode(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal([]byte(e.Data), v); err != nil {
		tb.Fatalf("decode %s data %q: %v", e.Type, e.Data, err)
	}
}

// Stream is an open GET /api/events. Events are read by a goroutine into a
// channel so tests can wait with a timeout.
type Stream struct {
	Res    *http.Response
	Events chan Event
	Err    chan error // receives the read error when the stream ends
	cancel context.CancelFunc
}

// OpenStream opens the event stream with the token. lastID < 0 sends no
// resume point. It fails the test unless the answer is 200.
func (n *Node) OpenStream(tb testing.TB, token string, lastID int64) *Stream {
	tb.Helper()
	s, res := n.TryStream(tb, token, lastID)
	if s == nil {
		tb.Fatalf("open stream: status %d: %s", res.StatusCode, res.Body)
	}
	return s
}

// TryStream is OpenStream that returns the refusal instead of failing.
func (n *Node) TryStream(tb testing.TB, token string, lastID int64) (*Stream, *Response) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+"/api/events", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if lastID >= 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(lastID, 10))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		tb.Fatalf("open stream: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		defer cancel()
		defer res.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(res.Body).WriteTo(&b)
		return nil, &Response{Response: res, Body: []byte(b.String())}
	}
	s := &Stream{Res: res, Events: make(chan Event, 4096), Err: make(chan error, 1), cancel: cancel}
	go s.read()
	tb.Cleanup(s.Close)
	return s, nil
}

func (s *Stream) read() {
	defer close(s.Events)
	err := ReadSSE(bufio.NewReader(s.Res.Body), func(e Event) { s.Events <- e })
	s.Err <- err
}

// Close ends the stream from the client side.
func (s *Stream) Close() { s.cancel(); s.Res.Body.Close() }

// Next returns the next event, failing the test after timeout.
func (s *Stream) Next(tb testing.TB, timeout time.Duration) Event {
	tb.Helper()
	select {
	case e, ok := <-s.Events:
		if !ok {
			tb.Fatalf("stream ended while waiting for an event")
		}
		return e
	case <-time.After(timeout):
		tb.Fatalf("no event within %v", timeout)
	}
	return Event{}
}

// NextOf skips events until one of type typ arrives.
func (s *Stream) NextOf(tb testing.TB, typ string, timeout time.Duration) Event {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		e := s.Next(tb, time.Until(deadline))
		if e.Type == typ {
			return e
		}
	}
}

// ReadSSE parses a text/event-stream, calling fn per dispatched event, until
// the reader fails. It is deliberately small and independent of the server's
// encoder, so the two check each other.
func ReadSSE(r *bufio.Reader, fn func(Event)) error {
	var e Event
	var data []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if e.Type != "" || len(data) > 0 {
				e.Data = strings.Join(data, "\n")
				if e.Type == "" {
					e.Type = "message"
				}
				fn(e)
			}
			e, data = Event{}, nil
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id, err := strconv.ParseInt(value, 10, 64)
				if err != nil {
					return fmt.Errorf("bad id %q", value)
				}
				e.ID, e.HasID = id, true
			case "event":
				e.Type = value
			case "data":
				data = append(data, value)
			}
		}
	}
}

// Replay reads the user's stream from the start of the log up to its
// head, and returns the raw bytes read.
func (n *Node) Replay(t testing.TB, token string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Last-Event-ID", "0")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var raw strings.Builder
	r := bufio.NewReader(io.TeeReader(res.Body, &raw))
	var head int64 = -1
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ReadSSE(r, func(e Event) {
			if e.Type == "ready" {
				var ready struct {
					LastID int64 `json:"last_id"`
				}
				_ = json.Unmarshal([]byte(e.Data), &ready)
				head = ready.LastID
			}
			if head >= 0 && (head == 0 || e.HasID && e.ID >= head) {
				cancel()
			}
		})
	}()
	<-done
	if head <= 0 {
		t.Fatalf("no replay (head %d): %s", head, raw.String())
	}
	return []byte(raw.String())
}
