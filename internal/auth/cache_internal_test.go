package auth

import (
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

func principal(sid, uid string) *Principal {
	return &Principal{Session: &parley.Session{ID: sid, UserID: uid}, User: &parley.User{ID: uid}}
}

// A load that overlapped a change may hold the old row: it is not kept.
func TestSessionCacheDropsLoadsOverlappingAChange(t *testing.T) {
	c := newSessionCache(10, time.Minute)
	now := time.Now()
	mark := c.mark()
	c.forget(store.Changes{Sessions: []string{"other"}}) // any change: which rows a load read is not known
	c.put(principal("s1", "u1"), mark, now)
	if _, ok := c.get("s1", now); ok {
		t.Fatal("a load begun before a change was kept")
	}
	c.put(principal("s1", "u1"), c.mark(), now)
	if _, ok := c.get("s1", now); !ok {
		t.Fatal("a load with no change since was not kept")
	}
}

func TestSessionCacheBounds(t *testing.T) {
	c := newSessionCache(3, time.Minute)
	now := time.Now()
	for i := range 5 {
		c.put(principal(fmt.Sprint("s", i), "u"), c.mark(), now)
	}
	if len(c.entries) != 3 || len(c.byUser["u"]) != 3 {
		t.Fatalf("%d entries, %d under the user; want 3 and 3", len(c.entries), len(c.byUser["u"]))
	}
	if _, ok := c.get("s4", now); !ok {
		t.Fatal("the newest entry was evicted")
	}
	if _, ok := c.get("s4", now.Add(time.Minute)); ok {
		t.Fatal("an entry older than the ttl was served")
	}
	if len(c.entries) != 2 || len(c.byUser["u"]) != 2 {
		t.Fatalf("an expired entry was kept: %d entries, %d under the user", len(c.entries), len(c.byUser["u"]))
	}
	c.forget(store.Changes{Users: []string{"u"}})
	if len(c.entries) != 0 || len(c.byUser) != 0 {
		t.Fatalf("forgetting the user left %d entries, %d users", len(c.entries), len(c.byUser))
	}
}
