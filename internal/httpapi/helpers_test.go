package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/servertest"
)

// wantError checks that res is the SPEC's error answer: the status, a JSON
// body that is exactly {"error":{"code","message"}} (plus the optional field
// name) with the code and a non-empty message.
func wantError(tb testing.TB, res *servertest.Response, status int, code string) {
	tb.Helper()
	if res.StatusCode != status {
		tb.Fatalf("%s %s: status %d, want %d; body %s", res.Request.Method, res.Request.URL.Path, res.StatusCode, status, res.Body)
	}
	checkErrorShape(tb, res.Header, res.Body)
	if got := res.ErrorCode(); got != code {
		tb.Fatalf("%s %s: code %q, want %q; body %s", res.Request.Method, res.Request.URL.Path, got, code, res.Body)
	}
}

// wantField checks a 400 invalid_request that names field.
func wantField(tb testing.TB, res *servertest.Response, field string) {
	tb.Helper()
	wantError(tb, res, http.StatusBadRequest, "invalid_request")
	var e struct {
		Error struct {
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	_ = json.Unmarshal(res.Body, &e)
	if e.Error.Field != field && !strings.Contains(e.Error.Message, field) {
		tb.Fatalf("%s: error does not name the field %q: %s", res.Request.URL.Path, field, res.Body)
	}
}

// checkErrorShape checks a body against SPEC §1's error object.
func checkErrorShape(tb testing.TB, h http.Header, body []byte) {
	tb.Helper()
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		tb.Fatalf("error answer has Content-Type %q, want application/json: %s", ct, body)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil || len(top) != 1 || top["error"] == nil {
		tb.Fatalf("error body is not {\"error\": {...}}: %s", body)
	}
	var e map[string]any
	if err := json.Unmarshal(top["error"], &e); err != nil {
		tb.Fatalf("error object: %v: %s", err, body)
	}
	code, _ := e["code"].(string)
	msg, _ := e["message"].(string)
	if code == "" || msg == "" {
		tb.Fatalf("error object needs code and message: %s", body)
	}
	for k := range e {
		if k != "code" && k != "message" && k != "field" {
			tb.Fatalf("unexpected key %q in error object: %s", k, body)
		}
	}
	if strings.Contains(string(body), "goroutine ") || strings.Contains(string(body), ".go:") {
		tb.Fatalf("error body leaks internals: %s", body)
	}
}

// send performs a request built by the caller and reads the whole answer.
func send(tb testing.TB, req *http.Request) *servertest.Response {
	tb.Helper()
	return servertest.Send(tb, req, nil)
}

// newRequest builds a request against the node; body may be nil, a string or
// []byte (sent as is, with a Content-Length) or an io.Reader (sent chunked).
func newRequest(tb testing.TB, n *servertest.Node, method, path string, body any) *http.Request {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	case io.Reader:
		rd = b
	default:
		tb.Fatalf("newRequest: body of type %T", body)
	}
	req, err := http.NewRequest(method, n.URL+path, rd)
	if err != nil {
		tb.Fatalf("request: %v", err)
	}
	if _, chunked := body.(io.Reader); chunked {
		req.ContentLength = -1
	}
	return req
}

// publish is Node.Publish for goroutines other than the test's: it returns
// an error instead of failing the test.
func publish(ctx context.Context, n *servertest.Node, typ string, data any, userIDs ...string) (map[string]int64, error) {
	body, err := json.Marshal(map[string]any{"user_ids": userIDs, "type": typ, "data": data})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", n.URL+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+servertest.APIKey)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("publish: status %d: %s", res.StatusCode, b)
	}
	var out struct {
		IDs map[string]int64 `json:"ids"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out.IDs, nil
}

// pollResult is the answer of GET /api/events/poll.
type pollResult struct {
	Events []struct {
		ID   int64           `json:"id"`
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
		Time string          `json:"time"`
	} `json:"events"`
	LastID int64 `json:"last_id"`
	Reset  *struct {
		Reason string `json:"reason"`
		LastID int64  `json:"last_id"`
	} `json:"reset"`
}

// poll calls the poll endpoint and fails the test unless it answers 200.
func poll(tb testing.TB, n *servertest.Node, token string, after int64, wait int) pollResult {
	tb.Helper()
	var out pollResult
	res := n.Do(tb, "GET", fmt.Sprintf("/api/events/poll?after=%d&wait=%d", after, wait), token, nil, &out)
	if res.StatusCode != http.StatusOK {
		tb.Fatalf("poll after=%d: status %d: %s", after, res.StatusCode, res.Body)
	}
	if out.Events == nil {
		tb.Fatalf("poll answered without an events array: %s", res.Body)
	}
	return out
}

// metric returns the value of one series of /metrics, e.g.
// `parley_stream_closes_total{reason="slow"}`; a series not yet present is 0.
func metric(tb testing.TB, n *servertest.Node, series string) float64 {
	tb.Helper()
	res := n.Do(tb, "GET", "/metrics", "", nil, nil)
	if res.StatusCode != http.StatusOK {
		tb.Fatalf("/metrics: status %d", res.StatusCode)
	}
	sc := bufio.NewScanner(bytes.NewReader(res.Body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if ok && name == series {
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				tb.Fatalf("metric %s: %v", series, err)
			}
			return v
		}
	}
	return 0
}

// eventually polls cond until it holds, failing the test after timeout.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ended waits for the stream to be closed by the server, failing the test if
// it is not within timeout. Events still queued are returned.
func ended(tb testing.TB, s *servertest.Stream, timeout time.Duration) []servertest.Event {
	tb.Helper()
	var rest []servertest.Event
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case e, ok := <-s.Events:
			if !ok {
				return rest
			}
			rest = append(rest, e)
		case <-timer.C:
			tb.Fatalf("stream still open after %v (got %d more events)", timeout, len(rest))
		}
	}
}
