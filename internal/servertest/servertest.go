// Package servertest starts real Parley nodes for black-box tests: the whole
// server on a random 127.0.0.1 port with a temporary data dir, and small HTTP
// helpers that speak the SPEC's JSON. Tests talk to it only over HTTP.
package servertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/internal/testenv"
)

// APIKey is the publish key every test node accepts.
const APIKey = "test-api-key"

// Node is a running server.
type Node struct {
	URL    string
	Config config.Config
	srv    *server.Server
	tb     testing.TB
	done   bool
}

// Option changes a node's config before it starts.
type Option func(*config.Config)

// Config returns test defaults: a temp data dir, a random port, fast
// password hashing, no rate limit, quiet logs. PARLEY_TEST_DATABASE_URL and
// PARLEY_TEST_BUS, when set, point every node at that store and bus, so the
// same suites run against PostgreSQL, Redis and NATS.
//
// With a PostgreSQL PARLEY_TEST_DATABASE_URL, each call gets a fresh
// database on that server, dropped when the test ends, so tests stay as
// independent as with SQLite; nodes that must share one are made with Peer.
func Config(tb testing.TB) config.Config {
	tb.Helper()
	c := config.Default()
	c.Addr = "127.0.0.1:0"
	c.DataDir = tb.TempDir()
	c.APIKeys = []string{APIKey}
	c.PasswordCost = 4
	c.RateLimit = 0
	c.JWTSecret = "test-secret-test-secret-test-secret"
	c.DatabaseURL = os.Getenv("PARLEY_TEST_DATABASE_URL")
	if strings.HasPrefix(c.DatabaseURL, "postgres://") || strings.HasPrefix(c.DatabaseURL, "postgresql://") {
		c.DatabaseURL = testenv.FreshDatabase(tb, c.DatabaseURL)
	}
	c.Bus = os.Getenv("PARLEY_TEST_BUS")
	return c
}

// Peer returns the config of another node of c's cluster: the same
// database, bus, secret and settings, its own port and data dir. Nodes
// share PostgreSQL; the embedded database belongs to one process.
func Peer(tb testing.TB, c config.Config) config.Config {
	tb.Helper()
	if c.DatabaseURL == "" {
		tb.Fatal("servertest.Peer: a cluster's nodes need PostgreSQL (DatabaseURL)")
	}
	p := c
	p.Addr = "127.0.0.1:0"
	p.DataDir = tb.TempDir()
	return p
}

// Start runs a node until the test ends.
func Start(tb testing.TB, opts ...Option) *Node {
	tb.Helper()
	c := Config(tb)
	for _, o := range opts {
		o(&c)
	}
	return StartConfig(tb, c)
}

// StartConfig runs a node with exactly c.
func StartConfig(tb testing.TB, c config.Config) *Node {
	tb.Helper()
	level := slog.LevelWarn
	if os.Getenv("PARLEY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	srv, err := server.New(context.Background(), c, logger)
	if err != nil {
		tb.Fatalf("new server: %v", err)
	}
	if err := srv.Start(); err != nil {
		tb.Fatalf("start server: %v", err)
	}
	n := &Node{URL: "http://" + srv.Addr(), Config: c, srv: srv, tb: tb}
	tb.Cleanup(n.Stop)
	return n
}

// Stop shuts the node down gracefully. It is safe to call twice.
func (n *Node) Stop() {
	if n.done {
		return
	}
	n.done = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.srv.Shutdown(ctx); err != nil {
		n.tb.Logf("shutdown: %v", err)
	}
}

// User is a registered test user.
type User struct {
	ID       string
	Username string
	Role     string
	Token    string
}

var seq atomic.Int64

// Register creates a user with a unique name (prefix + counter) and role.
func (n *Node) Register(tb testing.TB, prefix, role string) User {
	tb.Helper()
	name := fmt.Sprintf("%s%d_%d", strings.ToLower(prefix), seq.Add(1), time.Now().UnixNano()%1e6)
	if len(name) > 32 {
		name = name[:32]
	}
	var out struct {
		User struct {
			ID string `json:"id"`
		} `json:"user"`
		Token string `json:"token"`
	}
	res := n.Do(tb, "POST", "/api/auth/register", "", map[string]any{"username": name, "password": "password123", "role": role}, &out)
	if res.StatusCode != http.StatusCreated {
		tb.Fatalf("register %s: status %d", name, res.StatusCode)
	}
	return User{ID: out.User.ID, Username: name, Role: role, Token: out.Token}
}

// Do sends a JSON request (body may be nil, a []byte sent as is, or a value
// to marshal) with the token as bearer credentials ("" for none), decodes a
// JSON answer into out when out is not nil, and returns the response with
// its body read.
func (n *Node) Do(tb testing.TB, method, path, token string, body any, out any) *Response {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			tb.Fatalf("marshal: %v", err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, n.URL+path, rd)
	if err != nil {
		tb.Fatalf("request: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return Send(tb, req, out)
}

// Response is an HTTP answer with its body.
type Response struct {
	*http.Response
	Body []byte
}

// ErrorCode returns the code of a SPEC error body, or "".
func (r *Response) ErrorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &e)
	return e.Error.Code
}

// Send performs req and decodes a 2xx JSON answer into out.
func Send(tb testing.TB, req *http.Request, out any) *Response {
	tb.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatalf("read body: %v", err)
	}
	if out != nil && res.StatusCode/100 == 2 && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			tb.Fatalf("decode %s: %v", b, err)
		}
	}
	return &Response{Response: res, Body: b}
}

// Publish sends an app event to users through the publish API and returns
// the event id each got.
func (n *Node) Publish(tb testing.TB, typ string, data any, userIDs ...string) map[string]int64 {
	tb.Helper()
	var out struct {
		IDs map[string]int64 `json:"ids"`
	}
	res := n.Do(tb, "POST", "/api/publish", APIKey, map[string]any{"user_ids": userIDs, "type": typ, "data": data}, &out)
	if res.StatusCode != http.StatusAccepted {
		tb.Fatalf("publish: status %d: %s", res.StatusCode, res.Body)
	}
	return out.IDs
}

// PprofAddr is where the node serves /debug/pprof/; "" when off.
func (n *Node) PprofAddr() string { return n.srv.PprofAddr() }

// Routes returns the route patterns the node registered, as the server's
// route table holds them.
func (n *Node) Routes() []string { return n.srv.Routes() }
