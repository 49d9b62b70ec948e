package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
)

// recorded is what the fake server saw of one request.
type recorded struct {
	Method, Path, Query, Auth, ContentType string
	Body                                   map[string]any
}

// fakeAPI answers every request with the canned (status, body) for its
// "METHOD /path" and records the request.
type fakeAPI struct {
	mu      sync.Mutex
	seen    []recorded
	answers map[string]struct {
		status int
		body   string
	}
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := recorded{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
		Auth: r.Header.Get("Authorization"), ContentType: r.Header.Get("Content-Type")}
	if b, _ := io.ReadAll(r.Body); len(b) > 0 {
		if err := json.Unmarshal(b, &rec.Body); err != nil {
			rec.Body = map[string]any{"<invalid json>": string(b)}
		}
	}
	f.mu.Lock()
	f.seen = append(f.seen, rec)
	a, ok := f.answers[r.Method+" "+rec.Path]
	f.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":{"code":"not_found","message":"no route"}}`)
		return
	}
	if a.body != "" {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(a.status)
	io.WriteString(w, a.body)
}

func (f *fakeAPI) last(t *testing.T) recorded {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.seen) == 0 {
		t.Fatal("no request reached the server")
	}
	return f.seen[len(f.seen)-1]
}

const (
	userJSON = `{"id":"u1","username":"alice","display_name":"Alice","role":"client","online":true,"last_seen":null}`
	msgJSON  = `{"id":"m1","conversation_id":"c1","seq":3,"sender_id":"u1","body":"hi","client_id":"k1","reply_to":{"id":"m0","sender_id":"u2","preview":"yo"},"created_at":"2025-01-02T03:04:05.678Z","edited_at":null,"deleted":false}`
	convJSON = `{"id":"c1","client":` + userJSON + `,"professional":` + userJSON + `,"subject":"s","created_at":"2025-01-02T03:04:05.678Z","last_message":` + msgJSON + `,"unread_count":2,"last_read_seq":1,"peer_last_read_seq":3,"peer_delivered_seq":3}`
	callJSON = `{"id":"k1","conversation_id":"c1","caller_id":"u1","callee_id":"u2","media":"video","state":"ringing","created_at":"2025-01-02T03:04:05.678Z","answered_at":null,"ended_at":null}`
)

