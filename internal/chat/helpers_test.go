package chat_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/servertest"
)

// pair is a node with a client and a professional who share a conversation.
type pair struct {
	n      *servertest.Node
	client servertest.User
	pro    servertest.User
	conv   *parley.Conversation
}

// newPair starts a node, registers a client and a professional and opens a
// conversation between them with a first message.
func newPair(t *testing.T, opts ...servertest.Option) *pair {
	t.Helper()
	n := servertest.Start(t, opts...)
	p := &pair{n: n, client: n.Register(t, "c", parley.RoleClient), pro: n.Register(t, "p", parley.RoleProfessional)}
	p.conv = openConv(t, n, p.client, p.pro, "hello")
	return p
}

func openConv(t *testing.T, n *servertest.Node, client, pro servertest.User, body string) *parley.Conversation {
	t.Helper()
	var c parley.Conversation
	res := n.Do(t, "POST", "/api/conversations", client.Token,
		map[string]any{"professional_id": pro.ID, "subject": "help", "message": map[string]any{"body": body}}, &c)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("open conversation: %d %s", res.StatusCode, res.Body)
	}
	return &c
}

// send posts a message and requires 201.
func send(t *testing.T, n *servertest.Node, u servertest.User, convID, body string) *parley.Message {
	t.Helper()
	var m parley.Message
	res := n.Do(t, "POST", "/api/conversations/"+convID+"/messages", u.Token, map[string]any{"body": body}, &m)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("send: %d %s", res.StatusCode, res.Body)
	}
	return &m
}

func getConv(t *testing.T, n *servertest.Node, u servertest.User, convID string) *parley.Conversation {
	t.Helper()
	var c parley.Conversation
	if res := n.Do(t, "GET", "/api/conversations/"+convID, u.Token, nil, &c); res.StatusCode != http.StatusOK {
		t.Fatalf("get conversation: %d %s", res.StatusCode, res.Body)
	}
	return &c
}

type history struct {
	Messages []*parley.Message `json:"messages"`
	HasMore  bool              `json:"has_more"`
}

func getHistory(t *testing.T, n *servertest.Node, u servertest.User, convID, query string) history {
	t.Helper()
	var h history
	if res := n.Do(t, "GET", "/api/conversations/"+convID+"/messages"+query, u.Token, nil, &h); res.StatusCode != http.StatusOK {
		t.Fatalf("history %s: %d %s", query, res.StatusCode, res.Body)
	}
	return h
}

// wantError requires a SPEC error with the status and code.
func wantError(t *testing.T, res *servertest.Response, status int, code string) {
	t.Helper()
	if res.StatusCode != status || res.ErrorCode() != code {
		t.Fatalf("got %d %s, want %d %s", res.StatusCode, res.Body, status, code)
	}
}

// logHead returns the newest id of the user's log, read from a stream's
// ready event without replaying (so nothing counts as delivered).
func logHead(t *testing.T, n *servertest.Node, u servertest.User) int64 {
	t.Helper()
	s := n.OpenStream(t, u.Token, -1)
	defer s.Close()
	var ready struct {
		LastID int64 `json:"last_id"`
	}
	s.NextOf(t, parley.EventReady, 5*time.Second).Decode(t, &ready)
	return ready.LastID
}

// poll reads the user's log after an id without waiting.
func poll(t *testing.T, n *servertest.Node, u servertest.User, after int64) []parley.Event {
	t.Helper()
	var out struct {
		Events []parley.Event `json:"events"`
	}
	res := n.Do(t, "GET", "/api/events/poll?wait=0&after="+strconv.FormatInt(after, 10), u.Token, nil, &out)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("poll: %d %s", res.StatusCode, res.Body)
	}
	return out.Events
}

// eventTypes lists the types of events.
func eventTypes(evs []parley.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

// noEventOf fails if an event of type typ arrives on s within d.
func noEventOf(t *testing.T, s *servertest.Stream, typ string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case e, ok := <-s.Events:
			if !ok {
				t.Fatalf("stream ended")
			}
			if e.Type == typ {
				t.Fatalf("unexpected %s event: %s", typ, e.Data)
			}
		case <-deadline:
			return
		}
	}
}

// eventually polls cond every 20 ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The helpers below are safe to use from goroutines other than the test's:
// they return errors instead of failing the test.

// call performs a JSON request and decodes a 2xx answer into out.
func call(ctx context.Context, method, url, token string, body, out any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, nil, err
	}
	if out != nil && res.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			return res.StatusCode, b, fmt.Errorf("decode %s: %w", b, err)
		}
	}
	return res.StatusCode, b, nil
}

// dial opens an event stream and hands its events to fn until the stream
// ends or ctx is cancelled. ready is closed once the response headers are in.
func dial(ctx context.Context, url, token string, lastID int64, fn func(servertest.Event)) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url+"/api/events", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID >= 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(lastID, 10))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("stream: %d %s", res.StatusCode, b)
	}
	return servertest.ReadSSE(bufio.NewReader(res.Body), fn)
}
