package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestOpsEndpoints: /healthz and /readyz answer 200, /metrics is Prometheus
// text with parley_streams_open counting open streams, /api/config shows the
// node's client settings.
func TestOpsEndpoints(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		c.Heartbeat = 7 * time.Second
		c.IdleTimeout = 3 * time.Minute
		c.MaxStreamsPerUser = 5
	})
	for _, path := range []string{"/healthz", "/readyz"} {
		if res := n.Do(t, "GET", path, "", nil, nil); res.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: %s", path, res.StatusCode, res.Body)
		}
	}

	res := n.Do(t, "GET", "/metrics", "", nil, nil)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: status %d, Content-Type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, name := range []string{"# TYPE parley_streams_open gauge", "parley_events_written_total", "parley_events_replayed_total", "parley_delivery_latency_seconds", "parley_http_requests_total", "parley_http_request_duration_seconds"} {
		if !strings.Contains(string(res.Body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	u := n.Register(t, "ops", parley.RoleClient)
	if got := metric(t, n, "parley_streams_open"); got != 0 {
		t.Fatalf("parley_streams_open = %v with no stream", got)
	}
	s := n.OpenStream(t, u.Token, -1)
	s.Next(t, 5*time.Second)
	if got := metric(t, n, "parley_streams_open"); got != 1 {
		t.Fatalf("parley_streams_open = %v with one stream", got)
	}
	n.Publish(t, "app.count", nil, u.ID)
	if got := metric(t, n, "parley_events_written_total"); got != 1 {
		t.Fatalf("parley_events_written_total = %v after one event", got)
	}
	if n.Config.DatabaseURL == "" || strings.HasPrefix(n.Config.DatabaseURL, "sqlite:") {
		// The embedded store holds the event in its tail until the
		// writer, idle for a second, merges it.
		if got := metric(t, n, "parley_store_tail_events"); got != 1 {
			t.Fatalf("parley_store_tail_events = %v right after one event, want 1", got)
		}
		eventually(t, 5*time.Second, "parley_store_tail_events to drop to 0", func() bool { return metric(t, n, "parley_store_tail_events") == 0 })
		// The registration and the event were write transactions, each
		// timed while waiting and in its commit.
		for _, h := range []string{"parley_store_write_wait_seconds_count", "parley_store_commit_seconds_count"} {
			if got := metric(t, n, h); got < 2 {
				t.Errorf("%s = %v after two write transactions", h, got)
			}
		}
	}
	s.Close()
	eventually(t, 5*time.Second, "parley_streams_open to drop to 0", func() bool { return metric(t, n, "parley_streams_open") == 0 })

	var cfg map[string]any
	if res := n.Do(t, "GET", "/api/config", "", nil, &cfg); res.StatusCode != http.StatusOK {
		t.Fatalf("/api/config: status %d", res.StatusCode)
	}
	for k, want := range map[string]float64{"heartbeat_ms": 7000, "idle_timeout_ms": 180000, "max_streams_per_user": 5} {
		if got, _ := cfg[k].(float64); got != want {
			t.Errorf("/api/config %s = %v, want %v (all: %v)", k, cfg[k], want, cfg)
		}
	}
	for _, k := range mapKeys(cfg) {
		k = strings.ToLower(k)
		// push_public_key is the VAPID public key browsers subscribe with:
		// public by design. Any other key or secret is not.
		if strings.Contains(k, "secret") || strings.Contains(k, "private") || (strings.Contains(k, "key") && k != "push_public_key") {
			t.Fatalf("/api/config shows private settings: %v", cfg)
		}
	}
}

func mapKeys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestDiagStream reads the first tick of /api/diag/stream, which needs no
// credentials: SSE headers, the retry hint, then event: tick {"n":1,"time"}
// about a second later.
func TestDiagStream(t *testing.T) {
	n := servertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+"/api/diag/stream", nil)
	start := time.Now()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" || res.Header.Get("Cache-Control") != "no-cache, no-transform" {
		t.Fatalf("diag stream: status %d, headers %v", res.StatusCode, res.Header)
	}
	br := bufio.NewReader(res.Body)
	if line, _ := br.ReadString('\n'); !strings.HasPrefix(line, "retry: ") {
		t.Fatalf("diag stream starts with %q", line)
	}
	var tick servertest.Event
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = servertest.ReadSSE(br, func(e servertest.Event) {
			if tick.Type == "" {
				tick = e
				cancel()
			}
		})
	}()
	<-done
	var d struct {
		N    int    `json:"n"`
		Time string `json:"time"`
	}
	if err := json.Unmarshal([]byte(tick.Data), &d); tick.Type != "tick" || err != nil || d.N != 1 {
		t.Fatalf("first diag event %+v, want tick with n=1", tick)
	}
	if _, err := time.Parse(time.RFC3339Nano, d.Time); err != nil {
		t.Fatalf("tick time %q: %v", d.Time, err)
	}
	if el := time.Since(start); el < 800*time.Millisecond || el > 5*time.Second {
		t.Fatalf("first tick after %v, want about 1s", el)
	}
}

