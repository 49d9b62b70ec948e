package chat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// callEvents maps a call state to the event announcing it.
var callEvents = map[string]string{
	parley.CallRinging:  parley.EventCallRinging,
	parley.CallActive:   parley.EventCallAccepted,
	parley.CallDeclined: parley.EventCallDeclined,
	parley.CallEnded:    parley.EventCallEnded,
	parley.CallMissed:   parley.EventCallMissed,
}

// errCallMissed is returned from a transaction that committed a late ring
// timeout, to be answered as a conflict once the commit is done.
var errCallMissed = parley.Errorf(parley.EConflict, "the call was not answered in time")

// StartCall rings the other participant of the conversation.
func (s *Service) StartCall(ctx context.Context, callerID, convID, media string) (*parley.Call, error) {
	if media != "audio" && media != "video" {
		return nil, parley.Invalid("media", "media must be audio or video")
	}
	var call *parley.Call
	err := s.store.Update(ctx, func(tx *store.Tx) error {
		mem, err := tx.Member(convID, callerID)
		if err != nil {
			return err
		}
		live, err := tx.LiveCall(convID)
		switch {
		case errors.Is(err, parley.NotFound):
		case err != nil:
			return err
		case s.expired(live):
			// The sweeper has not got to it yet; a call nobody can answer
			// any more should not block a new one.
			if _, err := s.transition(tx, live, parley.CallRinging, parley.CallMissed); err != nil {
				return err
			}
		default:
			return parley.Errorf(parley.EConflict, "a call is already %s in this conversation", live.State)
		}
		call = &parley.Call{
			ID: parley.NewID("call"), ConversationID: convID, CallerID: callerID, CalleeID: mem.PeerID,
			Media: media, State: parley.CallRinging, CreatedAt: parley.T(store.Now()),
		}
		if err := tx.InsertCall(call); err != nil {
			return err
		}
		return tx.AppendJSON(parley.EventCallRinging, call, callerID, mem.PeerID)
	})
	if errors.Is(err, store.ErrDuplicate) {
		return nil, parley.Errorf(parley.EConflict, "a call is already live in this conversation")
	}
	return call, err
}

func (s *Service) expired(c *parley.Call) bool {
	return c.State == parley.CallRinging && time.Since(c.CreatedAt.Time) >= s.opts.CallTimeout
}

// transition moves the call from one state to another and tells both
// parties. It reports false when the call was no longer in from.
func (s *Service) transition(tx *store.Tx, c *parley.Call, from, to string) (bool, error) {
	if to == parley.CallMissed {
		if err := s.lockForWebhooks(tx, WebhookCallMissed, c.ConversationID); err != nil {
			return false, err
		}
	}
	now := store.Now()
	ok, err := tx.SetCallState(c.ID, from, to, now)
	if err != nil || !ok {
		return false, err
	}
	c.State = to
	if to == parley.CallActive {
		c.AnsweredAt = parley.TP(now)
	} else {
		c.EndedAt = parley.TP(now)
	}
	if err := tx.AppendJSON(callEvents[to], c, c.CallerID, c.CalleeID); err != nil {
		return false, err
	}
	if to == parley.CallMissed {
		return true, s.webhook(tx, WebhookCallMissed, c.ConversationID, c)
	}
	return true, nil
}

// participantCall loads a call the user takes part in; anyone else gets 404.
func participantCall(tx *store.Tx, userID, callID string) (*parley.Call, error) {
	c, err := tx.CallByID(callID)
	if err != nil {
		return nil, err
	}
	if c.CallerID != userID && c.CalleeID != userID {
		return nil, parley.NotFound
	}
	return c, nil
}

// Call returns a call the user takes part in.
func (s *Service) Call(ctx context.Context, userID, callID string) (*parley.Call, error) {
	var c *parley.Call
	err := s.store.View(ctx, func(tx *store.Tx) (err error) {
		c, err = participantCall(tx, userID, callID)
		return err
	})
	return c, err
}

// Answer is the callee's accept (to active) or decline (to declined) of a
// ringing call. A call past its ring timeout is marked missed on the spot
// and answered with 409, so nobody accepts a call the caller saw time out.
func (s *Service) Answer(ctx context.Context, userID, callID, to string) (*parley.Call, error) {
	var c *parley.Call
	err := s.store.Update(ctx, func(tx *store.Tx) (err error) {
		if c, err = participantCall(tx, userID, callID); err != nil {
			return err
		}
		if userID != c.CalleeID {
			return parley.Errorf(parley.EForbidden, "only the callee can answer a call")
		}
		if c.State != parley.CallRinging {
			return parley.Errorf(parley.EConflict, "the call is %s", c.State)
		}
		if s.expired(c) {
			if _, err := s.transition(tx, c, parley.CallRinging, parley.CallMissed); err != nil {
				return err
			}
			return nil // commit the missed state, then answer errCallMissed
		}
		ok, err := s.transition(tx, c, parley.CallRinging, to)
		if err == nil && !ok {
			err = parley.Errorf(parley.EConflict, "the call is no longer ringing")
		}
		return err
	})
	if err == nil && c.State == parley.CallMissed {
		return nil, errCallMissed
	}
	return c, err
}

