package chat_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

func startCall(t *testing.T, n *servertest.Node, u servertest.User, convID, media string) *parley.Call {
	t.Helper()
	var c parley.Call
	if res := n.Do(t, "POST", "/api/conversations/"+convID+"/calls", u.Token, map[string]any{"media": media}, &c); res.StatusCode != http.StatusCreated {
		t.Fatalf("start call: %d %s", res.StatusCode, res.Body)
	}
	return &c
}

func callAction(t *testing.T, n *servertest.Node, u servertest.User, callID, action string) (*parley.Call, *servertest.Response) {
	t.Helper()
	var c parley.Call
	res := n.Do(t, "POST", "/api/calls/"+callID+"/"+action, u.Token, nil, &c)
	return &c, res
}

// nextCall reads the next call event of type typ and decodes it.
func nextCall(t *testing.T, s *servertest.Stream, typ string) *parley.Call {
	t.Helper()
	e := s.NextOf(t, typ, 5*time.Second)
	var c parley.Call
	e.Decode(t, &c)
	if !e.HasID {
		t.Fatalf("%s without id", typ)
	}
	return &c
}

type signal struct {
	CallID     string          `json:"call_id"`
	FromUserID string          `json:"from_user_id"`
	Payload    json.RawMessage `json:"payload"`
}

