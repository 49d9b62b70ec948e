package hostile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// opsDo sends method path with body (JSON-encoded unless nil) and the given
// headers, without the servertest client's bearer handling, so that cookie
// and proxy headers are exactly what a hostile client would send.
func opsDo(t *testing.T, n *servertest.Node, method, path string, body any, hdr map[string]string) *servertest.Response {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, n.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return servertest.Send(t, req, nil)
}

// wantError checks status, the SPEC's error shape and its code.
func wantError(t *testing.T, what string, res *servertest.Response, status int, code string) {
	t.Helper()
	if res.StatusCode != status || res.ErrorCode() != code {
		t.Fatalf("%s: %d %s, want %d %s", what, res.StatusCode, res.Body, status, code)
	}
}

func login(t *testing.T, n *servertest.Node, user, pass string, hdr map[string]string) *servertest.Response {
	t.Helper()
	return opsDo(t, n, "POST", "/api/auth/login", map[string]string{"username": user, "password": pass}, hdr)
}

// TestProxyClientAddress: behind a trusted proxy each client has its own
// per-address login budget (one client spending its own does not lock the
// others out), while a client that is not the proxy cannot pick its address
// with X-Forwarded-For or X-Real-IP, nor can it by writing hops to the left
// of what the proxy appends.
func TestProxyClientAddress(t *testing.T) {
	behind := servertest.Start(t, func(c *config.Config) {
		c.RateLimit = 1 // burst 2 per address
		c.TrustedProxies = []string{"127.0.0.0/8", "::1"}
	})
	xff := func(s string) map[string]string { return map[string]string{"X-Forwarded-For": s} }
	for i := 0; ; i++ {
		res := login(t, behind, "nobody", "wrong-password", xff("203.0.113.1"))
		if res.StatusCode == http.StatusTooManyRequests {
			break
		}
		if i > 10 {
			t.Fatalf("client 203.0.113.1 never rate limited")
		}
	}
	// Another client behind the same proxy is not locked out.
	if res := login(t, behind, "nobody", "wrong-password", xff("203.0.113.2")); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("second client behind the proxy: %d %s, want 401", res.StatusCode, res.Body)
	}
	// X-Real-IP counts when there is no X-Forwarded-For.
	if res := login(t, behind, "nobody", "wrong-password", map[string]string{"X-Real-IP": "203.0.113.3"}); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("client by X-Real-IP: %d %s, want 401", res.StatusCode, res.Body)
	}
	// An IPv6 client counts with its /64: another address of the same
	// network has no budget of its own, another network has. (A username
	// each, so that the per-account delay plays no part.)
	for i := 0; ; i++ {
		res := login(t, behind, fmt.Sprint("nobody6-", i), "wrong-password", xff(fmt.Sprintf("2001:db8:1:2::%x", i+1)))
		if res.StatusCode == http.StatusTooManyRequests {
			break
		}
		if i > 10 {
			t.Fatalf("clients of 2001:db8:1:2::/64 never rate limited")
		}
	}
	res := login(t, behind, "nobody6-x", "wrong-password", xff("2001:db8:1:2:ffff:ffff:ffff:ffff"))
	wantError(t, "another address of the same /64", res, http.StatusTooManyRequests, "rate_limited")
	if res := login(t, behind, "nobody6-y", "wrong-password", xff("2001:db8:1:3::1")); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a client of another /64: %d %s, want 401", res.StatusCode, res.Body)
	}
	// The client's own hops to the left do not make it someone else: the
	// rightmost untrusted hop is the client. Its budget refills a login a
	// second, so on a slow machine one may pass now and then; as other
	// clients, each with a budget of its own, all would. (A username each,
	// so that the per-account delay plays no part.)
	for i := 0; login(t, behind, fmt.Sprint("nobody-s", i), "wrong-password", xff("203.0.113.1")).StatusCode != http.StatusTooManyRequests; i++ {
		if i > 10 {
			t.Fatalf("client 203.0.113.1 never rate limited again")
		}
	}
	start, passed := time.Now(), 0
	for i := range 5 {
		res := login(t, behind, fmt.Sprint("spoofer-", i), "wrong-password", xff(fmt.Sprintf("198.51.100.%d, 203.0.113.1", i+1)))
		if res.StatusCode == http.StatusUnauthorized {
			passed++
		} else {
			wantError(t, "spoofed leftmost hop", res, http.StatusTooManyRequests, "rate_limited")
		}
	}
	if refilled := int(time.Since(start).Seconds()) + 1; passed > refilled {
		t.Fatalf("%d of 5 logins with spoofed leftmost hops passed, more than the %d the client's own budget refilled", passed, refilled)
	}

	// Without trusted proxies, forwarding headers are ignored.
	direct := servertest.Start(t, func(c *config.Config) { c.RateLimit = 1 })
	limited := false
	for i := range 8 {
		hdr := map[string]string{"X-Forwarded-For": fmt.Sprintf("198.51.100.%d", i+1), "X-Real-IP": fmt.Sprintf("192.0.2.%d", i+1)}
		if login(t, direct, "nobody", "wrong-password", hdr).StatusCode == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatalf("a direct client escaped the per-address limit by sending X-Forwarded-For")
	}
}

