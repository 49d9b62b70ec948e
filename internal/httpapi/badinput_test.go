package httpapi_test

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/servertest"
)

// bodyCase is one malformed request body and the answer it must get.
type bodyCase struct {
	name        string
	contentType string // "-" sends no Content-Type
	body        any    // string, []byte, or io.Reader (sent chunked)
	status      int
	codes       []string // any of these
	field       string   // for invalid_request, the field that must be named
}

// malformedBodies are the ways any JSON body can be wrong, for an endpoint
// whose body limit is limit.
func malformedBodies(limit int64) []bodyCase {
	big := `{"x":"` + strings.Repeat("a", int(limit)) + `"}`
	return []bodyCase{
		{name: "truncated JSON", body: `{"username":`, status: 400, codes: []string{"invalid_json"}},
		{name: "not JSON", body: `hello`, status: 400, codes: []string{"invalid_json"}},
		{name: "empty body", body: ``, status: 400, codes: []string{"invalid_json"}},
		{name: "trailing garbage", body: `{"username":"abc"} {}`, status: 400, codes: []string{"invalid_json"}},
		{name: "array", body: `[1,2]`, status: 400, codes: []string{"invalid_json", "invalid_request"}},
		{name: "string", body: `"x"`, status: 400, codes: []string{"invalid_json", "invalid_request"}},
		{name: "invalid UTF-8", body: "{\"username\":\"\xff\xfe\xfd\",\"password\":\"pass\xc3word1\"}", status: 400, codes: []string{"invalid_json", "invalid_request"}},
		{name: "invalid UTF-8 outside strings", body: "{\"a\":1}\xff", status: 400, codes: []string{"invalid_json", "invalid_request"}},
		{name: "no Content-Type", contentType: "-", body: `{}`, status: 415, codes: []string{"unsupported_media_type"}},
		{name: "text/plain", contentType: "text/plain", body: `{}`, status: 415, codes: []string{"unsupported_media_type"}},
		{name: "form post", contentType: "application/x-www-form-urlencoded", body: `username=a&password=b`, status: 415, codes: []string{"unsupported_media_type"}},
		{name: "multipart", contentType: "multipart/form-data; boundary=x", body: "--x--\r\n", status: 415, codes: []string{"unsupported_media_type"}},
		{name: "bad media type", contentType: "application/json; charset", body: `{}`, status: 415, codes: []string{"unsupported_media_type"}},
		{name: "json suffix type", contentType: "application/jsonp", body: `{}`, status: 415, codes: []string{"unsupported_media_type"}},
		{name: "oversize with Content-Length", body: big, status: 413, codes: []string{"too_large"}},
		{name: "oversize chunked", body: struct{ io.Reader }{strings.NewReader(big)}, status: 413, codes: []string{"too_large"}},
	}
}

