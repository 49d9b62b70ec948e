package httpapi_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestSessionCookieSecure: the session cookie is Secure when the request
// came over TLS through a trusted proxy (X-Forwarded-Proto: https), not when
// an untrusted client merely says so, and --cookie-secure forces it either
// way. Clearing it at logout carries the same attribute.
func TestSessionCookieSecure(t *testing.T) {
	cases := []struct {
		name    string
		trusted bool
		mode    string
		proto   string
		want    bool
	}{
		{"plain http", true, config.CookieSecureAuto, "", false},
		{"https at the trusted proxy", true, config.CookieSecureAuto, "https", true},
		{"https at the proxy, two hops", true, config.CookieSecureAuto, "https, http", true},
		{"http at the trusted proxy", true, config.CookieSecureAuto, "http", false},
		{"an untrusted peer says https", false, config.CookieSecureAuto, "https", false},
		{"always", false, config.CookieSecureAlways, "", true},
		{"never", true, config.CookieSecureNever, "https", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := servertest.Start(t, func(c *config.Config) {
				c.CookieSecure = tc.mode
				if tc.trusted {
					c.TrustedProxies = []string{"127.0.0.1/32", "::1"}
				}
			})
			body := fmt.Sprintf(`{"username":"ck%d","password":"password123","role":"client"}`, time.Now().UnixNano()%1e9)
			req, _ := http.NewRequest("POST", n.URL+"/api/auth/register", bytes.NewBufferString(body))
			req.Header.Set("Content-Type", "application/json")
			if tc.proto != "" {
				req.Header.Set("X-Forwarded-Proto", tc.proto)
			}
			res := servertest.Send(t, req, nil)
			c := cookieNamed(res.Cookies(), "parley_session")
			if res.StatusCode != http.StatusCreated || c == nil {
				t.Fatalf("register: %d %s", res.StatusCode, res.Body)
			}
			if c.Secure != tc.want || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
				t.Fatalf("cookie %+v: Secure %v, want %v", c, c.Secure, tc.want)
			}
			req, _ = http.NewRequest("POST", n.URL+"/api/auth/logout", nil)
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
			if tc.proto != "" {
				req.Header.Set("X-Forwarded-Proto", tc.proto)
			}
			res = servertest.Send(t, req, nil)
			cleared := cookieNamed(res.Cookies(), "parley_session")
			if res.StatusCode != http.StatusNoContent || cleared == nil || cleared.MaxAge >= 0 || cleared.Secure != tc.want {
				t.Fatalf("logout: %d %+v", res.StatusCode, cleared)
			}
		})
	}
}

func cookieNamed(cs []*http.Cookie, name string) *http.Cookie {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	return nil
}
