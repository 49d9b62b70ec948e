package stream

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley"
)

// Log is the read side of the durable event log that streams replay from.
type Log interface {
	// Bounds returns the oldest retained id and the newest id of the user's
	// log; an empty log has first = last+1.
	Bounds(ctx context.Context, userID string) (first, last int64, err error)
	// After returns up to limit events with ids above after, in order,
	// stopping early at the event that brings the payloads to maxBytes
	// (one at least).
	After(ctx context.Context, userID string, after int64, limit, maxBytes int) ([]parley.Event, error)
	// Heads returns the newest id of each user's log; users without a log
	// may be left out.
	Heads(ctx context.Context, userIDs []string) (map[string]int64, error)
}

// DeliveryHook is told which durable events reached a user (written to a live
// stream or returned by a poll), for delivered receipts. It must not block.
type DeliveryHook func(userID string, events []parley.Event)

// Metrics are the counters the stream code updates. Nil fields are skipped.
type Metrics interface {
	Replayed(n int)
	Closed(reason string)
	Delivered(latency time.Duration)
}

// Server serves the SSE stream and the poll fallback.
type Server struct {
	Hub         *Hub
	Log         Log
	OnDelivered DeliveryHook
	OnPoll      func(userID string)
	// OnResume is told that a client resumed (a stream with a resume point
	// inside the log, or a poll) from upTo: it holds every event up to
	// that id, whichever node wrote it to the client. It must not block.
	OnResume  func(userID string, upTo int64)
	Metrics   Metrics
	Logger    *slog.Logger
	Heartbeat time.Duration
	// Recheck, when set, makes every stream check its log's head at each
	// heartbeat and catch up if it is behind: with several nodes, a lost bus
	// notification then costs latency, never an event.
	Recheck      bool
	Retry        time.Duration
	WriteTimeout time.Duration
	// Openings bounds the streams being opened at once (see Admit); 0 means
	// no bound.
	Openings int

	loop     *loop // nil until Start, and on platforms without one
	openOnce sync.Once
	openings chan struct{} // a slot per stream being opened; nil: no bound
}

// A Turn is a place among the streams being opened at once. End gives it
// up; it may be called more than once, and on a nil Turn.
type Turn struct {
	slots chan struct{}
	once  sync.Once
}

// End gives the turn up.
func (t *Turn) End() {
	if t != nil && t.slots != nil {
		t.once.Do(func() { <-t.slots })
	}
}