func TestCallAcceptSignalEnd(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	callerStream := n.OpenStream(t, p.client.Token, -1)
	calleeStream := n.OpenStream(t, p.pro.Token, -1)

	wantError(t, n.Do(t, "POST", "/api/conversations/"+p.conv.ID+"/calls", p.client.Token, map[string]any{"media": "hologram"}, nil), 400, parley.EInvalid)
	c := startCall(t, n, p.client, p.conv.ID, "video")
	if c.State != parley.CallRinging || c.CallerID != p.client.ID || c.CalleeID != p.pro.ID || c.Media != "video" ||
		c.ConversationID != p.conv.ID || c.AnsweredAt != nil || c.EndedAt != nil || c.CreatedAt.IsZero() {
		t.Fatalf("call = %+v", c)
	}
	for _, s := range []*servertest.Stream{callerStream, calleeStream} {
		if got := nextCall(t, s, parley.EventCallRinging); got.ID != c.ID || got.State != parley.CallRinging {
			t.Fatalf("call.ringing = %+v", got)
		}
	}
	// One live call per conversation, whoever starts it.
	wantError(t, n.Do(t, "POST", "/api/conversations/"+p.conv.ID+"/calls", p.pro.Token, map[string]any{"media": "audio"}, nil), 409, parley.EConflict)
	// Only the callee answers.
	for _, a := range []string{"accept", "decline"} {
		_, res := callAction(t, n, p.client, c.ID, a)
		wantError(t, res, 403, parley.EForbidden)
	}

	// Signalling while ringing: the offer goes to the callee only.
	offer := []byte(`{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 <127.0.0.1> & more","n":[1,2.5,null,true]}`)
	body := append(append([]byte(`{"payload":`), offer...), '}')
	if res := n.Do(t, "POST", "/api/calls/"+c.ID+"/signal", p.client.Token, body, nil); res.StatusCode != http.StatusAccepted {
		t.Fatalf("signal: %d %s", res.StatusCode, res.Body)
	}
	e := calleeStream.NextOf(t, parley.EventCallSignal, 5*time.Second)
	var sig signal
	e.Decode(t, &sig)
	if sig.CallID != c.ID || sig.FromUserID != p.client.ID || !bytes.Equal(sig.Payload, offer) {
		t.Fatalf("call.signal = %s", e.Data)
	}

	acc, res := callAction(t, n, p.pro, c.ID, "accept")
	if res.StatusCode != 200 || acc.State != parley.CallActive || acc.AnsweredAt == nil || acc.EndedAt != nil {
		t.Fatalf("accept: %d %s", res.StatusCode, res.Body)
	}
	for _, s := range []*servertest.Stream{callerStream, calleeStream} {
		if got := nextCall(t, s, parley.EventCallAccepted); got.State != parley.CallActive || got.AnsweredAt == nil {
			t.Fatalf("call.accepted = %+v", got)
		}
	}
	// The caller's stream never saw their own signal: its next call event
	// after ringing was the accept.
	for _, a := range []string{"accept", "decline"} {
		_, res := callAction(t, n, p.pro, c.ID, a)
		wantError(t, res, 409, parley.EConflict)
	}

	// A 64 KiB answer arrives intact; one byte more is refused.
	big := signalPayload(64 << 10)
	if res := n.Do(t, "POST", "/api/calls/"+c.ID+"/signal", p.pro.Token, append(append([]byte(`{"payload":`), big...), '}'), nil); res.StatusCode != http.StatusAccepted {
		t.Fatalf("64 KiB signal: %d %s", res.StatusCode, res.Body)
	}
	e = callerStream.NextOf(t, parley.EventCallSignal, 5*time.Second)
	e.Decode(t, &sig)
	if sig.FromUserID != p.pro.ID || !bytes.Equal(sig.Payload, big) {
		t.Fatalf("64 KiB payload changed: got %d bytes", len(sig.Payload))
	}
	tooBig := signalPayload(64<<10 + 1)
	wantError(t, n.Do(t, "POST", "/api/calls/"+c.ID+"/signal", p.pro.Token, append(append([]byte(`{"payload":`), tooBig...), '}'), nil), 413, parley.ETooLarge)
	wantError(t, n.Do(t, "POST", "/api/calls/"+c.ID+"/signal", p.pro.Token, map[string]any{}, nil), 400, parley.EInvalid)
	wantError(t, n.Do(t, "POST", "/api/calls/"+c.ID+"/signal", p.pro.Token, map[string]any{"payload": nil}, nil), 400, parley.EInvalid)

	// Either party ends it.
	end, res := callAction(t, n, p.client, c.ID, "end")
	if res.StatusCode != 200 || end.State != parley.CallEnded || end.EndedAt == nil || end.AnsweredAt == nil {
		t.Fatalf("end: %d %s", res.StatusCode, res.Body)
	}
	for _, s := range []*servertest.Stream{callerStream, calleeStream} {
		if got := nextCall(t, s, parley.EventCallEnded); got.State != parley.CallEnded {
			t.Fatalf("call.ended = %+v", got)
		}
	}
	for _, a := range []string{"end", "accept", "decline"} {
		_, res := callAction(t, n, p.pro, c.ID, a)
		wantError(t, res, 409, parley.EConflict)
	}
	wantError(t, n.Do(t, "POST", "/api/calls/"+c.ID+"/signal", p.pro.Token, map[string]any{"payload": map[string]any{"a": 1}}, nil), 409, parley.EConflict)
	var got parley.Call
	if res := n.Do(t, "GET", "/api/calls/"+c.ID, p.pro.Token, nil, &got); res.StatusCode != 200 || got.State != parley.CallEnded {
		t.Fatalf("get call: %d %s", res.StatusCode, res.Body)
	}

	// Signals only ever went to the other party's log.
	for _, u := range []servertest.User{p.client, p.pro} {
		for _, e := range poll(t, n, u, 0) {
			if e.Type == parley.EventCallSignal {
				var s signal
				_ = json.Unmarshal(e.Data, &s)
				if s.FromUserID == u.ID {
					t.Fatalf("%s's log holds their own signal", u.Username)
				}
			}
		}
	}
	// The conversation is free for a new call.
	startCall(t, n, p.pro, p.conv.ID, "audio")
}

// signalPayload returns compact JSON of exactly size bytes, with characters
// that JSON encoders like to rewrite.
func signalPayload(size int) []byte {
	head := []byte(`{"type":"answer","sdp":"<é&>`)
	tail := []byte(`"}`)
	b := append([]byte{}, head...)
	b = append(b, bytes.Repeat([]byte("a"), size-len(head)-len(tail))...)
	return append(b, tail...)
}

