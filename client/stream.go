package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	// ErrStreamClosed is returned by Stream.Next after Close.
	ErrStreamClosed = errors.New("parley: stream closed")
	// ErrStreamIdle is returned by Stream.Next when nothing, not even a
	// heartbeat, arrived within StreamOptions.IdleTimeout.
	ErrStreamIdle = errors.New("parley: stream idle timeout")
)

// Event is one event of a user's stream.
type Event struct {
	// ID is the event's position in the user's durable log; 0 for
	// ephemeral events (ready, reset, typing, presence, session.expired).
	ID int64
	// Type is the event type, such as "message.created" or "app.invoice".
	Type string
	// Data is the event's JSON payload.
	Data json.RawMessage
	// HasID reports whether the event is durable (carried an "id" line).
	HasID bool
}

// Decode unmarshals the event's data into v.
func (e Event) Decode(v any) error { return json.Unmarshal(e.Data, v) }

// StreamOptions configure Client.Stream.
type StreamOptions struct {
	// LastEventID is the resume point: durable events after it are replayed
	// first. It is sent when it is above 0 or Resume is set; otherwise the
	// stream starts live.
	LastEventID int64
	// Resume sends LastEventID even when it is 0: "everything in the log",
	// which is how a user whose log was empty resumes without a gap.
	Resume bool
	// TokenInQuery sends the token as the "token" query parameter, as a
	// browser's EventSource must, instead of an Authorization header.
	TokenInQuery bool
	// IdleTimeout ends the stream with ErrStreamIdle when no byte arrives
	// for that long (heartbeats count). 0 disables it. A few heartbeat
	// intervals is a good value.
	IdleTimeout time.Duration
	// BufferSize is the size of the parse buffer; 0 means 4 KiB. Longer
	// lines are still read whole.
	BufferSize int
	// Path overrides the stream path ("/api/events"), for example
	// "/api/diag/stream".
	Path string
}

// Stream is an open event stream. Next and Close may be called from different
// goroutines; Next itself is not safe for concurrent use.
type Stream struct {
	resp   *http.Response
	r      *Reader
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer // nil without IdleTimeout

	lastID    int64
	closeOnce sync.Once
}

// Stream opens the event stream (GET /api/events). A refusal such as 429 (too
// many streams for the user) or 503 (server at capacity) is returned as an
// *Error with RetryAfter set. The stream lives until ctx ends, Close is
// called, or the server ends it.
func (c *Client) Stream(ctx context.Context, opts StreamOptions) (*Stream, error) {
	path := opts.Path
	if path == "" {
		path = "/api/events"
	}
	q := url.Values{}
	if opts.TokenInQuery {
		if tok := c.Token(); tok != "" {
			q.Set("token", tok)
		}
	}
	if len(q) > 0 {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + q.Encode()
	}
	sctx, cancel := context.WithCancelCause(ctx)
	a := authToken
	if opts.TokenInQuery {
		a = authNone
	}
	req, err := c.newRequest(sctx, http.MethodGet, path, nil, a)
	if err != nil {
		cancel(nil)
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	// Asking for identity keeps any compression from buffering the stream.
	req.Header.Set("Accept-Encoding", "identity")
	if opts.LastEventID > 0 || (opts.Resume && opts.LastEventID == 0) {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(opts.LastEventID, 10))
	}
	s := &Stream{ctx: sctx, cancel: cancel, lastID: opts.LastEventID}
	if opts.IdleTimeout > 0 {
		// The timer also bounds the wait for the response headers.
		s.timer = time.AfterFunc(opts.IdleTimeout, func() { cancel(ErrStreamIdle) })
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		s.stop()
		if cause := context.Cause(sctx); cause != nil && ctx.Err() == nil {
			return nil, cause
		}
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		e := parseError(resp)
		resp.Body.Close()
		s.stop()
		return nil, e
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body.Close()
		s.stop()
		return nil, fmt.Errorf("parley: %s answered Content-Type %q, not text/event-stream", path, resp.Header.Get("Content-Type"))
	}
	s.resp = resp
	var body io.Reader = resp.Body
	if s.timer != nil {
		s.timer.Reset(opts.IdleTimeout)
		body = &activityReader{r: resp.Body, t: s.timer, d: opts.IdleTimeout}
	}
	size := opts.BufferSize
	if size <= 0 {
		size = 4096
	}
	s.r = NewReaderSize(body, size)
	return s, nil
}

// activityReader re-arms the idle timer on every read that returns data.
type activityReader struct {
	r io.Reader
	t *time.Timer
	d time.Duration
}

func (a *activityReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		a.t.Reset(a.d)
	}
	return n, err
}

// Next returns the next event. Durable events have HasID set and an ID one
// above the previous durable event of the user's log. When the stream ends it
// returns io.EOF (the server closed it: reconnect with LastEventID),
// ErrStreamIdle, ErrStreamClosed, the context's error, or a read error.
func (s *Stream) Next() (Event, error) {
	raw, err := s.r.Next()
	if err != nil {
		if s.ctx.Err() != nil {
			return Event{}, context.Cause(s.ctx)
		}
		return Event{}, err
	}
	ev := Event{Type: eventType(raw.Type), Data: json.RawMessage(append([]byte(nil), raw.Data...))}
	if raw.HasID && len(raw.ID) > 0 {
		id, err := strconv.ParseInt(string(raw.ID), 10, 64)
		if err != nil || id <= 0 {
			return Event{}, fmt.Errorf("parley: event stream: bad event id %q", raw.ID)
		}
		ev.ID, ev.HasID = id, true
		s.lastID = id
	}
	return ev, nil
}

// Reader returns the stream's wire parser. Reading RawEvents from it directly
// avoids the per-event copy that Next makes; mixing it with Next is allowed,
// but then LastEventID only reflects the events read through Next.
func (s *Stream) Reader() *Reader { return s.r }

// Response returns the HTTP response of the stream (for its headers).
func (s *Stream) Response() *http.Response { return s.resp }

// LastEventID returns the id of the newest durable event returned by Next,
// or the resume point the stream was opened with.
func (s *Stream) LastEventID() int64 { return s.lastID }

// Retry returns the reconnection delay the server announced, or 0.
func (s *Stream) Retry() time.Duration {
	d, _ := s.r.Retry()
	return d
}

// Close ends the stream and releases its connection. It is safe to call more
// than once and concurrently with Next, which then returns ErrStreamClosed.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		s.cancel(ErrStreamClosed)
		if s.timer != nil {
			s.timer.Stop()
		}
		s.resp.Body.Close()
	})
	return nil
}

func (s *Stream) stop() {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.cancel(nil)
}

// knownTypes lets eventType return the event types of the SPEC without
// allocating a string for each event.
var knownTypes = func() map[string]string {
	m := map[string]string{}
	for _, t := range []string{
		"message", EventReady, EventReset, EventSessionExpired, EventTyping, EventPresence,
		EventConversationCreated, EventMessageCreated, EventMessageUpdated, EventMessageDeleted,
		EventReceipt, EventCallRinging, EventCallAccepted, EventCallDeclined, EventCallEnded,
		EventCallMissed, EventCallSignal, "ping", "tick", "done",
	} {
		m[t] = t
	}
	return m
}()

func eventType(b []byte) string {
	if len(b) == 0 {
		return "message"
	}
	if t, ok := knownTypes[string(b)]; ok { // no allocation for the lookup
		return t
	}
	return string(b)
}
