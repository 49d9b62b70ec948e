package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
	"github.com/parley-chat/parley/internal/testenv"
)

// unique returns a name no other test run uses, for bus prefixes.
func unique(prefix string) string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// withPrefix adds a prefix parameter to a bus URL, so that tests sharing a
// Redis or NATS server do not hear each other.
func withPrefix(busURL string) string {
	return busURL + "?prefix=" + unique("parleyct")
}

// startNodes runs n in-process nodes on one fresh PostgreSQL database and
// the bus at busURL. change, if not nil, adjusts the shared config.
func startNodes(t *testing.T, n int, busURL string, change func(*config.Config)) []*servertest.Node {
	t.Helper()
	db := testenv.FreshDatabase(t, testenv.Postgres(t))
	c := servertest.Config(t)
	c.DatabaseURL, c.Bus = db, busURL
	if change != nil {
		change(&c)
	}
	nodes := []*servertest.Node{servertest.StartConfig(t, c)}
	for len(nodes) < n {
		nodes = append(nodes, servertest.StartConfig(t, servertest.Peer(t, c)))
	}
	return nodes
}

// hostPort is a node's host:port, for nginx's upstream.
func hostPort(url string) string { return strings.TrimPrefix(url, "http://") }

// streamClient has no timeout: a stream lasts as long as its context.
var streamClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// apiClient bounds each request, so a request to a dead node fails fast.
var apiClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// publish sends an app event through the publish API at base and returns
// the ids the users got. An error means the event is not acknowledged
// (it may or may not have been committed).
func publish(base, typ string, data any, userIDs ...string) (map[string]int64, error) {
	body, _ := json.Marshal(map[string]any{"user_ids": userIDs, "type": typ, "data": data})
	req, _ := http.NewRequest("POST", base+"/api/publish", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+servertest.APIKey)
	res, err := apiClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("publish: %d %s", res.StatusCode, b)
	}
	var out struct {
		IDs map[string]int64 `json:"ids"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return out.IDs, nil
}

// mustPublish publishes, retrying for a few seconds (a node may be going
// down), and fails the test if it never succeeds.
func mustPublish(t *testing.T, base, typ string, data any, userIDs ...string) map[string]int64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ids, err := publish(base, typ, data, userIDs...)
		if err == nil {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish %s: %v", typ, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ready reports the status of GET /readyz.
func ready(base string) int {
	res, err := apiClient.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// device is one of a user's devices: an SSE client that starts from the
// beginning of the log (Last-Event-ID: 0) and reconnects with its last id
// whenever the stream ends, as a browser does. It checks on the wire, with
// no de-duplication of its own, that the durable ids it receives are
// exactly 1, 2, 3…
type device struct {
	name  string
	base  string
	token string

	mu         sync.Mutex
	events     []servertest.Event // durable events, in order
	last       int64
	problems   []string
	connects   int
	ephemeral  []servertest.Event
	changed    chan struct{}
	cancel     context.CancelFunc
	done       chan struct{}
	connectErr error
}

func openDevice(t *testing.T, name, base, token string) *device {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &device{name: name, base: base, token: token, changed: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go d.run(ctx)
	t.Cleanup(d.close)
	// Wait for the first connection so that the test's placement holds.
	deadline := time.Now().Add(10 * time.Second)
	for d.connections() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no stream within 10s: %v", name, d.lastError())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return d
}

func (d *device) close() {
	d.cancel()
	<-d.done
}

func (d *device) run(ctx context.Context) {
	defer close(d.done)
	for ctx.Err() == nil {
		err := d.connect(ctx)
		d.mu.Lock()
		d.connectErr = err
		d.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (d *device) connect(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, "GET", d.base+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+d.token)
	d.mu.Lock()
	req.Header.Set("Last-Event-ID", strconv.FormatInt(d.last, 10))
	d.mu.Unlock()
	res, err := streamClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		return fmt.Errorf("status %d: %s", res.StatusCode, b)
	}
	return servertest.ReadSSE(bufio.NewReader(res.Body), d.receive)
}

func (d *device) receive(e servertest.Event) {
	d.mu.Lock()
	switch {
	case e.Type == "ready":
		d.connects++
	case e.Type == "reset":
		d.problems = append(d.problems, fmt.Sprintf("reset after %d: %s", d.last, e.Data))
	case !e.HasID:
		d.ephemeral = append(d.ephemeral, e)
	case e.ID <= d.last:
		d.problems = append(d.problems, fmt.Sprintf("duplicate id %d after %d", e.ID, d.last))
	case e.ID > d.last+1:
		d.problems = append(d.problems, fmt.Sprintf("gap: id %d after %d", e.ID, d.last))
		d.last = e.ID
		d.events = append(d.events, e)
	default:
		d.last = e.ID
		d.events = append(d.events, e)
	}
	d.mu.Unlock()
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

func (d *device) connections() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.connects
}

func (d *device) lastError() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.connectErr
}

func (d *device) lastID() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// waitFor waits until the device has received id, failing after timeout.
func (d *device) waitFor(t *testing.T, id int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for d.lastID() < id {
		if time.Now().After(deadline) {
			t.Fatalf("%s: has id %d, want %d within %v (last error: %v)", d.name, d.lastID(), id, timeout, d.lastError())
		}
		select {
		case <-d.changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitEphemeral waits for an ephemeral event of type typ whose data
// contains each of want.
func (d *device) waitEphemeral(t *testing.T, typ string, timeout time.Duration, want ...string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !d.hasEphemeral(typ, want...) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s event with %q within %v", d.name, typ, want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hasEphemeral reports whether an ephemeral event of type typ whose data
// contains each of want has arrived.
func (d *device) hasEphemeral(typ string, want ...string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
next:
	for _, e := range d.ephemeral {
		if e.Type != typ {
			continue
		}
		for _, w := range want {
			if !strings.Contains(e.Data, w) {
				continue next
			}
		}
		return true
	}
	return false
}

// check fails the test if the device saw anything but 1, 2, 3… and returns
// its events.
func (d *device) check(t *testing.T) []servertest.Event {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range d.problems {
		t.Errorf("%s: %s", d.name, p)
	}
	for i, e := range d.events {
		if e.ID != int64(i+1) {
			t.Errorf("%s: event %d has id %d", d.name, i, e.ID)
			break
		}
	}
	return append([]servertest.Event(nil), d.events...)
}

// binary builds cmd/parley once per test binary, for tests that need real
// processes (a node killed with SIGKILL).
var binary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "parley-cluster-test")
	if err != nil {
		return "", err
	}
	binDir = dir
	out := filepath.Join(dir, "parley")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(gobin); err != nil {
		gobin = "go"
	}
	cmd := exec.Command(gobin, "build", "-o", out, "github.com/parley-chat/parley/cmd/parley")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/parley: %v\n%s", err, b)
	}
	return out, nil
})

var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// startProcessNode runs the built binary as a node on a free port, with
// flags (a flag wins over any PARLEY_* variable in the environment).
func startProcessNode(t *testing.T, name string, flags ...string) (*testenv.Process, string) {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatal(err)
	}
	port := testenv.FreePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	args := append([]string{"serve", "--addr", "127.0.0.1:{port}", "--data-dir", "{dir}",
		"--jwt-secret", "cluster-test-secret-cluster-test-secret", "--api-keys", servertest.APIKey,
		"--password-cost", "4", "--rate-limit", "0", "--log-level", "warn"}, flags...)
	p := testenv.StartProcess(t, name, bin, port, func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/readyz", nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %d", res.StatusCode)
		}
		return nil
	}, args...)
	return p, base
}

// streamsOpen reads parley_streams_open from a node's /metrics.
func streamsOpen(base string) int {
	return int(gauge(base, "parley_streams_open"))
}

// gauge reads an unlabelled metric from a node's /metrics; -1 if it has
// none or does not answer.
func gauge(base, name string) float64 {
	res, err := apiClient.Get(base + "/metrics")
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}
