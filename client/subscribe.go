package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"sync/atomic"
	"time"
)

// Subscriber follows a user's event stream across disconnects. It reconnects
// with the last durable id it handed out, after a short, growing, jittered
// delay; it jumps to the new position on "reset"; and it never hands the same
// durable id to the handler twice. Build one with its fields and call Run, or
// use Client.Subscribe.
type Subscriber struct {
	// Client opens the streams; its token authenticates them.
	Client *Client
	// From is the resume point of the first connection: durable events
	// after it are delivered. 0 starts live (unless FromStart is set) and
	// then resumes from the position the first "ready" event reports.
	From int64
	// FromStart makes From = 0 mean "from the oldest retained event"
	// rather than "live".
	FromStart bool
	// Handler receives every event, ephemeral ones (ready, reset, typing,
	// presence, session.expired) included. Durable events arrive once each,
	// in id order. If it returns an error, Run stops with that error.
	Handler func(Event) error
	// OnError, if set, is told of each failed or ended connection and of
	// the delay before the next attempt.
	OnError func(err error, retryIn time.Duration)
	// MinBackoff is the first reconnection delay; 0 means the server's
	// "retry" value, or 500 ms before the server has sent one.
	MinBackoff time.Duration
	// MaxBackoff caps the delay, which doubles on each consecutive failure;
	// 0 means 10 s. A Retry-After from the server is honoured above it.
	MaxBackoff time.Duration
	// IdleTimeout reconnects a stream that received nothing, not even a
	// heartbeat, for that long; 0 means 60 s and a negative value disables it.
	IdleTimeout time.Duration

	last atomic.Int64
	// positioned is set once last is a real position in the log (From,
	// or what a ready or reset event said), from then on always sent.
	positioned bool
}

// Subscribe delivers the user's events to handler until ctx ends or handler
// fails, reconnecting as needed. See Subscriber.
func (c *Client) Subscribe(ctx context.Context, from int64, handler func(Event) error) error {
	s := &Subscriber{Client: c, From: from, Handler: handler}
	return s.Run(ctx)
}

// LastEventID returns the newest durable id handed to the handler (or the
// position a ready or reset event moved to). It may be read while Run runs.
func (s *Subscriber) LastEventID() int64 { return s.last.Load() }

// Run follows the stream until ctx ends (returning ctx's error), the handler
// fails (returning its error), or the server refuses the credentials or the
// request outright (returning the *Error, for example 401 after logout).
func (s *Subscriber) Run(ctx context.Context) error {
	s.last.Store(s.From)
	s.positioned = s.From > 0 || s.FromStart
	idle := s.IdleTimeout
	switch {
	case idle == 0:
		idle = 60 * time.Second
	case idle < 0:
		idle = 0
	}
	maxB := s.MaxBackoff
	if maxB <= 0 {
		maxB = 10 * time.Second
	}
	var serverRetry time.Duration
	failures := 0
	for {
		st, err := s.Client.Stream(ctx, StreamOptions{LastEventID: s.last.Load(), Resume: s.positioned, IdleTimeout: idle})
		if err == nil {
			var connected bool
			connected, err = s.consume(st)
			st.Close()
			if d := st.Retry(); d > 0 {
				serverRetry = d
			}
			if connected {
				failures = 0
			}
			var herr handlerError
			if errors.As(err, &herr) {
				return herr.err
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fatal(err) {
			return err
		}
		delay := s.MinBackoff
		if delay <= 0 {
			delay = serverRetry
		}
		if delay <= 0 {
			delay = 500 * time.Millisecond
		}
		for i := 0; i < failures && delay < maxB; i++ {
			delay *= 2
		}
		delay = min(delay, maxB)
		// ±20 % jitter spreads the reconnections of many clients dropped
		// at once (a server restart) so they do not arrive as one wave.
		delay = delay*4/5 + rand.N(delay*2/5+1)
		var e *Error
		if errors.As(err, &e) && e.RetryAfter > delay {
			delay = e.RetryAfter
		}
		failures++
		if s.OnError != nil {
			s.OnError(err, delay)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// handlerError marks an error returned by the handler, which ends Run.
type handlerError struct{ err error }

func (h handlerError) Error() string { return h.err.Error() }

// consume hands the stream's events to the handler until the stream ends. It
// reports whether the stream got as far as its ready event.
func (s *Subscriber) consume(st *Stream) (connected bool, err error) {
	for {
		ev, err := st.Next()
		if err != nil {
			return connected, err
		}
		switch {
		case ev.HasID:
			if ev.ID <= s.last.Load() {
				continue // already handed out before a reconnect
			}
			s.last.Store(ev.ID)
		case ev.Type == EventReady:
			connected = true
			var r Ready
			// Without a resume point the stream starts live: remember
			// where, so that a reconnection loses nothing (even when
			// that position is 0, an empty log).
			if !s.positioned && ev.Decode(&r) == nil {
				s.last.Store(r.LastID)
				s.positioned = true
			}
		case ev.Type == EventReset:
			var r Reset
			if ev.Decode(&r) == nil {
				s.last.Store(r.LastID)
				s.positioned = true
			}
		}
		if err := s.Handler(ev); err != nil {
			return connected, handlerError{err}
		}
	}
}

// fatal reports whether err is an answer that retrying cannot change.
func fatal(err error) bool {
	switch StatusCode(err) {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden,
		http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusUnsupportedMediaType:
		return true
	}
	return false
}
