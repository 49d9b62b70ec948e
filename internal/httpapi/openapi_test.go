package httpapi_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/httpapi"
	"github.com/parley-chat/parley/internal/servertest"
)

// loadOpenAPI parses and validates the document the server serves, with
// kin-openapi, as a client generator would.
func loadOpenAPI(tb testing.TB, b []byte) *openapi3.T {
	tb.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(b)
	if err != nil {
		tb.Fatalf("load the OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() {
		tb.Fatalf("openapi is %q, want 3.1", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		tb.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	return doc
}

// documented returns the document's operations as Go mux patterns
// ("GET /api/users/{id}").
func documented(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	sort.Strings(out)
	return out
}

// served returns the routes a node registered that the document must
// describe: every pattern with a method. Patterns without one are the
// catch-alls (/api/ answering 404/405, / for the web app) and pprof.
func served(n *servertest.Node) []string {
	var out []string
	for _, p := range n.Routes() {
		if method, _, ok := strings.Cut(p, " "); ok && method == strings.ToUpper(method) {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// TestOpenAPIRouteCoverage: every route the server registers, the ones
// added through API.Routes included, is in the document served at
// /api/openapi.json, and every documented operation is served. A route
// added to one and not the other fails here, naming it.
func TestOpenAPIRouteCoverage(t *testing.T) {
	n := servertest.Start(t)
	var raw json.RawMessage
	res := n.Do(t, "GET", "/api/openapi.json", "", nil, &raw)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/openapi.json: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	doc := loadOpenAPI(t, raw)
	docOps, routes := documented(doc), served(n)
	if len(routes) < 30 {
		t.Fatalf("the server registered only %d routes: %v", len(routes), routes)
	}
	for _, r := range routes {
		if !slices.Contains(docOps, r) {
			t.Errorf("route %q is served but missing from the OpenAPI document", r)
		}
	}
	for _, op := range docOps {
		if !slices.Contains(routes, op) {
			t.Errorf("operation %q is documented but not served", op)
		}
	}
}

// contract sends requests to a node and validates each request and its
// response against the OpenAPI document with kin-openapi's openapi3filter,
// recording which operations got a validated response.
type contract struct {
	tb     testing.TB
	node   *servertest.Node
	doc    *openapi3.T
	router routers.Router

	mu   sync.Mutex
	seen map[string]bool // "METHOD /path" of the document → a response was validated
}

func newContract(tb testing.TB, n *servertest.Node) *contract {
	tb.Helper()
	b, err := httpapi.OpenAPI()
	if err != nil {
		tb.Fatal(err)
	}
	doc := loadOpenAPI(tb, b)
	doc.Servers = openapi3.Servers{{URL: n.URL}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		tb.Fatalf("router: %v", err)
	}
	return &contract{tb: tb, node: n, doc: doc, router: router, seen: map[string]bool{}}
}

// do sends a request (body marshalled to JSON unless it is []byte) with the
// bearer credential, validates the exchange, and decodes a 2xx JSON answer
// into out.
func (c *contract) do(method, path, bearer string, body, out any) *servertest.Response {
	c.tb.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case []byte:
		raw = b
	default:
		raw, _ = json.Marshal(b)
	}
	req, _ := http.NewRequest(method, c.node.URL+path, bytes.NewReader(raw))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res := servertest.Send(c.tb, req, out)
	c.validate(req, raw, res)
	return res
}

// raw is do for a body that is not JSON, sent with contentType.
func (c *contract) raw(method, path, bearer, contentType string, body []byte, out any) *servertest.Response {
	c.tb.Helper()
	req, _ := http.NewRequest(method, c.node.URL+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+bearer)
	res := servertest.Send(c.tb, req, out)
	c.validate(req, body, res)
	return res
}

var noAuth = &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}

func (c *contract) validate(req *http.Request, body []byte, res *servertest.Response) {
	c.tb.Helper()
	probe := req.Clone(context.Background())
	probe.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := c.router.FindRoute(probe)
	if err != nil {
		c.tb.Fatalf("%s %s: no operation in the document: %v", req.Method, req.URL.Path, err)
	}
	in := &openapi3filter.RequestValidationInput{Request: probe, PathParams: params, Route: route, Options: noAuth}
	// Requests meant to be bad are not held to the document; their
	// answers are.
	if res.StatusCode < 400 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			c.tb.Errorf("%s %s: the request does not fit the document: %v", req.Method, req.URL.Path, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: res.StatusCode, Header: res.Header,
		Options: &openapi3filter.Options{IncludeResponseStatus: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
	}
	out.SetBodyBytes(res.Body)
	if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
		c.tb.Errorf("%s %s → %d: the response does not fit the document: %v\n%s", req.Method, req.URL.Path, res.StatusCode, err, res.Body)
	}
	c.mu.Lock()
	c.seen[route.Method+" "+route.Path] = true
	c.mu.Unlock()
}

// TestOpenAPIResponses drives every documented operation against a real
// node and validates requests and answers (successes and errors) against
// the document's schemas. Operations that stream (text/event-stream) are
// checked for their status and content type only.
func TestOpenAPIResponses(t *testing.T) {
	// Webhooks go to a receiver that refuses them, with no retries, so that
	// the failed list has something to show and retry.
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) }))
	defer refuse.Close()
	n := servertest.Start(t, func(c *config.Config) {
		c.WebhookURL, c.WebhookSecret = refuse.URL, "whsec_"+base64.StdEncoding.EncodeToString(make([]byte, 24))
		c.WebhookMaxAge, c.WebhookRetryDelays = time.Millisecond, []time.Duration{time.Hour}
	})
	c := newContract(t, n)
	key := servertest.APIKey

	var client, pro struct {
		User  struct{ ID string } `json:"user"`
		Token string              `json:"token"`
	}
	c.do("POST", "/api/auth/register", "", map[string]any{"username": unique("oa_client"), "password": "password123", "role": "client"}, &client)
	proName := unique("oa_pro")
	c.do("POST", "/api/auth/register", "", map[string]any{"username": proName, "password": "password123", "role": "professional", "display_name": "Pro"}, &pro)
	c.do("POST", "/api/auth/register", "", map[string]any{"username": proName, "password": "password123", "role": "client"}, nil) // 409
	c.do("POST", "/api/auth/register", "", map[string]any{"username": "x", "password": "password123", "role": "client"}, nil)     // 400
	c.do("POST", "/api/auth/login", "", map[string]any{"username": proName, "password": "password123"}, &pro)
	c.do("POST", "/api/auth/login", "", map[string]any{"username": proName, "password": "wrong-password"}, nil) // 401
	for range 7 {                                                                                               // 401s, then 429 with Retry-After: the username's failures are slowed down
		c.do("POST", "/api/auth/login", "", map[string]any{"username": "oa_guessed", "password": "wrong-password"}, nil)
	}
	c.do("POST", "/api/auth/activity", client.Token, nil, nil)
	c.do("GET", "/api/me", client.Token, nil, nil)
	c.do("GET", "/api/me", "", nil, nil) // 401
	c.do("GET", "/api/users?role=professional", client.Token, nil, nil)
	c.do("GET", "/api/users?role=nobody", client.Token, nil, nil) // 400
	c.do("GET", "/api/users/"+pro.User.ID, client.Token, nil, nil)
	c.do("GET", "/api/users/u_nobody", client.Token, nil, nil) // 404

	var conv struct{ ID string }
	c.do("POST", "/api/conversations", client.Token, map[string]any{"professional_id": pro.User.ID, "subject": "contract",
		"message": map[string]any{"body": "hello", "client_id": "oa-1"}}, &conv)
	c.do("POST", "/api/conversations", client.Token, map[string]any{"professional_id": pro.User.ID,
		"message": map[string]any{"body": "hello", "client_id": "oa-1"}}, nil) // 200 retry
	c.do("POST", "/api/conversations", pro.Token, map[string]any{"professional_id": pro.User.ID, "message": map[string]any{"body": "x"}}, nil)   // 403
	c.do("POST", "/api/conversations", client.Token, map[string]any{"professional_id": "u_nobody", "message": map[string]any{"body": "x"}}, nil) // 404
	c.do("GET", "/api/conversations", pro.Token, nil, nil)
	c.do("GET", "/api/conversations/"+conv.ID, pro.Token, nil, nil)
	c.do("GET", "/api/conversations/conv_nobody", pro.Token, nil, nil) // 404
	var msg struct{ ID string }
	c.do("POST", "/api/conversations/"+conv.ID+"/messages", pro.Token, map[string]any{"body": "hi", "client_id": "oa-2"}, &msg)
	c.do("POST", "/api/conversations/"+conv.ID+"/messages", client.Token, map[string]any{"body": "quoting", "reply_to_id": msg.ID}, nil)
	c.do("POST", "/api/conversations/"+conv.ID+"/messages", pro.Token, map[string]any{"body": "hi", "client_id": "oa-2"}, nil) // 200
	c.do("POST", "/api/conversations/"+conv.ID+"/messages", pro.Token, map[string]any{"body": "  "}, nil)                      // 400
	c.do("POST", "/api/conversations/"+conv.ID+"/messages", pro.Token, []byte("{"), nil)                                       // 400
	c.do("GET", "/api/conversations/"+conv.ID+"/messages?limit=2", client.Token, nil, nil)
	c.do("GET", "/api/conversations/"+conv.ID+"/messages?after_seq=1", client.Token, nil, nil)
	c.do("POST", "/api/conversations/"+conv.ID+"/read", client.Token, map[string]any{"up_to_seq": 2}, nil)
	c.do("POST", "/api/conversations/"+conv.ID+"/typing", client.Token, map[string]any{"state": "start"}, nil)
	c.do("PATCH", "/api/messages/"+msg.ID, pro.Token, map[string]any{"body": "hi, edited"}, nil)
	c.do("PATCH", "/api/messages/"+msg.ID, client.Token, map[string]any{"body": "not mine"}, nil) // 403
	c.do("DELETE", "/api/messages/"+msg.ID, pro.Token, nil, nil)
	c.do("PATCH", "/api/messages/"+msg.ID, pro.Token, map[string]any{"body": "deleted"}, nil) // 409

	// Files, search, profile, Web Push.
	var att struct{ ID string }
	c.raw("POST", "/api/conversations/"+conv.ID+"/attachments?name=notes.txt", client.Token, "application/octet-stream", []byte("notes"), &att)
	c.raw("POST", "/api/conversations/"+conv.ID+"/attachments?name=a%2Fb", client.Token, "application/octet-stream", []byte("x"), nil) // 400
	c.raw("POST", "/api/conversations/conv_nobody/attachments?name=x", client.Token, "application/octet-stream", []byte("x"), nil)     // 404
	c.do("POST", "/api/conversations/"+conv.ID+"/messages", client.Token, map[string]any{"body": "", "attachment_ids": []string{att.ID}}, nil)
	c.do("GET", "/api/attachments/"+att.ID, pro.Token, nil, nil)
	c.do("GET", "/api/attachments/att_nobody", pro.Token, nil, nil) // 404
	c.do("GET", "/api/search?q=hello&limit=5", client.Token, nil, nil)
	c.do("GET", "/api/search?q=%22", client.Token, nil, nil)                               // 400
	c.do("GET", "/api/search?q=hello&conversation_id=conv_nobody", client.Token, nil, nil) // 404
	c.do("PATCH", "/api/me", pro.Token, map[string]any{"display_name": "Dr. Pro", "bio": "GP."}, nil)
	c.do("PATCH", "/api/me", pro.Token, map[string]any{"bio": strings.Repeat("x", 281)}, nil) // 400
	browserKey, _ := ecdh.P256().GenerateKey(rand.Reader)
	sub := map[string]any{"endpoint": "https://fcm.googleapis.com/fcm/send/contract", "keys": map[string]any{
		"p256dh": base64.RawURLEncoding.EncodeToString(browserKey.PublicKey().Bytes()), "auth": base64.RawURLEncoding.EncodeToString(make([]byte, 16))}}
	c.do("POST", "/api/push/subscription", pro.Token, sub, nil)
	c.do("POST", "/api/push/subscription", pro.Token, sub, nil)                                                                       // 200
	c.do("POST", "/api/push/subscription", pro.Token, map[string]any{"endpoint": "https://evil.example/x", "keys": sub["keys"]}, nil) // 400
	c.do("GET", "/api/push/subscription", pro.Token, nil, nil)
	c.do("DELETE", "/api/push/subscription", pro.Token, nil, nil)
	c.do("GET", "/api/push/subscription", pro.Token, nil, nil) // 404

	var call struct{ ID string }
	c.do("POST", "/api/conversations/"+conv.ID+"/calls", client.Token, map[string]any{"media": "audio"}, &call)
	c.do("POST", "/api/conversations/"+conv.ID+"/calls", client.Token, map[string]any{"media": "audio"}, nil) // 409
	c.do("GET", "/api/calls/"+call.ID, pro.Token, nil, nil)
	c.do("POST", "/api/calls/"+call.ID+"/signal", client.Token, map[string]any{"payload": map[string]any{"sdp": "v=0"}}, nil)
	c.do("POST", "/api/calls/"+call.ID+"/accept", pro.Token, nil, nil)
	c.do("POST", "/api/calls/"+call.ID+"/decline", pro.Token, nil, nil) // 409: no longer ringing
	c.do("POST", "/api/calls/"+call.ID+"/end", client.Token, nil, nil)
	var call2 struct{ ID string }
	c.do("POST", "/api/conversations/"+conv.ID+"/calls", pro.Token, map[string]any{"media": "video"}, &call2)
	c.do("POST", "/api/calls/"+call2.ID+"/decline", client.Token, nil, nil)

	c.do("GET", "/api/events/poll?after=0&wait=0", client.Token, nil, nil)
	c.do("GET", "/api/events/poll?after=-1", client.Token, nil, nil) // 400
	c.do("POST", "/api/publish", key, map[string]any{"user_ids": []string{client.User.ID}, "type": "app.contract", "data": map[string]any{"a": 1}}, nil)
	c.do("POST", "/api/publish", key, map[string]any{"user_ids": []string{"u_nobody"}, "type": "app.contract"}, nil)       // 404
	c.do("POST", "/api/publish", client.Token, map[string]any{"user_ids": []string{client.User.ID}, "type": "app.x"}, nil) // 401

	// The server API.
	ext := "contract|" + unique("ext")
	extPath := "/api/server/users/" + url.PathEscape(ext)
	c.do("PUT", extPath, key, map[string]any{"display_name": "Dr. Contract", "role": "professional"}, nil)
	c.do("PUT", extPath, key, map[string]any{"display_name": "Dr. Contract Jr.", "role": "professional"}, nil)
	c.do("PUT", extPath, key, map[string]any{"role": "admin"}, nil)                 // 400
	c.do("PUT", extPath, client.Token, map[string]any{"role": "professional"}, nil) // 401
	c.do("GET", extPath, key, nil, nil)
	c.do("GET", "/api/server/users/nobody-"+unique("x"), key, nil, nil) // 404
	var minted struct{ Token string }
	c.do("POST", "/api/server/tokens", key, map[string]any{"external_id": ext, "ttl_seconds": 600}, &minted)
	c.do("POST", "/api/server/tokens", key, map[string]any{"external_id": "nobody-" + unique("x")}, nil) // 404
	c.do("POST", "/api/server/tokens", key, map[string]any{}, nil)                                       // 400
	var conv2 struct{ ID string }
	c.do("POST", "/api/conversations", client.Token, map[string]any{"professional_external_id": ext, "message": map[string]any{"body": "by external id"}}, &conv2)
	c.do("POST", "/api/server/conversations/"+conv2.ID+"/messages", key, map[string]any{"body": "Your appointment is confirmed.", "client_id": "sys-1"}, nil)
	c.do("POST", "/api/server/conversations/"+conv2.ID+"/messages", key, map[string]any{"body": "Your appointment is confirmed.", "client_id": "sys-1"}, nil) // 200
	c.do("POST", "/api/server/conversations/conv_nobody/messages", key, map[string]any{"body": "x"}, nil)                                                     // 404
	c.do("GET", "/api/conversations/"+conv2.ID, minted.Token, nil, nil)
	c.do("POST", extPath+"/logout", key, nil, nil)
	c.do("POST", "/api/server/users/nobody-"+unique("x")+"/logout", key, nil, nil) // 404
	c.do("DELETE", extPath, key, nil, nil)
	c.do("DELETE", extPath, key, nil, nil) // 404 now
	c.do("GET", "/api/conversations/"+conv2.ID, client.Token, nil, nil)

	// Failed webhooks: the conversation's, refused by the receiver.
	var failed struct {
		Webhooks []struct{ ID string } `json:"webhooks"`
	}
	for deadline := time.Now().Add(10 * time.Second); len(failed.Webhooks) == 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		n.Do(t, "GET", "/api/server/webhooks/failed?limit=1", key, nil, &failed)
	}
	if len(failed.Webhooks) == 0 {
		t.Fatal("no webhook failed")
	}
	c.do("GET", "/api/server/webhooks/failed", key, nil, nil)
	c.do("GET", "/api/server/webhooks/failed?limit=0", key, nil, nil)  // 400
	c.do("GET", "/api/server/webhooks/failed", client.Token, nil, nil) // 401
	c.do("POST", "/api/server/webhooks/"+failed.Webhooks[0].ID+"/retry", key, nil, nil)
	c.do("POST", "/api/server/webhooks/wh_nobody/retry", key, nil, nil)          // 404
	c.do("POST", "/api/server/webhooks/wh_nobody/retry", client.Token, nil, nil) // 401

	c.do("POST", "/api/auth/logout", client.Token, nil, nil)
	c.do("POST", "/api/auth/logout", client.Token, nil, nil) // 401

	c.do("GET", "/healthz", "", nil, nil)
	c.do("GET", "/readyz", "", nil, nil)
	c.do("GET", "/metrics", "", nil, nil)
	c.do("GET", "/api/config", "", nil, nil)
	c.do("GET", "/api/openapi.json", "", nil, nil)

	// Streams never end: their status and type are what can be checked.
	for _, path := range []string{"/api/events?token=" + url.QueryEscape(pro.Token), "/api/diag/stream"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", n.URL+path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
			t.Errorf("GET %s: %d %s", path, res.StatusCode, res.Header.Get("Content-Type"))
		}
		res.Body.Close()
		cancel()
		c.seen["GET "+strings.SplitN(path, "?", 2)[0]] = true
	}

	for _, op := range documented(c.doc) {
		if !c.seen[op] {
			t.Errorf("operation %s got no validated response: add it to this test", op)
		}
	}
}

func unique(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%1e9)
}