// run sends c to path with the extra headers and checks the answer.
func (c bodyCase) run(t *testing.T, n *servertest.Node, path string, header http.Header) {
	t.Helper()
	req := newRequest(t, n, "POST", path, c.body)
	switch c.contentType {
	case "":
		req.Header.Set("Content-Type", "application/json")
	case "-":
	default:
		req.Header.Set("Content-Type", c.contentType)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res := send(t, req)
	if res.StatusCode >= 500 {
		t.Fatalf("%s: status %d: %s", c.name, res.StatusCode, res.Body)
	}
	code := res.ErrorCode()
	found := false
	for _, want := range c.codes {
		found = found || code == want
	}
	if res.StatusCode != c.status || !found {
		t.Fatalf("%s: status %d %q, want %d %v; body %s", c.name, res.StatusCode, code, c.status, c.codes, res.Body)
	}
	checkErrorShape(t, res.Header, res.Body)
	if c.field != "" {
		wantField(t, res, c.field)
	}
}

// TestBadBodies sends every kind of malformed body to each endpoint of
// issue 2 that takes one: always the SPEC's error shape with the right
// status, never a 5xx.
func TestBadBodies(t *testing.T) {
	n := servertest.Start(t)
	u := n.Register(t, "bodies", parley.RoleClient)
	apiKey := http.Header{"Authorization": {"Bearer " + servertest.APIKey}}

	endpoints := []struct {
		path   string
		header http.Header
		limit  int64
		types  []bodyCase // wrong JSON types, with the field to name
	}{
		{"/api/auth/register", nil, n.Config.BodyLimit, []bodyCase{
			{body: `{"username": 5, "password": "password123", "role": "client"}`, field: "username"},
			{body: `{"username": "typed", "password": ["password123"], "role": "client"}`, field: "password"},
			{body: `{"username": "typed", "password": "password123", "role": true}`, field: "role"},
			{body: `{"username": "typed", "password": "password123", "role": "client", "display_name": {}}`, field: "display_name"},
			// encoding/json would take it as U+FFFD: text not kept as sent.
			{body: `{"username": "typed", "password": "password123", "role": "client", "display_name": "a\ud83d"}`, status: 400, codes: []string{"invalid_json"}},
		}},
		{"/api/auth/login", nil, n.Config.BodyLimit, []bodyCase{
			{body: `{"username": 5, "password": "password123"}`, field: "username"},
			{body: `{"username": "x", "password": null, "extra": 1}`, status: 401, codes: []string{"unauthorized"}},
			{body: `{"username": "x", "password": 12345678}`, field: "password"},
			{body: `{"username": "x\udc00", "password": "password123"}`, status: 400, codes: []string{"invalid_json"}},
		}},
		{"/api/publish", apiKey, n.Config.PublishBodyLimit, []bodyCase{
			{body: `{"user_ids": "` + u.ID + `", "type": "app.x"}`, field: "user_ids"},
			{body: `{"user_ids": [1, 2], "type": "app.x"}`, field: "user_ids"},
			{body: `{"user_ids": ["` + u.ID + `"], "type": 5}`, field: "type"},
			{body: `{"user_ids": {"a": 1}, "type": "app.x"}`, field: "user_ids"},
		}},
	}
	for _, ep := range endpoints {
		t.Run(strings.TrimPrefix(ep.path, "/api/"), func(t *testing.T) {
			for _, c := range malformedBodies(ep.limit) {
				c.run(t, n, ep.path, ep.header)
			}
			for _, c := range ep.types {
				c.name = "wrong type: " + c.body.(string)
				if c.status == 0 {
					c.status, c.codes = 400, []string{"invalid_request"}
				}
				c.run(t, n, ep.path, ep.header)
			}
		})
	}
	// The limit itself: a body of exactly the limit is read, one byte more
	// is refused, whether its length is announced or not.
	for _, ep := range endpoints {
		for _, size := range []int64{ep.limit, ep.limit + 1} {
			body := `{"pad":"` + strings.Repeat(" ", int(size)-len(`{"pad":""}`)) + `"}`
			for _, chunked := range []bool{false, true} {
				var b any = body
				if chunked {
					b = struct{ io.Reader }{strings.NewReader(body)}
				}
				req := newRequest(t, n, "POST", ep.path, b)
				req.Header.Set("Content-Type", "application/json")
				for k, v := range ep.header {
					req.Header[k] = v
				}
				res := send(t, req)
				if tooLarge := res.StatusCode == http.StatusRequestEntityTooLarge; tooLarge != (size > ep.limit) || res.StatusCode >= 500 {
					t.Fatalf("%s with %d bytes (limit %d, chunked %v): status %d: %s", ep.path, size, ep.limit, chunked, res.StatusCode, res.Body)
				}
			}
		}
	}

	// Nothing was written to the user's log by all that.
	if res := poll(t, n, u.Token, 0, 0); res.LastID != 0 {
		t.Fatalf("bad publishes wrote events: last_id %d", res.LastID)
	}
}

// TestBodyLimitNotReadWhole: a chunked body far over the limit is refused
// with 413 after the server has read about the limit, not all of it.
func TestBodyLimitNotReadWhole(t *testing.T) {
	n := servertest.Start(t)
	const huge = 64 << 20
	var sent atomic.Int64
	body := &countingReader{r: io.MultiReader(strings.NewReader(`{"username":"`), endless('a')), n: &sent, max: huge}
	req := newRequest(t, n, "POST", "/api/auth/register", io.Reader(body))
	req.Header.Set("Content-Type", "application/json")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("oversize upload: %v (after %d bytes)", err, sent.Load())
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d: %s", res.StatusCode, b)
	}
	checkErrorShape(t, res.Header, b)
	if got := sent.Load(); got >= huge/2 {
		t.Fatalf("client had sent %d bytes when the 413 came; the server read far past the limit", got)
	}
}