// End hangs up a ringing or active call; either party may.
func (s *Service) End(ctx context.Context, userID, callID string) (*parley.Call, error) {
	var c *parley.Call
	err := s.store.Update(ctx, func(tx *store.Tx) (err error) {
		if c, err = participantCall(tx, userID, callID); err != nil {
			return err
		}
		if c.State != parley.CallRinging && c.State != parley.CallActive {
			return parley.Errorf(parley.EConflict, "the call is %s", c.State)
		}
		ok, err := s.transition(tx, c, c.State, parley.CallEnded)
		if err == nil && !ok {
			err = parley.Errorf(parley.EConflict, "the call changed state")
		}
		return err
	})
	return c, err
}

// Signal relays a WebRTC payload (offer, answer, ICE candidate: any JSON up
// to MaxSignalPayload bytes once compacted) to the other party as a durable
// call.signal event, while the call rings or is active.
func (s *Service) Signal(ctx context.Context, userID, callID string, payload json.RawMessage) error {
	if len(payload) == 0 || bytes.Equal(payload, []byte("null")) {
		return parley.Invalid("payload", "payload is required")
	}
	// The log and the SSE wire need one-line JSON; compacting changes no value.
	var buf bytes.Buffer
	if err := json.Compact(&buf, payload); err != nil {
		return parley.Invalid("payload", "payload must be JSON")
	}
	if buf.Len() > MaxSignalPayload {
		return parley.Errorf(parley.ETooLarge, "payload must be at most %d bytes", MaxSignalPayload)
	}
	return s.store.Update(ctx, func(tx *store.Tx) error {
		c, err := participantCall(tx, userID, callID)
		if err != nil {
			return err
		}
		if c.State != parley.CallRinging && c.State != parley.CallActive {
			return parley.Errorf(parley.EConflict, "the call is %s", c.State)
		}
		other := c.CalleeID
		if userID == c.CalleeID {
			other = c.CallerID
		}
		ok, err := tx.AddSignalBytes(c.ID, userID == c.CallerID, int64(buf.Len()), s.opts.MaxSignalBytes)
		if err != nil {
			return err
		}
		if !ok {
			// A negotiation takes tens of KiB; what goes past the bound is
			// a client filling the log, not a call. A new call starts a new
			// count.
			return &parley.Error{Code: parley.ERateLimited, RetryAfter: s.opts.CallTimeout,
				Message: fmt.Sprintf("this call's signalling is over its %d bytes; end it and start another", s.opts.MaxSignalBytes)}
		}
		// Built by hand rather than with json.Marshal, which would rewrite
		// < > & inside the payload as \u003c…: the payload arrives as sent,
		// byte for byte once compacted.
		ids, _ := json.Marshal(struct {
			CallID     string `json:"call_id"`
			FromUserID string `json:"from_user_id"`
		}{c.ID, userID})
		data := make([]byte, 0, len(ids)+buf.Len()+12)
		data = append(data, ids[:len(ids)-1]...)
		data = append(data, `,"payload":`...)
		data = append(data, buf.Bytes()...)
		data = append(data, '}')
		_, err = tx.AppendLive(parley.NewEvent{UserID: other, Type: parley.EventCallSignal, Data: data})
		return err
	})
}

// ExpireCalls marks calls that rang longer than the timeout as missed. It is
// safe to run on every node at once: each transition is conditional on the
// call still ringing, so exactly one node makes it and writes its event.
func (s *Service) ExpireCalls(ctx context.Context) {
	// Most sweeps find nothing: a reader says so without queueing a write
	// transaction every second on an idle server.
	var due bool
	err := s.store.View(ctx, func(tx *store.Tx) error {
		calls, err := tx.RingingSince(time.Now().Add(-s.opts.CallTimeout), 1)
		due = len(calls) > 0
		return err
	})
	if err != nil {
		s.log.Warn("expire ringing calls", "err", err)
		return
	}
	if !due {
		return
	}
	for {
		n := 0
		err := s.store.Update(ctx, func(tx *store.Tx) error {
			n = 0
			calls, err := tx.RingingSince(time.Now().Add(-s.opts.CallTimeout), expireBatch)
			if err != nil {
				return err
			}
			convs := make([]string, len(calls))
			for i, c := range calls {
				convs[i] = c.ConversationID
			}
			if err := s.lockForWebhooks(tx, WebhookCallMissed, convs...); err != nil {
				return err
			}
			for _, c := range calls {
				if _, err := s.transition(tx, c, parley.CallRinging, parley.CallMissed); err != nil {
					return err
				}
			}
			n = len(calls)
			return nil
		})
		if err != nil {
			s.log.Warn("expire ringing calls", "err", err)
			return
		}
		if n < expireBatch {
			return
		}
	}
}

const expireBatch = 100

// CallSweepEvery is how often ExpireCalls should run for a ring timeout:
// often enough that a call is missed close to its timeout.
func CallSweepEvery(timeout time.Duration) time.Duration {
	return min(max(timeout/10, 20*time.Millisecond), time.Second)
}
