package hostile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// metricsSize reads /metrics and returns its size in bytes.
func metricsSize(t *testing.T, n *servertest.Node) int {
	t.Helper()
	res, err := http.Get(n.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("/metrics: %d %v", res.StatusCode, err)
	}
	return len(b)
}

// TestMetricsLabelsBounded: every request method a client makes up used to
// become a label value of its own, kept for the life of the process (5,000
// random methods grew /metrics from 55 KB to 306 MB). Now only the known
// methods are labels and the rest count as "other": /metrics after 5,000
// random methods is within a few KB of its size before them.
func TestMetricsLabelsBounded(t *testing.T) {
	n := servertest.Start(t)
	// One of each route shape first, so that "before" holds their series.
	for _, m := range []string{"GET", "BREW"} {
		req, _ := http.NewRequest(m, n.URL+"/api/me", nil)
		servertest.Send(t, req, nil)
	}
	before := metricsSize(t, n)
	const requests = 5000
	client := &http.Client{}
	for i := range requests {
		m := fmt.Sprintf("X%dR%08X", i, rand.Uint32())
		path := []string{"/api/me", "/api/conversations", "/nowhere", "/healthz"}[i%4]
		req, err := http.NewRequest(m, n.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	after := metricsSize(t, n)
	t.Logf("/metrics: %d bytes before, %d after %d requests with random methods", before, after, requests)
	if after-before > 16<<10 {
		t.Fatalf("/metrics grew from %d to %d bytes with %d made-up methods: each is a series of its own", before, after, requests)
	}
}

// TestSlowBodyIsCut: a body trickled at a few bytes a second used to hold
// its connection for as long as the client liked (a login body at 1 byte/s
// stayed open past 40 s). With --body-timeout 1s the server stops reading
// it within the deadline and the connection is closed.
func TestSlowBodyIsCut(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.BodyTimeout = time.Second })
	conn, err := net.Dial("tcp", strings.TrimPrefix(n.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	closed := make(chan time.Duration, 1)
	go func() {
		_, _ = io.Copy(io.Discard, conn) // returns when the server closes
		closed <- time.Since(start)
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case d := <-closed:
			t.Logf("a body at 4 bytes/s was cut after %v", d.Round(10*time.Millisecond))
			if d > 3*time.Second {
				t.Fatalf("cut after %v, want about the 1s body timeout", d)
			}
			return
		case <-tick.C:
			if time.Since(start) > 6*time.Second {
				t.Fatalf("a body trickled at 4 bytes/s is still being read after %v", time.Since(start).Round(time.Second))
			}
			_, _ = conn.Write([]byte(" "))
		}
	}
}

// TestConnectionsPerAddressCapped: one address may hold at most
// --max-conns-per-ip connections; beyond it a connection gets a 503 in the
// contract's shape with Retry-After, and once its others close the address
// is served again.
func TestConnectionsPerAddressCapped(t *testing.T) {
	const max = 8
	n := servertest.Start(t, func(c *config.Config) { c.MaxConnsPerIP = max })
	addr := strings.TrimPrefix(n.URL, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var refused string
	for i := 0; i <= max && refused == ""; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		// A connection over the cap is answered at once, without a request.
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		b, _ := io.ReadAll(c)
		refused = string(b)
	}
	if !strings.HasPrefix(refused, "HTTP/1.1 503") || !strings.Contains(refused, "Retry-After:") || !strings.Contains(refused, `"code":"unavailable"`) {
		t.Fatalf("%d connections from one address, no refusal: %q", len(conns), refused)
	}
	if len(conns) > max+1 {
		t.Fatalf("refused only at connection %d, cap %d", len(conns), max)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, err := http.Get(n.URL + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the address is not served again once its connections closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// liveMB is this process's live Go heap in MiB, as the last garbage
// collection found it: what the program holds, not the garbage it has
// yet to collect.
func liveMB(*testing.T) float64 {
	m := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(m)
	return float64(m[0].Value.Uint64()) / (1 << 20)
}

// rssMB is this process's resident set in MiB (the in-process server's,
// with the test's own small share).
func rssMB(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestNonReadingClientsBounded: clients that ask for a log of large events
// and never read the answer used to pin it whole (a poll page was up to 500
// events; 30 polls over 64 KiB events took RSS from 102 MB to 1.64 GB, and 16
// streams resuming from 0 to 819 MB). Pages and replay batches are now
// bounded by bytes and every write has a deadline: RSS stays bounded, and
// each connection is cut within its write timeout.
//
// PARLEY_HOSTILE_FULL=1 runs the sizes (100 pollers and 100 streams
// over 500 events); CI runs a third of them.
func TestNonReadingClientsBounded(t *testing.T) {
	clients, events, bound := 30, 120, 150.0
	if os.Getenv("PARLEY_HOSTILE_FULL") != "" {
		clients, events, bound = 100, 500, 300.0
	}
	const writeTimeout = 2 * time.Second
	n := servertest.Start(t, func(c *config.Config) {
		c.WriteTimeout = writeTimeout
		c.MaxStreamsPerUser = clients
		c.MaxConnsPerIP = 0
		c.RateLimit = 0
	})
	user := n.Register(t, "big", "client")
	big := strings.Repeat("x", 64<<10-64)
	for i := range events {
		n.Publish(t, "app.big", map[string]any{"i": i, "pad": big}, user.ID)
	}
	// Under the race detector RSS also holds its shadow of every
	// allocation and the garbage its slower collections leave: with the
	// machine's cores busy elsewhere (other packages' tests), the same run
	// peaked anywhere from +170 to +730 MiB. There the live heap at each
	// collection stands for what the server holds; without the detector
	// RSS is measured, as a deployment sees it.
	mem, what := rssMB, "RSS"
	if raceEnabled {
		mem, what = liveMB, "live heap"
	}
	runtime.GC()
	debug.FreeOSMemory()
	before := mem(t)

	addr := strings.TrimPrefix(n.URL, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	open := func(path string, extra string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		// A small receive buffer, as a client that reads nothing has.
		_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s\r\n", path, user.Token, extra)
		conns = append(conns, c)
	}
	for range clients {
		open("/api/events/poll?after=0&wait=0", "")
		open("/api/events", "Last-Event-ID: 0\r\n")
	}
	opened := time.Now()
	peak := before
	for time.Since(opened) < writeTimeout+time.Second {
		peak = max(peak, mem(t))
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d non-reading pollers and %d non-reading streams over %d events of 64 KiB: %s %.0f MiB before, peak %.0f MiB (+%.0f)",
		clients, clients, events, what, before, peak, peak-before)
	if peak-before > bound {
		t.Errorf("%s grew by %.0f MiB with clients that read nothing, want under %.0f", what, peak-before, bound)
	}
	// The streams are cut once their queue has not moved for the write
	// timeout (they resume from the log when their client reads again);
	// the polls' pages are bounded and written within theirs.
	//
	// Not under the race detector: it slows the server so much that a
	// stream may finish its replay into the kernel's socket buffers (it
	// then holds nothing) before its write timeout, and rightly stays open.
	// scripts/test.sh runs this package without it as well.
	for open := streamsOpen(t, n); open != 0 && !raceEnabled; open = streamsOpen(t, n) {
		if since := time.Since(opened); since > 4*writeTimeout {
			t.Errorf("%d of %d non-reading streams still open %v after they opened (write timeout %v)", open, clients, since.Round(time.Second), writeTimeout)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// streamsOpen reads the parley_streams_open gauge.
func streamsOpen(t *testing.T, n *servertest.Node) int {
	t.Helper()
	res, err := http.Get(n.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "parley_streams_open "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return int(f)
		}
	}
	t.Fatal("no parley_streams_open in /metrics")
	return 0
}

// TestPublishOverloadBounded: concurrent fan-outs used to run all at once
// (128 publishes of 10,000 users each peaked at 2.17 GB RSS). The bytes of
// deliveries in flight (payload × recipients) are now bounded by
// --publish-in-flight: beyond it a publish waits up to a second, then gets
// 503 with Retry-After, and RSS stays bounded.
func TestPublishOverloadBounded(t *testing.T) {
	const users, publishers = 400, 64
	n := servertest.Start(t, func(c *config.Config) {
		c.PublishInFlight = 32 << 20           // one fan-out of 400 × 64 KiB at a time
		c.PublishWait = 100 * time.Millisecond // so that some wait too long on any machine
		c.MaxConnsPerIP = 0
		c.RateLimit = 0
	})
	ids := make([]string, users)
	for i := range ids {
		ids[i] = n.Register(t, "fan", "client").ID
	}
	body, _ := json.Marshal(map[string]any{"type": "app.big", "user_ids": ids, "data": map[string]string{"pad": strings.Repeat("y", 64<<10)}})
	runtime.GC()
	debug.FreeOSMemory()
	before := rssMB(t)
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				if v := int64(rssMB(t)); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	}()
	type result struct {
		status     int
		retryAfter string
		code       string
	}
	results := make(chan result, publishers)
	for range publishers {
		go func() {
			req, _ := http.NewRequest("POST", n.URL+"/api/publish", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+servertest.APIKey)
			res := servertest.Send(t, req, nil)
			results <- result{res.StatusCode, res.Header.Get("Retry-After"), res.ErrorCode()}
		}()
	}
	accepted, refused := 0, 0
	for range publishers {
		r := <-results
		switch {
		case r.status == http.StatusAccepted:
			accepted++
		case r.status == http.StatusServiceUnavailable && r.retryAfter != "" && r.code == "unavailable":
			refused++
		default:
			t.Errorf("publish answered %d (Retry-After %q, code %q)", r.status, r.retryAfter, r.code)
		}
	}
	close(stop)
	grew := float64(peak.Load()) - before
	t.Logf("%d concurrent publishes of 64 KiB to %d users: %d accepted, %d refused (503); RSS %.0f MiB before, +%.0f MiB at peak",
		publishers, users, accepted, refused, before, grew)
	if accepted == 0 || refused == 0 {
		t.Errorf("%d accepted and %d refused: want both, the bound admitting what fits", accepted, refused)
	}
	if bound := 200 * memScale; grew > bound {
		t.Errorf("RSS grew by %.0f MiB under publish overload, want under %.0f", grew, bound)
	}
}