// TestLoginGuessingIsSlow: failed logins for one username, each from a new
// address, soon get 429 with Retry-After in the SPEC's shape, even with the
// right password; once the delay has passed the right password works and
// clears the count.
func TestLoginGuessingIsSlow(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		c.RateLimit = 20
		c.TrustedProxies = []string{"127.0.0.1"}
	})
	u := n.Register(t, "victim", "client")
	var res *servertest.Response
	tries := 0
	for ; tries < 20; tries++ {
		res = login(t, n, u.Username, "guess-"+strconv.Itoa(tries), map[string]string{"X-Forwarded-For": fmt.Sprintf("203.0.113.%d", tries+1)})
		if res.StatusCode != http.StatusUnauthorized {
			break
		}
	}
	wantError(t, "guessing", res, http.StatusTooManyRequests, "rate_limited")
	if tries > 8 {
		t.Fatalf("%d failed logins before any delay", tries)
	}
	ra, err := strconv.Atoi(res.Header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Fatalf("Retry-After %q", res.Header.Get("Retry-After"))
	}
	res = login(t, n, u.Username, "password123", map[string]string{"X-Forwarded-For": "192.0.2.99"})
	wantError(t, "right password while delayed", res, http.StatusTooManyRequests, "rate_limited")
	// A different account is not affected.
	other := n.Register(t, "bystander", "client")
	if res := login(t, n, other.Username, "password123", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("other account: %d %s", res.StatusCode, res.Body)
	}
	time.Sleep(time.Duration(ra) * time.Second)
	if res := login(t, n, u.Username, "password123", nil); res.StatusCode != http.StatusOK {
		t.Fatalf("right password after the delay: %d %s", res.StatusCode, res.Body)
	}
}