type countingReader struct {
	r   io.Reader
	n   *atomic.Int64
	max int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.n.Load() >= c.max {
		return 0, io.EOF
	}
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

type endless byte

func (e endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(e)
	}
	return len(p), nil
}

// TestRegisterRules covers SPEC §2's account rules: 201 with the user,
// token and expiry plus the HttpOnly SameSite=Lax session cookie; 409 for a
// taken username; 400 naming the field for each rule; server-owned fields
// are not taken from the request; a charset parameter is accepted.
func TestRegisterRules(t *testing.T) {
	n := servertest.Start(t)
	reg := func(body map[string]any, ct string) *servertest.Response {
		t.Helper()
		b, _ := json.Marshal(body)
		req := newRequest(t, n, "POST", "/api/auth/register", b)
		req.Header.Set("Content-Type", ct)
		return send(t, req)
	}
	name := fmt.Sprintf("rules_%d", time.Now().UnixNano()%1e9)
	res := reg(map[string]any{"username": name, "password": "12345678", "role": "professional", "display_name": " Dr. Who ", "id": "u_mine", "online": true}, "application/json; charset=utf-8")
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("register: status %d: %s", res.StatusCode, res.Body)
	}
	var g struct {
		User struct {
			ID, Username, DisplayName, Role string
			Online                          bool
		}
		Token     string
		ExpiresAt string `json:"expires_at"`
	}
	if err := json.Unmarshal(res.Body, &g); err != nil {
		t.Fatal(err)
	}
	if g.User.ID == "" || g.User.ID == "u_mine" || g.User.Username != name || g.User.Role != "professional" || g.Token == "" {
		t.Fatalf("register answered %s", res.Body)
	}
	if _, err := time.Parse(time.RFC3339, g.ExpiresAt); err != nil {
		t.Fatalf("expires_at %q: %v", g.ExpiresAt, err)
	}
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "parley_session" {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != g.Token || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie %+v, want HttpOnly SameSite=Lax with the token", cookie)
	}

	res = reg(map[string]any{"username": name, "password": "another-password", "role": "client"}, "application/json")
	wantError(t, res, http.StatusConflict, "conflict")

	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"username": "ab", "password": "12345678", "role": "client"}, "username"},
		{map[string]any{"username": strings.Repeat("a", 33), "password": "12345678", "role": "client"}, "username"},
		{map[string]any{"username": "Alice", "password": "12345678", "role": "client"}, "username"},
		{map[string]any{"username": "al ice", "password": "12345678", "role": "client"}, "username"},
		{map[string]any{"username": "ålice", "password": "12345678", "role": "client"}, "username"},
		{map[string]any{"username": "alice@x", "password": "12345678", "role": "client"}, "username"},
		{map[string]any{"password": "12345678", "role": "client"}, "username"},
		{map[string]any{"username": "short_pw", "password": "1234567", "role": "client"}, "password"},
		{map[string]any{"username": "no_pw", "role": "client"}, "password"},
		{map[string]any{"username": "long_pw", "password": strings.Repeat("p", 73), "role": "client"}, "password"},
		{map[string]any{"username": "no_role", "password": "12345678"}, "role"},
		{map[string]any{"username": "bad_role", "password": "12345678", "role": "admin"}, "role"},
		{map[string]any{"username": "long_dn", "password": "12345678", "role": "client", "display_name": strings.Repeat("d", 65)}, "display_name"},
	} {
		wantField(t, reg(c.body, "application/json"), c.field)
	}
	// The bounds themselves are fine: 3 and 32 characters of the allowed
	// set, a password of exactly 8 (multi-byte) characters.
	for _, body := range []map[string]any{
		{"username": fmt.Sprintf("a%02d", time.Now().UnixNano()%100), "password": "pässwörd", "role": "client"},
		{"username": (name + strings.Repeat("_.-9", 8))[:32], "password": "12345678", "role": "client"},
	} {
		if res := reg(body, "application/json"); res.StatusCode != http.StatusCreated {
			t.Fatalf("register %v: status %d: %s", body, res.StatusCode, res.Body)
		}
	}
}