func TestREST(t *testing.T) {
	f := &fakeAPI{answers: map[string]struct {
		status int
		body   string
	}{
		"POST /api/auth/register":             {201, `{"user":` + userJSON + `,"token":"tok-reg","expires_at":"2025-01-02T03:04:05Z"}`},
		"POST /api/auth/login":                {200, `{"user":` + userJSON + `,"token":"tok-login","expires_at":"2025-01-02T03:04:05Z"}`},
		"POST /api/auth/logout":               {204, ""},
		"POST /api/auth/activity":             {204, ""},
		"GET /api/me":                         {200, userJSON},
		"GET /api/users":                      {200, `{"users":[` + userJSON + `]}`},
		"GET /api/users/u%2F1":                {200, userJSON},
		"POST /api/publish":                   {202, `{"ids":{"u1":7,"u2":9}}`},
		"POST /api/conversations":             {201, convJSON},
		"GET /api/conversations":              {200, `{"conversations":[` + convJSON + `]}`},
		"GET /api/conversations/c1":           {200, convJSON},
		"GET /api/conversations/c1/messages":  {200, `{"messages":[` + msgJSON + `],"has_more":true}`},
		"POST /api/conversations/c1/messages": {201, msgJSON},
		"PATCH /api/messages/m1":              {200, msgJSON},
		"DELETE /api/messages/m1":             {200, msgJSON},
		"POST /api/conversations/c1/read":     {204, ""},
		"POST /api/conversations/c1/typing":   {204, ""},
		"POST /api/conversations/c1/calls":    {201, callJSON},
		"POST /api/calls/k1/accept":           {200, callJSON},
		"POST /api/calls/k1/decline":          {200, callJSON},
		"POST /api/calls/k1/end":              {200, callJSON},
		"POST /api/calls/k1/signal":           {202, ""},
		"GET /api/config":                     {200, `{"heartbeat_ms":15000}`},
		"GET /api/events/poll":                {200, `{"events":[{"id":4,"type":"app.x","data":{"a":1},"time":"2025-01-02T03:04:05.678Z"}],"last_id":4}`},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ctx := context.Background()
	c := client.New(srv.URL+"/", client.WithAPIKey("key-1"))

	check := func(method, path, query, auth string, body map[string]any) {
		t.Helper()
		got := f.last(t)
		if got.Method != method || got.Path != path || got.Query != query || got.Auth != auth {
			t.Errorf("request %s %s?%s auth %q, want %s %s?%s auth %q", got.Method, got.Path, got.Query, got.Auth, method, path, query, auth)
		}
		if body != nil && got.ContentType != "application/json" {
			t.Errorf("%s %s: Content-Type %q", method, path, got.ContentType)
		}
		if fmt.Sprint(got.Body) != fmt.Sprint(body) {
			t.Errorf("%s %s: body %v, want %v", method, path, got.Body, body)
		}
	}

	a, err := c.Register(ctx, client.Register{Username: "alice", Password: "password1", Role: client.RoleClient})
	if err != nil || a.Token != "tok-reg" || a.User.DisplayName != "Alice" || c.Token() != "tok-reg" {
		t.Fatalf("Register: %+v, %v, token kept %q", a, err, c.Token())
	}
	check("POST", "/api/auth/register", "", "", map[string]any{"username": "alice", "password": "password1", "role": "client"})

	if _, err := c.Login(ctx, "alice", "password1"); err != nil || c.Token() != "tok-login" {
		t.Fatalf("Login: %v, token %q", err, c.Token())
	}
	check("POST", "/api/auth/login", "", "", map[string]any{"username": "alice", "password": "password1"})
	bearer := "Bearer tok-login"

	if err := c.Activity(ctx); err != nil {
		t.Fatal(err)
	}
	check("POST", "/api/auth/activity", "", bearer, nil)
	if u, err := c.Me(ctx); err != nil || u.ID != "u1" || !u.Online || u.LastSeen != nil {
		t.Fatalf("Me: %+v, %v", u, err)
	}
	check("GET", "/api/me", "", bearer, nil)
	if us, err := c.Users(ctx, "professional"); err != nil || len(us) != 1 {
		t.Fatalf("Users: %+v, %v", us, err)
	}
	check("GET", "/api/users", "role=professional", bearer, nil)
	if _, err := c.User(ctx, "u/1"); err != nil {
		t.Fatalf("User: %v", err)
	}
	check("GET", "/api/users/u%2F1", "", bearer, nil)

	ids, err := c.Publish(ctx, []string{"u1", "u2"}, "app.x", map[string]int{"n": 1})
	if err != nil || ids["u1"] != 7 || ids["u2"] != 9 {
		t.Fatalf("Publish: %v, %v", ids, err)
	}
	check("POST", "/api/publish", "", "Bearer key-1", map[string]any{"user_ids": []any{"u1", "u2"}, "type": "app.x", "data": map[string]any{"n": 1}})

	conv, err := c.CreateConversation(ctx, client.CreateConversation{ProfessionalID: "p1", Subject: "s", Message: client.NewMessage{Body: "hello", ClientID: "k0"}})
	if err != nil || conv.UnreadCount != 2 || conv.LastMessage == nil || conv.LastMessage.ReplyTo.Preview != "yo" || conv.PeerDeliveredSeq != 3 {
		t.Fatalf("CreateConversation: %+v, %v", conv, err)
	}
	check("POST", "/api/conversations", "", bearer, map[string]any{"professional_id": "p1", "subject": "s", "message": map[string]any{"body": "hello", "client_id": "k0"}})
	if cs, err := c.Conversations(ctx); err != nil || len(cs) != 1 || cs[0].Client.Username != "alice" {
		t.Fatalf("Conversations: %+v, %v", cs, err)
	}
	check("GET", "/api/conversations", "", bearer, nil)
	if _, err := c.Conversation(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	check("GET", "/api/conversations/c1", "", bearer, nil)

	page, err := c.Messages(ctx, "c1", client.MessagesQuery{BeforeSeq: 10, Limit: 20})
	if err != nil || !page.HasMore || len(page.Messages) != 1 || page.Messages[0].Seq != 3 ||
		!page.Messages[0].CreatedAt.Equal(time.Date(2025, 1, 2, 3, 4, 5, 678e6, time.UTC)) {
		t.Fatalf("Messages: %+v, %v", page, err)
	}
	check("GET", "/api/conversations/c1/messages", "before_seq=10&limit=20", bearer, nil)
	if _, err := c.Messages(ctx, "c1", client.MessagesQuery{}); err != nil {
		t.Fatal(err)
	}
	check("GET", "/api/conversations/c1/messages", "", bearer, nil)

	if m, err := c.SendMessage(ctx, "c1", client.SendMessage{Body: "hi", ClientID: "k1", ReplyToID: "m0"}); err != nil || m.ClientID != "k1" {
		t.Fatalf("SendMessage: %+v, %v", m, err)
	}
	check("POST", "/api/conversations/c1/messages", "", bearer, map[string]any{"body": "hi", "client_id": "k1", "reply_to_id": "m0"})
	if _, err := c.EditMessage(ctx, "m1", "edited"); err != nil {
		t.Fatal(err)
	}
	check("PATCH", "/api/messages/m1", "", bearer, map[string]any{"body": "edited"})
	if _, err := c.DeleteMessage(ctx, "m1"); err != nil {
		t.Fatal(err)
	}
	check("DELETE", "/api/messages/m1", "", bearer, nil)
	if err := c.MarkRead(ctx, "c1", 3); err != nil {
		t.Fatal(err)
	}
	check("POST", "/api/conversations/c1/read", "", bearer, map[string]any{"up_to_seq": 3})
	if err := c.Typing(ctx, "c1", "start"); err != nil {
		t.Fatal(err)
	}
	check("POST", "/api/conversations/c1/typing", "", bearer, map[string]any{"state": "start"})

	if call, err := c.StartCall(ctx, "c1", client.MediaVideo); err != nil || call.State != client.CallRinging || call.Media != "video" {
		t.Fatalf("StartCall: %+v, %v", call, err)
	}
	check("POST", "/api/conversations/c1/calls", "", bearer, map[string]any{"media": "video"})
	for name, fn := range map[string]func(context.Context, string) (*client.Call, error){
		"accept": c.AcceptCall, "decline": c.DeclineCall, "end": c.EndCall,
	} {
		if _, err := fn(ctx, "k1"); err != nil {
			t.Fatal(name, err)
		}
		check("POST", "/api/calls/k1/"+name, "", bearer, nil)
	}
	if err := c.Signal(ctx, "k1", map[string]string{"sdp": "v=0"}); err != nil {
		t.Fatal(err)
	}
	check("POST", "/api/calls/k1/signal", "", bearer, map[string]any{"payload": map[string]any{"sdp": "v=0"}})

	if cfg, err := c.Config(ctx); err != nil || string(cfg["heartbeat_ms"]) != "15000" {
		t.Fatalf("Config: %v, %v", cfg, err)
	}
	check("GET", "/api/config", "", "", nil)

	pr, err := c.Poll(ctx, 3, 1500*time.Millisecond)
	if err != nil || pr.LastID != 4 || len(pr.Events) != 1 || pr.Events[0].ID != 4 || string(pr.Events[0].Data) != `{"a":1}` {
		t.Fatalf("Poll: %+v, %v", pr, err)
	}
	check("GET", "/api/events/poll", "after=3&wait=2", bearer, nil)

	if err := c.Logout(ctx); err != nil || c.Token() != "" {
		t.Fatalf("Logout: %v, token %q", err, c.Token())
	}
	check("POST", "/api/auth/logout", "", bearer, nil)
}

func TestErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/me":
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusTooManyRequests)
			io.WriteString(w, `{"error":{"code":"rate_limited","message":"slow down"}}`)
		default:
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "<html>bad gateway</html>")
		}
	}))
	defer srv.Close()
	c := client.New(srv.URL, client.WithToken("t"))

	_, err := c.Me(context.Background())
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("got %T %v, want *client.Error", err, err)
	}
	if e.Status != 429 || e.Code != "rate_limited" || e.Message != "slow down" || e.RetryAfter != 3*time.Second {
		t.Errorf("got %+v", e)
	}
	if client.StatusCode(fmt.Errorf("wrapped: %w", err)) != 429 || client.ErrorCode(err) != "rate_limited" {
		t.Error("StatusCode/ErrorCode do not see through wrapping")
	}

	_, err = c.Conversations(context.Background())
	if !errors.As(err, &e) || e.Status != 502 || e.Code != "" || !strings.Contains(e.Message, "bad gateway") {
		t.Errorf("non-JSON error: %+v", err)
	}
}