// sessionCookie registers a user through the web flow and returns its
// parley_session cookie header value.
func sessionCookie(t *testing.T, n *servertest.Node, prefix string) string {
	t.Helper()
	name := fmt.Sprintf("%s%d", prefix, time.Now().UnixNano()%1e9)
	res := opsDo(t, n, "POST", "/api/auth/register", map[string]string{"username": name, "password": "password123", "role": "client"}, nil)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %s", res.StatusCode, res.Body)
	}
	for _, c := range res.Cookies() {
		if c.Name == "parley_session" {
			return "parley_session=" + c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// TestCrossSiteCookieRequests: with the session cookie, a state-changing
// request from another site is refused 403 whatever its method or body —
// bodiless POSTs included, which need no Content-Type to be forged — while
// the app's own pages, allowed CORS origins and bearer tokens go through.
func TestCrossSiteCookieRequests(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.CORSOrigins = []string{"https://app.example.com"} })
	cookie := sessionCookie(t, n, "csrf")
	evil := []map[string]string{
		{"Origin": "https://evil.example"},
		{"Origin": "null"},
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site"}, // a sibling subdomain
		{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
		{"Origin": "https://app.example.com.evil.example"},
	}
	for _, h := range evil {
		h["Cookie"] = cookie
		for _, path := range []string{"/api/auth/activity", "/api/auth/logout"} {
			wantError(t, fmt.Sprint(path, h), opsDo(t, n, "POST", path, nil, h), http.StatusForbidden, "forbidden")
		}
		wantError(t, fmt.Sprint("PATCH /api/me ", h), opsDo(t, n, "PATCH", "/api/me", map[string]string{"display_name": "pwned"}, h), http.StatusForbidden, "forbidden")
	}
	// The session survived the forged logouts.
	if res := opsDo(t, n, "GET", "/api/me", nil, map[string]string{"Cookie": cookie}); res.StatusCode != http.StatusOK {
		t.Fatalf("session after forged logouts: %d", res.StatusCode)
	}
	for _, h := range []map[string]string{
		{"Origin": n.URL},
		{"Origin": "https://app.example.com"},
		{"Sec-Fetch-Site": "same-origin"},
		{"Origin": "https://app.example.com", "Sec-Fetch-Site": "cross-site"},
		// Behind a proxy that passes another Host, the browser's own
		// Sec-Fetch-Site still tells.
		{"Origin": "https://chat.example.com", "Sec-Fetch-Site": "same-origin"},
		{}, // not a browser
	} {
		h["Cookie"] = cookie
		if res := opsDo(t, n, "POST", "/api/auth/activity", nil, h); res.StatusCode != http.StatusNoContent {
			t.Fatalf("activity %v: %d %s", h, res.StatusCode, res.Body)
		}
	}
	// Bearer credentials are not the browser's to attach: no check.
	u := n.Register(t, "bearer", "client")
	if res := opsDo(t, n, "POST", "/api/auth/activity", nil, map[string]string{"Authorization": "Bearer " + u.Token, "Origin": "https://evil.example"}); res.StatusCode != http.StatusNoContent {
		t.Fatalf("bearer from another origin: %d %s", res.StatusCode, res.Body)
	}
	if res := opsDo(t, n, "POST", "/api/auth/logout", nil, map[string]string{"Cookie": cookie, "Origin": n.URL}); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout from the app: %d %s", res.StatusCode, res.Body)
	}
}

// TestDisplayNameImpersonation: a display name with a bidi override or
// isolate, a zero-width character, a control character or NUL is refused
// 400 on display_name wherever a person or a backend sets it (and never a
// 500, on PostgreSQL too), and stripped from an app token's name claim,
// which cannot be answered with a 400.
func TestDisplayNameImpersonation(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.AuthSecret = servertest.AppSecret })
	bad := []string{"Admin\u202egnp.exe", "Ad\u2066min\u2069", "Ad\u200bmin", "Admin\x00", "Admin\x07", "\u200d", "Ad\ufeffmin"}
	u := n.Register(t, "names", "professional")
	for i, name := range bad {
		res := opsDo(t, n, "POST", "/api/auth/register", map[string]string{"username": fmt.Sprintf("imp%d_%d", i, time.Now().UnixNano()%1e6), "password": "password123", "role": "client", "display_name": name}, nil)
		wantInvalid(t, "register "+strconv.Quote(name), res)
		res = opsDo(t, n, "PATCH", "/api/me", map[string]string{"display_name": name}, map[string]string{"Authorization": "Bearer " + u.Token})
		wantInvalid(t, "PATCH /api/me "+strconv.Quote(name), res)
		res = opsDo(t, n, "PUT", "/api/server/users/ext-"+strconv.Itoa(i), map[string]string{"display_name": name, "role": "client"}, map[string]string{"Authorization": "Bearer " + servertest.APIKey})
		wantInvalid(t, "server API "+strconv.Quote(name), res)
	}
	// Plain names with accents and scripts other than Latin are fine.
	if res := opsDo(t, n, "PATCH", "/api/me", map[string]string{"display_name": "Zoë مريم 山田"}, map[string]string{"Authorization": "Bearer " + u.Token}); res.StatusCode != http.StatusOK {
		t.Fatalf("a plain name: %d %s", res.StatusCode, res.Body)
	}

	tok := servertest.SignHS(t, "HS256", []byte(servertest.AppSecret), jwt.MapClaims{
		"sub": "app-impostor", "exp": time.Now().Add(time.Hour).Unix(), "name": "\u202eAd\u200bmin\x00\u2069",
	})
	var me struct {
		DisplayName string `json:"display_name"`
	}
	res := opsDo(t, n, "GET", "/api/me", nil, map[string]string{"Authorization": "Bearer " + tok})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("app token: %d %s", res.StatusCode, res.Body)
	}
	if err := json.Unmarshal(res.Body, &me); err != nil || me.DisplayName != "Admin" {
		t.Fatalf("app token name: %q %v, want %q", me.DisplayName, err, "Admin")
	}
	// Message bodies with NUL are a 400 too, not a store error.
	peer := n.Register(t, "peer", "client")
	var conv struct {
		ID string `json:"id"`
	}
	cres := n.Do(t, "POST", "/api/conversations", peer.Token, map[string]any{"professional_id": u.ID, "message": map[string]string{"body": "hello"}}, &conv)
	if cres.StatusCode/100 != 2 {
		t.Fatalf("conversation: %d %s", cres.StatusCode, cres.Body)
	}
	res = opsDo(t, n, "POST", "/api/conversations/"+url.PathEscape(conv.ID)+"/messages", map[string]string{"body": "hi\x00there"}, map[string]string{"Authorization": "Bearer " + peer.Token})
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("message with NUL: %d %s", res.StatusCode, res.Body)
	}
}