// TestLoginRules: 200 with a token for the right password; 401 with the
// very same body for an unknown user and for a wrong password.
func TestLoginRules(t *testing.T) {
	n := servertest.Start(t)
	u := n.Register(t, "login", parley.RoleClient)
	login(t, n, u.Username)

	wrong := n.Do(t, "POST", "/api/auth/login", "", map[string]string{"username": u.Username, "password": "password124"}, nil)
	unknown := n.Do(t, "POST", "/api/auth/login", "", map[string]string{"username": "nobody_" + u.Username[:10], "password": "password123"}, nil)
	empty := n.Do(t, "POST", "/api/auth/login", "", map[string]string{}, nil)
	for _, res := range []*servertest.Response{wrong, unknown, empty} {
		wantError(t, res, http.StatusUnauthorized, "unauthorized")
	}
	if string(wrong.Body) != string(unknown.Body) {
		t.Fatalf("login answers tell unknown users apart:\n wrong password: %s\n unknown user:   %s", wrong.Body, unknown.Body)
	}
}

// jwtFor signs a token with an arbitrary header and claims, independently
// of the server's JWT library.
func jwtFor(h func() hash.Hash, secret string, header, claims map[string]any) string {
	enc := base64.RawURLEncoding
	hb, _ := json.Marshal(header)
	cb, _ := json.Marshal(claims)
	in := enc.EncodeToString(hb) + "." + enc.EncodeToString(cb)
	if h == nil {
		return in + "."
	}
	mac := hmac.New(h, []byte(secret))
	mac.Write([]byte(in))
	return in + "." + enc.EncodeToString(mac.Sum(nil))
}