// Admit waits for a turn to open a stream. The caller authenticates the
// request within it and hands it to Serve, which ends it once the stream is
// open, before anything waits on the client.
//
// With the log in this process, opening a stream is CPU work (a token check,
// log reads, the first replay batch), and a reconnect storm makes thousands
// of them runnable at once: every other request then waits in the Go
// scheduler's run queue behind them. In a 10,000-stream storm, /healthz p99
// was 56-63 ms without turns and 21-27 ms with them, and the storm was no
// slower.
func (s *Server) Admit(ctx context.Context) (*Turn, error) {
	s.openOnce.Do(func() {
		if s.Openings > 0 {
			s.openings = make(chan struct{}, s.Openings)
		}
	})
	if s.openings == nil {
		return nil, nil
	}
	select {
	case s.openings <- struct{}{}:
		return &Turn{slots: s.openings}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// replayBatch is how many events one log read returns during replay, and
// pageBytes the most payload bytes one read (a replay batch, a poll's
// answer) gathers: a log of 64 KiB events (call.signal) made a page 32 MB,
// held by each poll and each resuming stream of a client that reads nothing.
const (
	replayBatch = 500
	pageBytes   = 256 << 10
)

// more reports whether a read that returned events may have stopped before
// the end of the log: it was full by count or by bytes. (The store counts
// the bytes it stored; a rendered payload is no smaller, so this errs
// towards one more read, never one fewer.)
func more(events []parley.Event, limit int) bool {
	if len(events) >= limit {
		return true
	}
	size := 0
	for i := range events {
		size += len(events[i].Data)
	}
	return size >= pageBytes
}

// ParseLastEventID reads a resume point. Anything that is not a non-negative
// decimal integer is treated as no resume point, as a browser may send
// whatever id it last saw from another server.
func ParseLastEventID(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	// Digits only: ParseInt alone also takes a sign, so "-0" and "+5" would
	// pass. Its own range check bounds the value, whatever the leading zeros.
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// ResumePoint returns the request's resume point: the Last-Event-ID header,
// else the last_event_id query parameter.
func ResumePoint(r *http.Request) (int64, bool) {
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		if n, ok := ParseLastEventID(v); ok {
			return n, true
		}
	}
	return ParseLastEventID(r.URL.Query().Get("last_event_id"))
}

// Serve answers GET /api/events for an authenticated user. It returns an
// error only when the stream is refused (429, 503), before anything is
// written; once the stream runs, the only thing left to do on failure is to
// close it, and the client resumes from its last id.
//
// HTTP/1.1 streams are hijacked and handed to the event loop (see evloop),
// so an idle stream holds no goroutine; other streams (HTTP/2, tests with a
// recorder, non-Linux) are served by a goroutine each. turn, from Admit
// (nil for none), ends once the stream is open.
func (s *Server) Serve(w http.ResponseWriter, r *http.Request, userID, sessionID string, turn *Turn) error {
	if s.loop != nil && r.ProtoMajor == 1 && canHijack(w) {
		return s.serveLoop(w, r, userID, sessionID, turn)
	}
	return s.serveGoroutine(w, r, userID, sessionID, turn)
}

// Start launches the event loop, where the platform has one. Streams work
// without it, a goroutine each.
func (s *Server) Start() error {
	l, err := newLoop(s)
	if err != nil {
		return err
	}
	s.loop = l
	return nil
}

// Stop ends the event loop; call it after Hub.Close.
func (s *Server) Stop() {
	if s.loop != nil {
		s.loop.stop()
	}
}

// Lag is how long frames wait for the event loop's workers right now: how
// far live delivery runs behind the commits that feed it. Streams served a
// goroutine each (HTTP/2, platforms without the loop) do not count.
func (s *Server) Lag() time.Duration {
	if s.loop == nil {
		return 0
	}
	return s.loop.behind()
}

// opening computes what a stream sends first (retry hint, ready, and reset
// when the resume point is outside the log) and where it resumes.
func (s *Server) opening(ctx context.Context, r *http.Request, userID string) (head []byte, cursor int64, err error) {
	first, last, err := s.Log.Bounds(ctx, userID)
	if err != nil {
		return nil, 0, err
	}
	resume, hasResume := ResumePoint(r)
	head = append(head, "retry: "...)
	head = strconv.AppendInt(head, s.Retry.Milliseconds(), 10)
	head = append(head, "\n\n"...)
	ready, _ := json.Marshal(map[string]any{"user_id": userID, "last_id": last, "server_time": parley.T(time.Now())})
	head = append(head, NewFrame(parley.Event{Type: parley.EventReady, Data: ready}).wire...)
	switch {
	case !hasResume:
		cursor = last
	case resume < first-1 || resume > last:
		// Resuming is all or nothing: a partial replay would hide a gap.
		head = append(head, resetFrame(last).wire...)
		cursor = last
	default:
		cursor = resume
		if resume > 0 && s.OnResume != nil {
			s.OnResume(userID, resume)
		}
	}
	return head, cursor, nil
}

// resetFrame tells a client that the log no longer holds what follows its
// position: it re-reads state over REST and goes on from last.
func resetFrame(last int64) *Frame {
	data, _ := json.Marshal(map[string]any{"reason": "history_expired", "last_id": last})
	return NewFrame(parley.Event{Type: parley.EventReset, Data: data})
}

// pruned reports whether events read after cursor start beyond cursor+1. A
// log has no holes, so the retention pruner removed them after the position
// was checked: the replay half of the position check, answered with a reset
// like a resume point that was too old to begin with.
func pruned(events []parley.Event, cursor int64) bool {
	return len(events) > 0 && events[0].ID > cursor+1
}

func (s *Server) closed(reason string) {
	if s.Metrics != nil {
		s.Metrics.Closed(reason)
	}
}

func (s *Server) fail(userID string, err error) string {
	if !errors.Is(err, context.Canceled) && s.Logger != nil {
		s.Logger.Error("stream log read", "user_id", userID, "err", err)
	}
	return ReasonError
}

func setStreamHeaders(h http.Header) {
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
}

// serveGoroutine runs a stream on the request's goroutine: one select over
// the client, the hub's kick, the heartbeat and the live frames.
func (s *Server) serveGoroutine(w http.ResponseWriter, r *http.Request, userID, sessionID string, turn *Turn) error {
	sink := newChanSink(s.Hub.limits.Buffer)
	sub, err := s.Hub.Subscribe(userID, sessionID, sink)
	if err != nil {
		return err
	}
	defer s.Hub.Unsubscribe(sub)
	setStreamHeaders(w.Header())
	w.WriteHeader(http.StatusOK)
	c := &conn{s: s, w: w, rc: http.NewResponseController(w), sub: sub, sink: sink}
	s.closed(c.run(r.Context(), r, turn))
	return nil
}

type conn struct {
	s      *Server
	w      http.ResponseWriter
	rc     *http.ResponseController
	sub    *Sub
	sink   *chanSink
	cursor int64 // the last durable id written
	buf    []byte
	sent   []parley.Event
}

func (c *conn) run(ctx context.Context, r *http.Request, turn *Turn) string {
	s := c.s
	head, cursor, err := s.opening(ctx, r, c.sub.UserID)
	turn.End() // the writes below wait on the client
	if err != nil {
		return s.fail(c.sub.UserID, err)
	}
	c.buf, c.cursor = head, cursor
	if err := c.flush(); err != nil {
		return writeFailed(err)
	}
	// Replay everything after the cursor; live frames queued meanwhile are
	// de-duplicated by id in the loop below.
	if reason, ok := c.catchUp(ctx, -1); !ok {
		return reason
	}

	heartbeat := time.NewTicker(s.Heartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-ctx.Done():
			return ReasonClient
		case <-c.sink.kicked:
			if f := c.sink.farewell; f != nil {
				c.add(f)
				_ = c.flush()
			}
			return c.sink.reason
		case <-heartbeat.C:
			c.buf = append(c.buf, ": ping\n\n"...)
			if s.Recheck {
				if reason, ok := c.catchUp(ctx, -1); !ok {
					return reason
				}
			}
			if err := c.flush(); err != nil {
				return writeFailed(err)
			}
		case f := <-c.sink.ch:
			if reason, ok := c.live(ctx, f); !ok {
				return reason
			}
			// Take whatever else is queued so one flush carries a burst.
			for more := true; more; {
				select {
				case f := <-c.sink.ch:
					if reason, ok := c.live(ctx, f); !ok {
						return reason
					}
				default:
					more = false
				}
			}
			if err := c.flush(); err != nil {
				return writeFailed(err)
			}
		}
	}
}

// live adds a live frame, or reads the log when the frame shows a gap: the
// notification for an earlier id may come late or not at all (another node,
// a lost bus message), and the log is the truth.
func (c *conn) live(ctx context.Context, f *Frame) (string, bool) {
	id := f.Event.ID
	switch {
	case f.poke:
		if id > c.cursor {
			return c.catchUp(ctx, id)
		}
	case id == 0:
		c.add(f)
	case id <= c.cursor:
		// Already replayed.
	case id == c.cursor+1:
		c.add(f)
		c.cursor = id
		if c.s.Metrics != nil {
			c.s.Metrics.Delivered(time.Since(f.Event.Time.Time))
		}
	default:
		return c.catchUp(ctx, id)
	}
	return "", true
}

// catchUp writes the log after the cursor, up to at least until (or to the
// head when until < 0).
func (c *conn) catchUp(ctx context.Context, until int64) (string, bool) {
	for {
		events, err := c.s.Log.After(ctx, c.sub.UserID, c.cursor, replayBatch, pageBytes)
		if err != nil {
			return c.s.fail(c.sub.UserID, err), false
		}
		if pruned(events, c.cursor) {
			_, last, err := c.s.Log.Bounds(ctx, c.sub.UserID)
			if err != nil {
				return c.s.fail(c.sub.UserID, err), false
			}
			c.add(resetFrame(last))
			c.cursor = last
			continue
		}
		for i := range events {
			c.add(NewFrame(events[i]))
			c.cursor = events[i].ID
		}
		if c.s.Metrics != nil && len(events) > 0 {
			c.s.Metrics.Replayed(len(events))
		}
		if err := c.flush(); err != nil {
			return writeFailed(err), false
		}
		if !more(events, replayBatch) && (until < 0 || c.cursor >= until) {
			return "", true
		}
		if len(events) == 0 {
			// The notified event is not readable yet (e.g. a replica behind);
			// the next notification or heartbeat-time check will bring it.
			return "", true
		}
	}
}

func (c *conn) add(f *Frame) {
	c.buf = append(c.buf, f.wire...)
	if f.Event.ID > 0 {
		c.sent = append(c.sent, f.Event)
	}
}

// writeFailed names why a write failed. A reader that did not take the bytes
// within the write timeout is too slow, as the event loop counts it; anything
// else is a broken connection.
func writeFailed(err error) string {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return ReasonSlow
	}
	return ReasonError
}