func wantInvalid(t *testing.T, what string, res *servertest.Response) {
	t.Helper()
	wantError(t, what, res, http.StatusBadRequest, "invalid_request")
	if !strings.Contains(string(res.Body), `"field":"display_name"`) {
		t.Fatalf("%s: %s does not name display_name", what, res.Body)
	}
}

// TestNULNeverA500: NUL in any text a client or a backend sends (names,
// passwords, subjects, ids, search terms, publish payloads) is refused or
// not found, never an internal error — PostgreSQL refuses NUL in TEXT, so
// run this with PARLEY_TEST_DATABASE_URL too.
func TestNULNeverA500(t *testing.T) {
	n := servertest.Start(t)
	pro := n.Register(t, "nulpro", "professional")
	cl := n.Register(t, "nulcl", "client")
	auth := func(u servertest.User) map[string]string {
		return map[string]string{"Authorization": "Bearer " + u.Token}
	}
	key := map[string]string{"Authorization": "Bearer " + servertest.APIKey}
	checks := []struct {
		m, p string
		body any
		h    map[string]string
	}{
		{"POST", "/api/auth/login", map[string]string{"username": "a\x00b", "password": "password123"}, nil},
		{"POST", "/api/auth/register", map[string]string{"username": "a\x00b", "password": "pass\x00word123", "role": "client"}, nil},
		{"POST", "/api/conversations", map[string]any{"professional_id": pro.ID, "subject": "s\x00", "message": map[string]string{"body": "hi"}}, auth(cl)},
		{"POST", "/api/conversations", map[string]any{"professional_id": "u\x00", "message": map[string]string{"body": "hi"}}, auth(cl)},
		{"POST", "/api/conversations", map[string]any{"professional_external_id": "x\x00", "message": map[string]string{"body": "hi"}}, auth(cl)},
		{"GET", "/api/search?q=a%00b", nil, auth(cl)},
		{"GET", "/api/users/u%00", nil, auth(cl)},
		{"PATCH", "/api/me", map[string]string{"bio": "b\x00"}, auth(cl)},
		{"PUT", "/api/server/users/x%00y", map[string]string{"role": "client"}, key},
		{"POST", "/api/publish", map[string]any{"user_ids": []string{"u\x00"}, "type": "t\x00", "data": map[string]string{"k": "v\x00"}}, key},
		{"POST", "/api/publish", map[string]any{"user_ids": []string{cl.ID}, "type": "t", "data": map[string]string{"k": "v\x00"}}, key},
		{"POST", "/api/push/subscriptions", map[string]any{"endpoint": "https://fcm.googleapis.com/x\x00", "keys": map[string]string{"p256dh": "a\x00", "auth": "b"}}, auth(cl)},
	}
	for _, c := range checks {
		res := opsDo(t, n, c.m, c.p, c.body, c.h)
		if res.StatusCode >= http.StatusInternalServerError {
			t.Errorf("%s %s: %d %s", c.m, c.p, res.StatusCode, res.Body)
		}
	}
}