// claimsOf decodes a token's claims without checking it.
func claimsOf(tb testing.TB, token string) map[string]any {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("token %q is not a JWT", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		tb.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestBadTokens: forged, unsigned, expired, wrongly signed and otherwise
// bent tokens get 401 unauthorized on REST, the poll and the stream. A
// token re-signed here with the right secret is accepted, which shows that
// the refusals are for the reasons tested.
func TestBadTokens(t *testing.T) {
	n := servertest.Start(t)
	u := n.Register(t, "tokens", parley.RoleClient)
	v := n.Register(t, "tokens", parley.RoleClient)
	secret := n.Config.JWTSecret
	hs256 := map[string]any{"alg": "HS256", "typ": "JWT"}
	base := claimsOf(t, u.Token)
	with := func(changes map[string]any) map[string]any {
		c := map[string]any{}
		for k, val := range base {
			c[k] = val
		}
		for k, val := range changes {
			if val == nil {
				delete(c, k)
			} else {
				c[k] = val
			}
		}
		return c
	}
	now := time.Now().Unix()

	// The control: same claims, signed here.
	if res := n.Do(t, "GET", "/api/me", jwtFor(sha256.New, secret, hs256, base), nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("token re-signed with the right secret: status %d: %s", res.StatusCode, res.Body)
	}

	parts := strings.Split(u.Token, ".")
	flip := func(s string) string {
		b := []byte(s)
		if b[0] == 'A' {
			b[0] = 'B'
		} else {
			b[0] = 'A'
		}
		return string(b)
	}
	bad := map[string]string{
		"forged signature":     parts[0] + "." + parts[1] + "." + flip(parts[2]),
		"no signature":         parts[0] + "." + parts[1] + ".",
		"alg none":             jwtFor(nil, "", map[string]any{"alg": "none", "typ": "JWT"}, base),
		"alg None":             jwtFor(nil, "", map[string]any{"alg": "None"}, base),
		"HS512 right secret":   jwtFor(sha512.New, secret, map[string]any{"alg": "HS512", "typ": "JWT"}, base),
		"HS256 labelled HS512": jwtFor(sha256.New, secret, map[string]any{"alg": "HS512"}, base),
		"wrong secret":         jwtFor(sha256.New, "not-the-secret-not-the-secret-xx", hs256, base),
		"empty secret":         jwtFor(sha256.New, "", hs256, base),
		"expired":              jwtFor(sha256.New, secret, hs256, with(map[string]any{"iat": now - 7200, "exp": now - 3600})),
		"no exp":               jwtFor(sha256.New, secret, hs256, with(map[string]any{"exp": nil})),
		"issued in the future": jwtFor(sha256.New, secret, hs256, with(map[string]any{"iat": now + 3600})),
		"other user's sub":     jwtFor(sha256.New, secret, hs256, with(map[string]any{"sub": v.ID})),
		"no sub":               jwtFor(sha256.New, secret, hs256, with(map[string]any{"sub": nil})),
		"unknown session":      jwtFor(sha256.New, secret, hs256, with(map[string]any{"sid": "s_nosuchsession"})),
		"no session":           jwtFor(sha256.New, secret, hs256, with(map[string]any{"sid": nil})),
		"sid of wrong type":    jwtFor(sha256.New, secret, hs256, with(map[string]any{"sid": 5})),
		"payload swapped":      parts[0] + "." + strings.Split(v.Token, ".")[1] + "." + parts[2],
		"garbage":              "garbage",
		"three dots":           "a.b.c",
		"two parts":            parts[0] + "." + parts[1],
		"token twice":          u.Token + u.Token,
		"trailing segment":     u.Token + ".x",
		"non-base64 payload":   parts[0] + ".!!!." + parts[2],
		"header is not JSON":   base64.RawURLEncoding.EncodeToString([]byte("{")) + "." + parts[1] + "." + parts[2],
		"huge":                 strings.Repeat("a", 30000),
		"unicode":              "ünïcødé.☃.🙂",
	}
	for name, tok := range bad {
		for _, path := range []string{"/api/me", "/api/events/poll?wait=0", "/api/events"} {
			res := n.Do(t, "GET", path, tok, nil, nil)
			if res.StatusCode != http.StatusUnauthorized {
				t.Fatalf("%s on %s: status %d: %s", name, path, res.StatusCode, res.Body)
			}
			wantError(t, res, http.StatusUnauthorized, "unauthorized")
		}
	}

	// Schemes other than Bearer, and no credentials at all.
	for _, h := range []string{"", "Basic " + base64.StdEncoding.EncodeToString([]byte("a:b")), "Bearer", "Bearer ", "Token " + u.Token, u.Token} {
		req := newRequest(t, n, "GET", "/api/me", nil)
		if h != "" {
			req.Header.Set("Authorization", h)
		}
		wantError(t, send(t, req), http.StatusUnauthorized, "unauthorized")
	}
	// The token query parameter is for the stream only.
	wantError(t, n.Do(t, "GET", "/api/me?token="+url.QueryEscape(u.Token), "", nil, nil), http.StatusUnauthorized, "unauthorized")
	wantError(t, n.Do(t, "GET", "/api/events/poll?wait=0&token="+url.QueryEscape(u.Token), "", nil, nil), http.StatusUnauthorized, "unauthorized")
	s := openSSE(t, n, "/api/events?token="+url.QueryEscape(u.Token), nil)
	wantReady(t, s.next(t), u.ID, 0)
	// The session cookie works where a header would.
	req := newRequest(t, n, "GET", "/api/me", nil)
	req.AddCookie(&http.Cookie{Name: "parley_session", Value: u.Token})
	if res := send(t, req); res.StatusCode != http.StatusOK {
		t.Fatalf("cookie credentials: status %d", res.StatusCode)
	}
}

// TestPublishRules: the publish API wants an API key (a user token is
// refused), app.* types, 1..10,000 user ids, and known users only; a publish
// naming one unknown user writes nothing at all.
func TestPublishRules(t *testing.T) {
	n := servertest.Start(t)
	u := n.Register(t, "pub", parley.RoleClient)
	v := n.Register(t, "pub", parley.RoleClient)
	do := func(key string, body map[string]any) *servertest.Response {
		t.Helper()
		return n.Do(t, "POST", "/api/publish", key, body, nil)
	}
	ok := map[string]any{"user_ids": []string{u.ID}, "type": "app.ok", "data": map[string]int{"a": 1}}

	for _, key := range []string{"", u.Token, "wrong-key", servertest.APIKey + "x", strings.ToUpper(servertest.APIKey)} {
		wantError(t, do(key, ok), http.StatusUnauthorized, "unauthorized")
	}
	req := newRequest(t, n, "POST", "/api/publish", `{"user_ids":["`+u.ID+`"],"type":"app.ok"}`)
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(&http.Cookie{Name: "parley_session", Value: u.Token})
	wantError(t, send(t, req), http.StatusUnauthorized, "unauthorized")

	for _, typ := range []string{"", "message.created", "app.", "app", "App.x", "xapp.x", "app.has space", "app.new\nline", "app.é", "app." + strings.Repeat("x", 101)} {
		wantField(t, do(servertest.APIKey, map[string]any{"user_ids": []string{u.ID}, "type": typ}), "type")
	}
	wantField(t, do(servertest.APIKey, map[string]any{"user_ids": []string{}, "type": "app.x"}), "user_ids")
	wantField(t, do(servertest.APIKey, map[string]any{"type": "app.x"}), "user_ids")
	many := make([]string, 10001)
	for i := range many {
		many[i] = fmt.Sprintf("u_%020d", i)
	}
	wantField(t, do(servertest.APIKey, map[string]any{"user_ids": many, "type": "app.x"}), "user_ids")
	// 10,000 is allowed; these users do not exist.
	wantError(t, do(servertest.APIKey, map[string]any{"user_ids": many[:10000], "type": "app.x"}), http.StatusNotFound, "not_found")

	// One unknown user among known ones: 404 and no event for anyone.
	wantError(t, do(servertest.APIKey, map[string]any{"user_ids": []string{u.ID, "u_nosuchuser", v.ID}, "type": "app.x"}), http.StatusNotFound, "not_found")
	wantError(t, do(servertest.APIKey, map[string]any{"user_ids": []string{""}, "type": "app.x"}), http.StatusNotFound, "not_found")
	for _, who := range []servertest.User{u, v} {
		if res := poll(t, n, who.Token, 0, 0); res.LastID != 0 {
			t.Fatalf("refused publishes wrote events for %s: last_id %d", who.Username, res.LastID)
		}
	}

	// A good publish: 202 with each user's id; duplicates count once;
	// data is kept as sent (compacted) and null becomes {}.
	var out struct {
		IDs map[string]int64 `json:"ids"`
	}
	res := n.Do(t, "POST", "/api/publish", servertest.APIKey, map[string]any{"user_ids": []string{u.ID, v.ID, u.ID}, "type": "app.ok", "data": map[string]any{"b": []int{1, 2}, "s": "<b>é</b>"}}, &out)
	if res.StatusCode != http.StatusAccepted || len(out.IDs) != 2 || out.IDs[u.ID] != 1 || out.IDs[v.ID] != 1 {
		t.Fatalf("publish: status %d: %s", res.StatusCode, res.Body)
	}
	res = n.Do(t, "POST", "/api/publish", servertest.APIKey, []byte("{\"user_ids\":[\""+u.ID+"\"],\"type\":\"app.null\",\"data\":null}"), &out)
	if res.StatusCode != http.StatusAccepted || out.IDs[u.ID] != 2 {
		t.Fatalf("publish null data: status %d: %s", res.StatusCode, res.Body)
	}
	got := poll(t, n, u.Token, 0, 0)
	if len(got.Events) != 2 || got.Events[0].Type != "app.ok" || string(got.Events[0].Data) != `{"b":[1,2],"s":"\u003cb\u003eé\u003c/b\u003e"}` && string(got.Events[0].Data) != `{"b":[1,2],"s":"<b>é</b>"}` {
		t.Fatalf("published events read back as %+v", got.Events)
	}
	if string(got.Events[1].Data) != `{}` {
		t.Fatalf("null data read back as %s", got.Events[1].Data)
	}
	// The app's JSON is passed on as sent, even an escape of half a
	// surrogate pair (valid JSON, which a JavaScript backend writes for a
	// cut emoji); text the server keeps refuses it (TestBadBodies).
	res = n.Do(t, "POST", "/api/publish", servertest.APIKey, []byte(`{"user_ids":["`+u.ID+`"],"type":"app.cut","data":{"s":"a\ud83d"}}`), &out)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("publish with a lone surrogate in data: status %d: %s", res.StatusCode, res.Body)
	}
	if got := poll(t, n, u.Token, 2, 0); len(got.Events) != 1 || string(got.Events[0].Data) != `{"s":"a\ud83d"}` {
		t.Fatalf("data with a lone surrogate read back as %+v", got.Events)
	}
}

// TestBadQueries covers the endpoints without a body: bad query parameters
// get 400 naming the parameter, unknown users 404, missing credentials 401,
// and the public endpoints need none.
func TestBadQueries(t *testing.T) {
	n := servertest.Start(t)
	u := n.Register(t, "query", parley.RoleProfessional)

	for _, c := range []struct{ path, field string }{
		{"/api/users?role=admin", "role"},
		{"/api/users?limit=0", "limit"},
		{"/api/users?limit=abc", "limit"},
		{"/api/users?limit=100000", "limit"},
		{"/api/events/poll?after=-1", "after"},
		{"/api/events/poll?after=abc", "after"},
		{"/api/events/poll?after=1e3", "after"},
		{"/api/events/poll?after=99999999999999999999", "after"},
		{"/api/events/poll?wait=31", "wait"},
		{"/api/events/poll?wait=-1", "wait"},
		{"/api/events/poll?wait=1.5", "wait"},
	} {
		wantField(t, n.Do(t, "GET", c.path, u.Token, nil, nil), c.field)
	}
	wantError(t, n.Do(t, "GET", "/api/users/u_nosuchuser", u.Token, nil, nil), http.StatusNotFound, "not_found")
	wantError(t, n.Do(t, "GET", "/api/users/"+url.PathEscape("../../etc/passwd"), u.Token, nil, nil), http.StatusNotFound, "not_found")

	for _, c := range []struct{ method, path string }{
		{"POST", "/api/auth/logout"}, {"POST", "/api/auth/activity"}, {"GET", "/api/me"},
		{"GET", "/api/users"}, {"GET", "/api/users/" + u.ID}, {"GET", "/api/events"}, {"GET", "/api/events/poll"},
	} {
		wantError(t, n.Do(t, c.method, c.path, "", nil, nil), http.StatusUnauthorized, "unauthorized")
	}

	// And the good answers, for contrast.
	var me struct{ ID, Username, Role string }
	if res := n.Do(t, "GET", "/api/me", u.Token, nil, &me); res.StatusCode != 200 || me.ID != u.ID || me.Role != "professional" {
		t.Fatalf("/api/me: %d %s", res.StatusCode, res.Body)
	}
	var users struct {
		Users []struct{ ID, Role string }
	}
	if res := n.Do(t, "GET", "/api/users?role=professional", u.Token, nil, &users); res.StatusCode != 200 || len(users.Users) != 1 || users.Users[0].ID != u.ID {
		t.Fatalf("/api/users?role=professional: %d %s", res.StatusCode, res.Body)
	}
	if res := n.Do(t, "GET", "/api/users?role=client", u.Token, nil, nil); res.StatusCode != 200 || !strings.Contains(string(res.Body), `"users":[]`) {
		t.Fatalf("/api/users?role=client with none: %d %s", res.StatusCode, res.Body)
	}
	var one map[string]any
	if res := n.Do(t, "GET", "/api/users/"+u.ID, u.Token, nil, &one); res.StatusCode != 200 {
		t.Fatalf("/api/users/{id}: %d %s", res.StatusCode, res.Body)
	}
	for _, k := range []string{"id", "username", "display_name", "role", "online", "last_seen"} {
		if _, ok := one[k]; !ok {
			t.Fatalf("user object lacks %q: %v", k, one)
		}
	}
	if _, ok := one["password_hash"]; ok {
		t.Fatalf("user object leaks the password hash")
	}
}

// TestGarbageLastEventID documents how resume points are read: the
// Last-Event-ID header, else the last_event_id query parameter; a value that
// is not a non-negative decimal integer counts as no resume point at all (a
// browser may send an id it got from some other server), so the stream
// starts live with neither a replay nor a reset.
func TestGarbageLastEventID(t *testing.T) {
	n := servertest.Start(t)
	u := n.Register(t, "garbage", parley.RoleClient)
	for i := 0; i < 3; i++ {
		n.Publish(t, "app.x", nil, u.ID)
	}
	garbage := []string{"abc", "-1", "-0", "+2", "1.5", "0x10", "1e2", "2 3", "1_0", "99999999999999999999", "９", "2abc"}
	var streams []*sseClient
	for _, id := range garbage {
		s := openSSE(t, n, "/api/events", http.Header{"Authorization": {"Bearer " + u.Token}, "Last-Event-ID": {id}})
		wantReady(t, s.next(t), u.ID, 3)
		streams = append(streams, s)
	}
	// The query parameter is the fallback, also behind a garbage header;
	// a valid header wins over it.
	q := openSSE(t, n, "/api/events?last_event_id=1", http.Header{"Authorization": {"Bearer " + u.Token}})
	gq := openSSE(t, n, "/api/events?last_event_id=1", http.Header{"Authorization": {"Bearer " + u.Token}, "Last-Event-ID": {"abc"}})
	hq := openSSE(t, n, "/api/events?last_event_id=1", http.Header{"Authorization": {"Bearer " + u.Token}, "Last-Event-ID": {"2"}})
	gg := openSSE(t, n, "/api/events?last_event_id=x", http.Header{"Authorization": {"Bearer " + u.Token}})
	for _, s := range []*sseClient{q, gq, hq, gg} {
		wantReady(t, s.next(t), u.ID, 3)
	}
	n.Publish(t, "app.live", nil, u.ID)
	for i, s := range append(streams, gg) {
		if e := s.next(t); e.ID != 4 || e.Type != "app.live" {
			t.Errorf("stream with resume point %q got %+v, want live event 4 only", append(garbage, "?last_event_id=x")[i], e)
		}
	}
	for _, c := range []struct {
		s     *sseClient
		first int64
	}{{q, 2}, {gq, 2}, {hq, 3}} {
		for id := c.first; id <= 4; id++ {
			if e := c.s.next(t); e.ID != id {
				t.Fatalf("resumed stream got %+v, want id %d", e, id)
			}
		}
	}
}

// sseClient is a stream opened with arbitrary headers and URL.
type sseClient struct {
	events chan servertest.Event
}

func openSSE(tb testing.TB, n *servertest.Node, path string, header http.Header) *sseClient {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", n.URL+path, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		tb.Fatalf("GET %s: status %d: %s", path, res.StatusCode, b)
	}
	s := &sseClient{events: make(chan servertest.Event, 1024)}
	go func() {
		defer close(s.events)
		_ = servertest.ReadSSE(bufio.NewReader(res.Body), func(e servertest.Event) { s.events <- e })
	}()
	tb.Cleanup(func() { cancel(); res.Body.Close() })
	return s
}

func (s *sseClient) next(tb testing.TB) servertest.Event {
	tb.Helper()
	select {
	case e, ok := <-s.events:
		if !ok {
			tb.Fatalf("stream ended")
		}
		return e
	case <-time.After(5 * time.Second):
		tb.Fatalf("no event within 5s")
	}
	return servertest.Event{}
}
