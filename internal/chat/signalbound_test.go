package chat_test

import (
	"net/http"
	"testing"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/chat"
)

// TestSignalBytesBounded: call.signal events are durable, so one party's
// signalling on one call is bounded in bytes; past it, 429 with Retry-After
// and nothing written, while the other party still signals and a new call
// starts a new count.
func TestSignalBytesBounded(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	n := p.n
	c := startCall(t, n, p.client, p.conv.ID, "audio")
	big := signalPayload(chat.MaxSignalPayload)
	body := append(append([]byte(`{"payload":`), big...), '}')
	sent := 0
	var res = n.Do(t, "POST", "/api/calls/"+c.ID+"/signal", p.client.Token, body, nil)
	for res.StatusCode == http.StatusAccepted && sent < 100 {
		sent++
		res = n.Do(t, "POST", "/api/calls/"+c.ID+"/signal", p.client.Token, body, nil)
	}
	if want := chat.DefaultMaxSignalBytes / chat.MaxSignalPayload; sent != want {
		t.Fatalf("%d signals of 64 KiB accepted, want %d", sent, want)
	}
	wantError(t, res, http.StatusTooManyRequests, parley.ERateLimited)
	if res.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	head := logHead(t, n, p.pro)
	if res := n.Do(t, "POST", "/api/calls/"+c.ID+"/signal", p.client.Token, []byte(`{"payload":{"candidate":"x"}}`), nil); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a small signal past the bound: %d", res.StatusCode)
	}
	if got := logHead(t, n, p.pro); got != head {
		t.Fatalf("a refused signal reached the callee's log (%d → %d)", head, got)
	}
	// The callee's own count is separate.
	if res := n.Do(t, "POST", "/api/calls/"+c.ID+"/signal", p.pro.Token, body, nil); res.StatusCode != http.StatusAccepted {
		t.Fatalf("callee's signal: %d %s", res.StatusCode, res.Body)
	}
	if _, res := callAction(t, n, p.client, c.ID, "end"); res.StatusCode != http.StatusOK {
		t.Fatalf("end: %d %s", res.StatusCode, res.Body)
	}
	c2 := startCall(t, n, p.client, p.conv.ID, "audio")
	if res := n.Do(t, "POST", "/api/calls/"+c2.ID+"/signal", p.client.Token, body, nil); res.StatusCode != http.StatusAccepted {
		t.Fatalf("signal on a new call: %d %s", res.StatusCode, res.Body)
	}
}
