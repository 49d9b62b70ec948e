package auth

import (
	"fmt"
	"testing"
	"time"
)

func TestTokenCache(t *testing.T) {
	c := newTokenCache(3)
	now := time.Now()
	exp := now.Add(time.Minute)
	c.put("tok", tokenClaims{sessionID: "s", subject: "u", expires: exp})
	if tc, ok := c.get("tok", now); !ok || tc.sessionID != "s" || tc.subject != "u" {
		t.Fatalf("get = %+v, %v", tc, ok)
	}
	if _, ok := c.get("tok ", now); ok {
		t.Fatal("another string was a hit")
	}
	// The parser's leeway, and not a moment more.
	if _, ok := c.get("tok", exp.Add(tokenLeeway)); !ok {
		t.Fatal("refused within the leeway")
	}
	if _, ok := c.get("tok", exp.Add(tokenLeeway+time.Millisecond)); ok {
		t.Fatal("served after expiry and leeway")
	}
	if len(c.entries) != 0 {
		t.Fatal("an expired token was kept")
	}
	for i := range 5 {
		c.put(fmt.Sprint("t", i), tokenClaims{expires: exp})
	}
	if len(c.entries) != 3 {
		t.Fatalf("%d entries, want the bound 3", len(c.entries))
	}
	if _, ok := c.get("t4", now); !ok {
		t.Fatal("the newest entry was evicted")
	}
}
