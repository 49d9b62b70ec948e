package cluster_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
	"github.com/parley-chat/parley/internal/testenv"
)

// TestAppTokensAcrossNodes: three nodes on one PostgreSQL database and a
// Redis bus take the app's tokens. The same token opens streams on every
// node and sends from each (its user is provisioned once, whichever node
// sees it first, even all at once); logging it out on one node ends its
// streams on the others; and a JWKS rotation (a new kid) is picked up by
// every node.
func TestAppTokensAcrossNodes(t *testing.T) {
	old := servertest.NewAppKey(t, "ES256", "2025-a")
	ks := servertest.ServeKeys(t, old)
	nodes := startNodes(t, 3, withPrefix(testenv.Redis(t)), func(c *config.Config) {
		c.AuthJWKSURL = ks.URL
		c.AuthJWKSRefetch = 300 * time.Millisecond
	})
	sign := func(k *servertest.AppKey, sub string, extra map[string]any) string {
		c := jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "jti": fmt.Sprint(time.Now().UnixNano())}
		for key, v := range extra {
			c[key] = v
		}
		return k.Sign(t, c)
	}
	proSub := "pro|" + unique("c")
	if res := nodes[2].Do(t, "PUT", "/api/server/users/"+url.PathEscape(proSub), servertest.APIKey,
		map[string]any{"role": "professional", "display_name": "Dr. Node"}, nil); res.StatusCode != http.StatusCreated {
		t.Fatalf("put professional: %d %s", res.StatusCode, res.Body)
	}

	// One token, first seen by all three nodes at once.
	tok := sign(old, "client|"+unique("c"), map[string]any{"name": "Cleo"})
	ids := make(chan string, 3)
	for _, n := range nodes {
		go func() {
			var me struct{ ID string }
			res := n.Do(t, "GET", "/api/me", tok, nil, &me)
			if res.StatusCode != 200 {
				t.Errorf("%s: %d %s", n.URL, res.StatusCode, res.Body)
			}
			ids <- me.ID
		}()
	}
	first := <-ids
	for range 2 {
		if id := <-ids; id != first || id == "" {
			t.Fatalf("one token, several users: %q and %q", first, id)
		}
	}
	streams := make([]*servertest.Stream, len(nodes))
	for i, n := range nodes {
		streams[i] = n.OpenStream(t, tok, -1)
		streams[i].NextOf(t, "ready", 5*time.Second)
	}
	var conv struct{ ID string }
	if res := nodes[0].Do(t, "POST", "/api/conversations", tok, map[string]any{"professional_external_id": proSub,
		"message": map[string]any{"body": "from node 0"}}, &conv); res.StatusCode != http.StatusCreated {
		t.Fatalf("open: %d %s", res.StatusCode, res.Body)
	}
	for i := 1; i < len(nodes); i++ {
		if res := nodes[i].Do(t, "POST", "/api/conversations/"+conv.ID+"/messages", tok,
			map[string]any{"body": fmt.Sprintf("from node %d", i)}, nil); res.StatusCode != http.StatusCreated {
			t.Fatalf("send via node %d: %d %s", i, res.StatusCode, res.Body)
		}
	}
	for i, s := range streams {
		for want := range len(nodes) {
			if e := s.NextOf(t, "message.created", 5*time.Second); !strings.Contains(e.Data, fmt.Sprintf("from node %d", want)) {
				t.Fatalf("stream on node %d: message %d is %s", i, want, e.Data)
			}
		}
	}

	// A logout on node 1 ends the token's streams on every node.
	if res := nodes[1].Do(t, "POST", "/api/auth/logout", tok, nil, nil); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d %s", res.StatusCode, res.Body)
	}
	for i, s := range streams {
		s.NextOf(t, "session.expired", 5*time.Second)
		if res := nodes[i].Do(t, "GET", "/api/me", tok, nil, nil); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("node %d still takes the logged-out token: %d", i, res.StatusCode)
		}
	}

	// Rotation: the app publishes a new key and drops the old one.
	fresh := servertest.NewAppKey(t, "ES256", "2025-b")
	ks.SetKeys(fresh)
	tok2 := sign(fresh, "client|"+unique("r"), nil)
	// Each node reads the set again for the unknown kid once its last
	// read is 300 ms old (the refetch bound, shortened for the test).
	deadline := time.Now().Add(5 * time.Second)
	for i, n := range nodes {
		for {
			res := n.Do(t, "GET", "/api/me", tok2, nil, nil)
			if res.StatusCode == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d refuses the new kid: %d %s", i, res.StatusCode, res.Body)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