// TestUnroutedAPI: an unknown /api path is a JSON 404, a known path with the
// wrong method a JSON 405 with Allow, outside /api too (where the web app
// takes the other paths).
func TestUnroutedAPI(t *testing.T) {
	n := servertest.Start(t)
	u := n.Register(t, "route", parley.RoleClient)
	for _, path := range []string{"/api/nope", "/api/", "/api/auth/nope", "/api/users/a/b", "/api/events/poll/x"} {
		wantError(t, n.Do(t, "GET", path, u.Token, nil, nil), http.StatusNotFound, "not_found")
	}
	// A stream has no headers-only form.
	for _, path := range []string{"/api/events", "/api/diag/stream"} {
		if res := n.Do(t, "HEAD", path, u.Token, nil, nil); res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET" {
			t.Fatalf("HEAD %s: %d, Allow %q, want 405 and GET", path, res.StatusCode, res.Header.Get("Allow"))
		}
	}
	wantError(t, n.Do(t, "POST", "/no-such-page", u.Token, nil, nil), http.StatusNotFound, "not_found")
	wantError(t, n.Do(t, "POST", "/", u.Token, nil, nil), http.StatusMethodNotAllowed, "method_not_allowed")
	for _, c := range []struct{ method, path, allow string }{
		{"DELETE", "/api/me", "GET"},
		{"GET", "/api/auth/login", "POST"},
		{"PUT", "/api/auth/register", "POST"},
		{"POST", "/api/events", "GET"},
		{"PATCH", "/api/events/poll", "GET"},
		{"GET", "/api/publish", "POST"},
		{"POST", "/api/users/x", "GET"},
		{"POST", "/api/config", "GET"},
		{"GET", "/api/auth/logout", "POST"},
		{"GET", "/api/auth/activity", "POST"},
		{"DELETE", "/api/users", "GET"},
		{"POST", "/api/diag/stream", "GET"},
		{"POST", "/healthz", "GET"},
		{"DELETE", "/readyz", "GET"},
		{"PUT", "/metrics", "GET"},
	} {
		res := n.Do(t, c.method, c.path, u.Token, nil, nil)
		wantError(t, res, http.StatusMethodNotAllowed, "method_not_allowed")
		if !strings.Contains(res.Header.Get("Allow"), c.allow) {
			t.Fatalf("%s %s: Allow %q, want %s in it", c.method, c.path, res.Header.Get("Allow"), c.allow)
		}
	}
}

// TestCORS: a configured origin gets its preflight answered with the
// methods and headers a client needs and credentials allowed; a foreign
// origin gets no CORS headers at all, on preflights, REST requests and the
// event stream.
func TestCORS(t *testing.T) {
	const good, foreign = "https://app.example.com", "https://evil.example.net"
	n := servertest.Start(t, func(c *config.Config) { c.CORSOrigins = []string{good} })

	preflight := func(origin string) *servertest.Response {
		t.Helper()
		req := newRequest(t, n, "OPTIONS", "/api/auth/login", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type, authorization")
		return send(t, req)
	}
	res := preflight(good)
	if res.StatusCode/100 != 2 {
		t.Fatalf("preflight: status %d", res.StatusCode)
	}
	h := res.Header
	if h.Get("Access-Control-Allow-Origin") != good || h.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("preflight for %s: headers %v", good, h)
	}
	if m := h.Get("Access-Control-Allow-Methods"); !strings.Contains(m, "POST") || !strings.Contains(m, "GET") {
		t.Fatalf("Access-Control-Allow-Methods = %q", m)
	}
	if a := strings.ToLower(h.Get("Access-Control-Allow-Headers")); !strings.Contains(a, "content-type") || !strings.Contains(a, "authorization") || !strings.Contains(a, "last-event-id") {
		t.Fatalf("Access-Control-Allow-Headers = %q", a)
	}

	res = preflight(foreign)
	for k := range res.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Fatalf("preflight for a foreign origin answered %s: %v", k, res.Header)
		}
	}

	// The event stream too, which the epoll engine answers by hand: an
	// EventSource withCredentials from the app's origin needs these.
	u := n.Register(t, "cors", parley.RoleClient)
	for origin, allowed := range map[string]bool{good: true, foreign: false} {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+"/api/events", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Authorization", "Bearer "+u.Token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		acao, acac := res.Header.Get("Access-Control-Allow-Origin"), res.Header.Get("Access-Control-Allow-Credentials")
		status := res.StatusCode
		cancel()
		res.Body.Close()
		if status != http.StatusOK || (allowed && (acao != origin || acac != "true")) || (!allowed && acao != "") {
			t.Fatalf("stream from %s: status %d, Access-Control-Allow-Origin %q, -Credentials %q", origin, status, acao, acac)
		}
	}

	for origin, allowed := range map[string]bool{good: true, foreign: false, "null": false, good + ".evil.net": false} {
		req := newRequest(t, n, "GET", "/api/config", nil)
		req.Header.Set("Origin", origin)
		res := send(t, req)
		if got := res.Header.Get("Access-Control-Allow-Origin"); (got == origin) != allowed || (!allowed && got != "") {
			t.Fatalf("GET from %s: Access-Control-Allow-Origin %q", origin, got)
		}
		if allowed && !strings.Contains(strings.Join(res.Header.Values("Vary"), ","), "Origin") {
			t.Fatalf("CORS answer without Vary: Origin")
		}
	}
}