// sseServer serves /api/events from a script run per connection; it records
// the Last-Event-ID header of each connection.
type sseServer struct {
	mu      sync.Mutex
	resumes []string
	script  func(conn int, w http.ResponseWriter, flush func())
}

func (s *sseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"code":"unauthorized","message":"no"}}`)
		return
	}
	s.mu.Lock()
	s.resumes = append(s.resumes, r.Header.Get("Last-Event-ID"))
	conn := len(s.resumes)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	flush := func() { w.(http.Flusher).Flush() }
	flush()
	s.script(conn, w, flush)
}

func TestStream(t *testing.T) {
	s := &sseServer{script: func(conn int, w http.ResponseWriter, flush func()) {
		io.WriteString(w, "retry: 250\n\nevent: ready\ndata: {\"user_id\":\"u1\",\"last_id\":4,\"server_time\":\"2025-01-02T03:04:05Z\"}\n\n")
		io.WriteString(w, ": ping\n\nid: 5\nevent: app.x\ndata: {\"n\":5}\n\nevent: typing\ndata: {\"state\":\"start\"}\n\n")
		flush()
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()

	c := client.New(srv.URL, client.WithToken("tok"))
	st, err := c.Stream(context.Background(), client.StreamOptions{LastEventID: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want := []client.Event{
		{Type: "ready", Data: json.RawMessage(`{"user_id":"u1","last_id":4,"server_time":"2025-01-02T03:04:05Z"}`)},
		{ID: 5, HasID: true, Type: "app.x", Data: json.RawMessage(`{"n":5}`)},
		{Type: "typing", Data: json.RawMessage(`{"state":"start"}`)},
	}
	for i, w := range want {
		got, err := st.Next()
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		if got.ID != w.ID || got.HasID != w.HasID || got.Type != w.Type || string(got.Data) != string(w.Data) {
			t.Errorf("event %d: got %+v, want %+v", i, got, w)
		}
		if i == 0 {
			var r client.Ready
			if err := got.Decode(&r); err != nil || r.LastID != 4 || r.UserID != "u1" {
				t.Errorf("ready: %+v, %v", r, err)
			}
		}
	}
	if _, err := st.Next(); err != io.EOF {
		t.Errorf("end of stream: %v, want io.EOF", err)
	}
	if st.LastEventID() != 5 || st.Retry() != 250*time.Millisecond {
		t.Errorf("LastEventID %d Retry %v", st.LastEventID(), st.Retry())
	}
	if s.resumes[0] != "4" {
		t.Errorf("Last-Event-ID header %q, want 4", s.resumes[0])
	}
}

func TestStreamRefused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/events" {
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"at capacity"}}`)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<html></html>")
	}))
	defer srv.Close()
	c := client.New(srv.URL, client.WithToken("tok"))
	_, err := c.Stream(context.Background(), client.StreamOptions{})
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 503 || e.Code != "unavailable" || e.RetryAfter != 5*time.Second {
		t.Errorf("got %v, want 503 unavailable with Retry-After 5s", err)
	}
	if _, err := c.Stream(context.Background(), client.StreamOptions{Path: "/not-sse"}); err == nil || !strings.Contains(err.Error(), "text/event-stream") {
		t.Errorf("a non-SSE answer was accepted: %v", err)
	}
}