func (c *conn) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	_ = c.rc.SetWriteDeadline(time.Now().Add(c.s.WriteTimeout))
	_, err := c.w.Write(c.buf)
	if err == nil {
		err = c.rc.Flush()
	}
	// Keep a small buffer for the next burst; drop a large one so an idle
	// stream does not hold on to the memory of its biggest replay.
	if cap(c.buf) > 64<<10 {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	if err == nil && len(c.sent) > 0 && c.s.OnDelivered != nil {
		c.s.OnDelivered(c.sub.UserID, c.sent)
	}
	c.sent = c.sent[:0]
	return err
}

// PollResult is the answer of the poll endpoint.
type PollResult struct {
	Events []parley.Event `json:"events"`
	LastID int64          `json:"last_id"`
	// Reset is set when after is outside the retained log; the client
	// re-reads state and continues from LastID, as with the stream's reset.
	Reset *ResetInfo `json:"reset,omitempty"`
}

// ResetInfo is the data of a reset.
type ResetInfo struct {
	Reason string `json:"reason"`
	LastID int64  `json:"last_id"`
}

// pollLimit is the most events one poll returns (SPEC §3).
const pollLimit = 500

// Poll returns the durable events after after, waiting up to wait for one if
// there are none yet.
func (s *Server) Poll(ctx context.Context, userID string, after int64, wait time.Duration) (*PollResult, error) {
	if s.OnPoll != nil {
		s.OnPoll(userID)
	}
	res, err := s.pollOnce(ctx, userID, after)
	if err == nil && res.Reset == nil && after > 0 && s.OnResume != nil {
		s.OnResume(userID, after)
	}
	if err != nil || len(res.Events) > 0 || res.Reset != nil || wait <= 0 {
		return s.polled(userID, res), err
	}
	w, wake, done := s.Hub.Wait(userID)
	defer s.Hub.Unsubscribe(w)
	// Read again now that the waiter is registered, so an event committed in
	// between is not missed.
	if res, err = s.pollOnce(ctx, userID, after); err != nil || len(res.Events) > 0 {
		return s.polled(userID, res), err
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-wake:
	case <-done:
	case <-timer.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res, err = s.pollOnce(ctx, userID, after)
	return s.polled(userID, res), err
}

func (s *Server) polled(userID string, res *PollResult) *PollResult {
	if res != nil && len(res.Events) > 0 && s.OnDelivered != nil {
		s.OnDelivered(userID, res.Events)
	}
	return res
}

func (s *Server) pollOnce(ctx context.Context, userID string, after int64) (*PollResult, error) {
	first, last, err := s.Log.Bounds(ctx, userID)
	if err != nil {
		return nil, err
	}
	if after < first-1 || after > last {
		return &PollResult{Events: []parley.Event{}, LastID: last, Reset: &ResetInfo{Reason: "history_expired", LastID: last}}, nil
	}
	events, err := s.Log.After(ctx, userID, after, pollLimit, pageBytes)
	if err != nil {
		return nil, err
	}
	if pruned(events, after) {
		return &PollResult{Events: []parley.Event{}, LastID: last, Reset: &ResetInfo{Reason: "history_expired", LastID: last}}, nil
	}
	res := &PollResult{Events: events, LastID: after}
	if n := len(events); n > 0 {
		res.LastID = events[n-1].ID
	}
	return res, nil
}

// canHijack reports whether the response can be taken over: net/http's own
// HTTP/1.1 writer can, possibly behind wrappers that implement Unwrap.
func canHijack(w http.ResponseWriter) bool {
	for {
		if _, ok := w.(http.Hijacker); ok {
			return true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
}