func TestCallDeclineAndHangUpWhileRinging(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	clientStream := n.OpenStream(t, p.client.Token, -1)

	// The professional may call the client too; the client declines.
	c := startCall(t, n, p.pro, p.conv.ID, "audio")
	if c.CalleeID != p.client.ID {
		t.Fatalf("callee = %s", c.CalleeID)
	}
	dec, res := callAction(t, n, p.client, c.ID, "decline")
	if res.StatusCode != 200 || dec.State != parley.CallDeclined || dec.EndedAt == nil || dec.AnsweredAt != nil {
		t.Fatalf("decline: %d %s", res.StatusCode, res.Body)
	}
	if got := nextCall(t, clientStream, parley.EventCallDeclined); got.ID != c.ID {
		t.Fatalf("call.declined = %+v", got)
	}
	for _, a := range []string{"end", "accept"} {
		_, res := callAction(t, n, p.client, c.ID, a)
		wantError(t, res, 409, parley.EConflict)
	}

	// A ringing call can be hung up by the caller or the callee.
	for _, who := range []servertest.User{p.client, p.pro} {
		c := startCall(t, n, p.client, p.conv.ID, "video")
		end, res := callAction(t, n, who, c.ID, "end")
		if res.StatusCode != 200 || end.State != parley.CallEnded || end.AnsweredAt != nil {
			t.Fatalf("end while ringing by %s: %d %s", who.Username, res.StatusCode, res.Body)
		}
	}
}

func TestCallMissedAfterTimeout(t *testing.T) {
	t.Parallel()
	p := newPair(t, func(c *config.Config) { c.CallTimeout = 300 * time.Millisecond })
	n := p.n
	callerStream := n.OpenStream(t, p.client.Token, -1)
	calleeStream := n.OpenStream(t, p.pro.Token, -1)

	c := startCall(t, n, p.client, p.conv.ID, "audio")
	start := time.Now()
	for _, s := range []*servertest.Stream{callerStream, calleeStream} {
		got := nextCall(t, s, parley.EventCallMissed)
		if got.ID != c.ID || got.State != parley.CallMissed || got.EndedAt == nil || got.AnsweredAt != nil {
			t.Fatalf("call.missed = %+v", got)
		}
		// The upper bounds only catch a timeout that is not applied; they
		// leave room for a loaded machine.
		if d := got.EndedAt.Sub(c.CreatedAt.Time); d < 300*time.Millisecond || d > 5*time.Second {
			t.Fatalf("missed %v after the start", d)
		}
	}
	if el := time.Since(start); el > 8*time.Second {
		t.Fatalf("missed only after %v", el)
	}
	// Exactly one call.missed, however many sweeps ran.
	noEventOf(t, calleeStream, parley.EventCallMissed, 200*time.Millisecond)
	_, res := callAction(t, n, p.pro, c.ID, "accept")
	wantError(t, res, 409, parley.EConflict)
	var got parley.Call
	n.Do(t, "GET", "/api/calls/"+c.ID, p.client.Token, nil, &got)
	if got.State != parley.CallMissed {
		t.Fatalf("state = %s", got.State)
	}
	// An answered call is not missed later.
	c2 := startCall(t, n, p.client, p.conv.ID, "audio")
	if _, res := callAction(t, n, p.pro, c2.ID, "accept"); res.StatusCode != 200 {
		t.Fatalf("accept: %d %s", res.StatusCode, res.Body)
	}
	time.Sleep(500 * time.Millisecond)
	n.Do(t, "GET", "/api/calls/"+c2.ID, p.client.Token, nil, &got)
	if got.State != parley.CallActive {
		t.Fatalf("answered call is %s after the timeout", got.State)
	}
	if !strings.Contains(string(n.Do(t, "GET", "/api/calls/"+c2.ID, p.client.Token, nil, nil).Body), `"ended_at":null`) {
		t.Fatalf("ended_at should be null on an active call")
	}
}