func TestStreamIdleTimeoutAndClose(t *testing.T) {
	release := make(chan struct{})
	s := &sseServer{script: func(conn int, w http.ResponseWriter, flush func()) {
		io.WriteString(w, "event: ready\ndata: {}\n\n")
		flush()
		<-release
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	defer close(release)
	c := client.New(srv.URL, client.WithToken("tok"))

	st, err := c.Stream(context.Background(), client.StreamOptions{IdleTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := st.Next(); err != nil || ev.Type != "ready" {
		t.Fatalf("%v %v", ev, err)
	}
	start := time.Now()
	if _, err := st.Next(); !errors.Is(err, client.ErrStreamIdle) {
		t.Errorf("got %v, want ErrStreamIdle", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("idle timeout took %v", d)
	}
	st.Close()

	st, err = c.Stream(context.Background(), client.StreamOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st.Next()
	time.AfterFunc(50*time.Millisecond, func() { st.Close() })
	if _, err := st.Next(); !errors.Is(err, client.ErrStreamClosed) {
		t.Errorf("got %v, want ErrStreamClosed", err)
	}
}

func TestSubscriberResumes(t *testing.T) {
	s := &sseServer{script: func(conn int, w http.ResponseWriter, flush func()) {
		switch conn {
		case 1: // starts live at 2, delivers 3 and 4, then drops
			io.WriteString(w, "retry: 10\n\nevent: ready\ndata: {\"last_id\":2}\n\n")
			io.WriteString(w, "id: 3\nevent: app.x\ndata: {}\n\nid: 4\nevent: app.x\ndata: {}\n\n")
		case 2: // replays 4 again (must be dropped), then 5, then a cut mid-event
			io.WriteString(w, "event: ready\ndata: {\"last_id\":5}\n\n")
			io.WriteString(w, "id: 4\nevent: app.x\ndata: {}\n\nid: 5\nevent: app.x\ndata: {}\n\nid: 6\nevent: app.x\n")
		case 3: // the log was rebuilt: reset to 1, then 2 is new
			io.WriteString(w, "event: ready\ndata: {\"last_id\":1}\n\nevent: reset\ndata: {\"reason\":\"history_expired\",\"last_id\":1}\n\n")
			io.WriteString(w, "id: 2\nevent: app.x\ndata: {}\n\nevent: typing\ndata: {}\n\n")
		default:
			io.WriteString(w, "event: ready\ndata: {\"last_id\":2}\n\nid: 3\nevent: app.stop\ndata: {}\n\n")
		}
		flush()
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := client.New(srv.URL, client.WithToken("tok"))

	var got []string
	stop := errors.New("stop")
	var retries int
	sub := &client.Subscriber{
		Client: c,
		Handler: func(ev client.Event) error {
			got = append(got, fmt.Sprintf("%s:%d", ev.Type, ev.ID))
			if ev.Type == "app.stop" {
				return stop
			}
			return nil
		},
		OnError: func(err error, d time.Duration) {
			retries++
			if d > time.Second {
				t.Errorf("backoff %v after %v; the server asked for 10ms", d, err)
			}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sub.Run(ctx); err != stop {
		t.Fatalf("Run returned %v, want the handler's error", err)
	}
	want := "ready:0 app.x:3 app.x:4 ready:0 app.x:5 ready:0 reset:0 app.x:2 typing:0 ready:0 app.stop:3"
	if strings.Join(got, " ") != want {
		t.Errorf("handled\n %s\nwant\n %s", strings.Join(got, " "), want)
	}
	if r := strings.Join(s.resumes, ","); r != ",4,5,2" {
		t.Errorf("Last-Event-ID per connection %q, want \",4,5,2\"", r)
	}
	if retries != 3 || sub.LastEventID() != 3 {
		t.Errorf("retries %d, last id %d", retries, sub.LastEventID())
	}
}

func TestSubscriberStopsOnUnauthorized(t *testing.T) {
	srv := httptest.NewServer(&sseServer{})
	defer srv.Close()
	c := client.New(srv.URL, client.WithToken("revoked"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.Subscribe(ctx, 0, func(client.Event) error { return nil })
	if client.StatusCode(err) != http.StatusUnauthorized {
		t.Errorf("got %v, want the 401", err)
	}
}

func TestSubscriberResumesFromEmptyLog(t *testing.T) {
	// A user whose log is empty when the first stream opens must resume
	// from 0 after a drop, not start live again: an event published in
	// between would otherwise be lost.
	s := &sseServer{script: func(conn int, w http.ResponseWriter, flush func()) {
		io.WriteString(w, "event: ready\ndata: {\"last_id\":0}\n\n")
		if conn > 1 {
			io.WriteString(w, "id: 1\nevent: app.stop\ndata: {}\n\n")
		}
		flush()
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	sub := &client.Subscriber{
		Client:     client.New(srv.URL, client.WithToken("tok")),
		MinBackoff: time.Millisecond,
		Handler: func(ev client.Event) error {
			if ev.Type == "app.stop" {
				return io.EOF
			}
			return nil
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sub.Run(ctx); err != io.EOF {
		t.Fatal(err)
	}
	if r := strings.Join(s.resumes, ","); r != ",0" {
		t.Errorf("Last-Event-ID per connection %q, want \",0\"", r)
	}
}

func TestStreamTokenInQuery(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.URL.RawQuery + " auth=" + r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		io.WriteString(w, "event: ready\ndata: {}\n\n")
	}))
	defer srv.Close()
	c := client.New(srv.URL, client.WithToken("a b"))
	st, err := c.Stream(context.Background(), client.StreamOptions{TokenInQuery: true, Path: "/api/events?last_event_id=3"})
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if got != "last_event_id=3&token=a+b auth=" {
		t.Errorf("request %q: the token belongs in the query only", got)
	}
}
