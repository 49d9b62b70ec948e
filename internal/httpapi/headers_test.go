package httpapi_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestJSONNotStored: every JSON answer, success or error, tells browsers
// and proxies not to keep it and not to sniff it as anything else.
func TestJSONNotStored(t *testing.T) {
	n := servertest.Start(t)
	u := n.Register(t, "hdr", "client")
	for _, tc := range []struct{ method, path, token string }{
		{"GET", "/api/me", u.Token},
		{"GET", "/api/me", ""},
		{"GET", "/api/config", ""},
		{"GET", "/api/nowhere", u.Token},
		{"POST", "/api/auth/login", ""},
		{"GET", "/healthz", ""},
		{"GET", "/no-such-page", ""},
	} {
		res := n.Do(t, tc.method, tc.path, tc.token, nil, nil)
		if !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s %s: Content-Type %q", tc.method, tc.path, res.Header.Get("Content-Type"))
		}
		if res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s %s → %d: Cache-Control %q, X-Content-Type-Options %q", tc.method, tc.path, res.StatusCode,
				res.Header.Get("Cache-Control"), res.Header.Get("X-Content-Type-Options"))
		}
	}
}

// TestDiagStreamCap: the credential-free test stream is capped; beyond the
// cap a client gets 503 with Retry-After in the error shape, and a place
// frees up when a stream ends.
func TestDiagStreamCap(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.MaxDiagStreams = 2 })
	open := func() (*http.Response, context.CancelFunc) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+"/api/diag/stream", nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		return res, cancel
	}
	var cancels []context.CancelFunc
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for range 2 {
		res, cancel := open()
		cancels = append(cancels, cancel)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("stream within the cap: %d", res.StatusCode)
		}
		// The stream is under way once its first line is here.
		if _, err := bufio.NewReader(res.Body).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	res := n.Do(t, "GET", "/api/diag/stream", "", nil, nil)
	if res.StatusCode != http.StatusServiceUnavailable || res.ErrorCode() != "unavailable" || res.Header.Get("Retry-After") == "" {
		t.Fatalf("stream over the cap: %d %s Retry-After %q", res.StatusCode, res.Body, res.Header.Get("Retry-After"))
	}
	cancels[0]()
	for i := 0; ; i++ {
		res, cancel := open()
		cancels = append(cancels, cancel)
		if res.StatusCode == http.StatusOK {
			break
		}
		res.Body.Close()
		time.Sleep(10 * time.Millisecond)
		if i > 200 {
			t.Fatalf("no place freed after a stream ended: %d", res.StatusCode)
		}
	}
}
