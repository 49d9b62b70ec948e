package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/internal/servertest"
)

// fuzzHandler builds a whole node's handler (store, services, routes and
// middleware) without listening, for fuzzers to drive through httptest.
func fuzzHandler(f *testing.F) http.Handler {
	f.Helper()
	srv, err := server.New(context.Background(), servertest.Config(f), slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv.Handler()
}

// serve sends one request through the handler.
func serve(h http.Handler, method, path, token string, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// checkAnswer fails on a 5xx, and on a non-2xx answer that is not the
// SPEC's error shape.
func checkAnswer(t *testing.T, body []byte, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("body %q: status %d: %s", body, rec.Code, rec.Body.Bytes())
	}
	if rec.Code/100 != 2 {
		checkErrorShape(t, rec.Header(), rec.Body.Bytes())
	}
}

// FuzzRegisterBody posts arbitrary bodies to the real register handler. It
// must never answer 5xx, must answer the error shape whenever it refuses,
// and may only create accounts that follow SPEC §2's rules.
func FuzzRegisterBody(f *testing.F) {
	h := fuzzHandler(f)
	for _, s := range []string{
		`{"username":"fuzz_seed","password":"password123","role":"client"}`,
		`{"username":"fuzz.pro","password":"password123","role":"professional","display_name":"Dr. F"}`,
		`{"username":"fuzz_seed","password":"password123","role":"client"}`, // taken
		`{"username":5}`, `{"username":"ab","password":"x","role":"client"}`, `{"role":"admin"}`,
		`{"username":"UPPER","password":"password123","role":"client"}`, `{"username":"ok_name","password":"pässwörd","role":"client"}`,
		`{"username":"x\u0000y","password":"password123","role":"client"}`, `[]`, `null`, `{`, ``, "{\"username\":\"\xff\"}",
		`{"username":"long_pw","password":"` + strings.Repeat("p", 80) + `","role":"client"}`,
		`{"username":"dn_long","password":"password123","role":"client","display_name":"` + strings.Repeat("é", 70) + `"}`,
	} {
		f.Add([]byte(s))
	}
	usernameRE := regexp.MustCompile(`^[a-z0-9_.-]{3,32}$`)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := serve(h, "POST", "/api/auth/register", "", body)
		checkAnswer(t, body, rec)
		if rec.Code != http.StatusCreated {
			return
		}
		var in struct{ Username, Password, Role string }
		if err := json.Unmarshal(body, &in); err != nil {
			t.Fatalf("register accepted a body that does not decode: %q", body)
		}
		var out struct {
			User struct {
				ID, Username, Role string
			}
			Token string
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.User.ID == "" || out.Token == "" {
			t.Fatalf("register answered %s", rec.Body.Bytes())
		}
		if !usernameRE.MatchString(out.User.Username) || out.User.Username != in.Username {
			t.Fatalf("register created username %q from %q", out.User.Username, body)
		}
		if utf8.RuneCountInString(in.Password) < 8 || (in.Role != "client" && in.Role != "professional") || out.User.Role != in.Role {
			t.Fatalf("register accepted password %q / role %q", in.Password, in.Role)
		}
	})
}

// FuzzPublishBody posts arbitrary bodies to the real publish handler with a
// valid API key. It must never answer 5xx, must answer the error shape
// whenever it refuses, and a 202 must give every named user an id.
func FuzzPublishBody(f *testing.F) {
	h := fuzzHandler(f)
	rec := serve(h, "POST", "/api/auth/register", "", []byte(`{"username":"target","password":"password123","role":"client"}`))
	var reg struct {
		User  struct{ ID string }
		Token string
	}
	if rec.Code != http.StatusCreated || json.Unmarshal(rec.Body.Bytes(), &reg) != nil {
		f.Fatalf("register: %d %s", rec.Code, rec.Body.Bytes())
	}
	id, token := reg.User.ID, reg.Token
	for _, s := range []string{
		`{"user_ids":["` + id + `"],"type":"app.x","data":{"a":1}}`,
		`{"user_ids":["` + id + `","` + id + `"],"type":"app.dup","data":null}`,
		`{"user_ids":["` + id + `"],"type":"app.x","data":"str"}`,
		`{"user_ids":["` + id + `"],"type":"app.x","data":[1,{"b":"\u2028"}]}`,
		`{"user_ids":["u_unknown"],"type":"app.x"}`, `{"user_ids":[],"type":"app.x"}`,
		`{"user_ids":["` + id + `"],"type":"message.created"}`, `{"user_ids":"` + id + `","type":"app.x"}`,
		`{"user_ids":[5],"type":"app.x"}`, `{"user_ids":["` + id + `"],"type":"app.x","data":{"a":}}`,
		`{"user_ids":["` + id + `"],"type":"app.x","data":1e999}`, `{}`, `[]`, ``, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := serve(h, "POST", "/api/publish", servertest.APIKey, body)
		checkAnswer(t, body, rec)
		if rec.Code != http.StatusAccepted {
			return
		}
		var in struct {
			UserIDs []string `json:"user_ids"`
		}
		var out struct{ IDs map[string]int64 }
		if json.Unmarshal(body, &in) != nil || json.Unmarshal(rec.Body.Bytes(), &out) != nil {
			t.Fatalf("publish %q answered %s", body, rec.Body.Bytes())
		}
		for _, u := range in.UserIDs {
			if out.IDs[u] < 1 {
				t.Fatalf("publish %q gave user %q no id: %s", body, u, rec.Body.Bytes())
			}
		}
		// What was stored reads back as one-line JSON that SSE can carry.
		if _, named := out.IDs[id]; !named {
			return
		}
		rec = serve(h, "GET", fmt.Sprintf("/api/events/poll?wait=0&after=%d", out.IDs[id]-1), token, nil)
		var got struct {
			Events []struct {
				ID   int64
				Data json.RawMessage
			}
		}
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &got) != nil || len(got.Events) == 0 || got.Events[0].ID != out.IDs[id] {
			t.Fatalf("reading back event %d: %d %s", out.IDs[id], rec.Code, rec.Body.Bytes())
		}
		if d := got.Events[0].Data; !json.Valid(d) || bytes.ContainsAny(d, "\r\n") {
			t.Fatalf("publish %q stored data %q", body, d)
		}
	})
}
