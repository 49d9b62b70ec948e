package auth

import (
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/store"
)

// sessionCache keeps the sessions requests name, with their users, so that
// a request does not read them from the store. Reading them was a fifth of
// the embedded store's CPU in the chat benchmark: every commit empties the
// page caches of SQLite's readers, so each read went back to the file.
//
// It is exact only where it hears of every change (store.ChangeHook), which
// a store written by other processes too (PostgreSQL behind several nodes)
// cannot give: logout takes effect at once on every node.
type sessionCache struct {
	max int
	ttl time.Duration // a bound on staleness should a change go unheard

	mu      sync.Mutex
	entries map[string]cached // by session id
	// byUser finds a user's entries when the user changes. A set: an app
	// that signs a token per page view gives a user thousands of sessions.
	byUser map[string]map[string]struct{}
	// forgets counts the changes heard. A load that began before one may
	// hold what it changed, so it is not kept (put).
	forgets uint64
}

type cached struct {
	p      *Principal // the cache's own copy (clone)
	loaded time.Time
}

// clone copies p's session and user, so that neither side's changes to
// their fields reach the other.
func clone(p *Principal) *Principal {
	sess, u := *p.Session, *p.User
	return &Principal{Session: &sess, User: &u}
}

func newSessionCache(max int, ttl time.Duration) *sessionCache {
	return &sessionCache{max: max, ttl: ttl, entries: make(map[string]cached), byUser: make(map[string]map[string]struct{})}
}

// get returns a copy of the session's principal. The caller may set its
// fields; the pointers it shares with the cache (Username, ExternalID,
// LastSeen) are replaced, never written through (presence decorates so).
func (c *sessionCache) get(sessionID string, now time.Time) (*Principal, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[sessionID]
	if !ok {
		return nil, false
	}
	if now.Sub(e.loaded) >= c.ttl {
		c.drop(sessionID)
		return nil, false
	}
	return clone(e.p), true
}

// mark returns what to hand put for a load that starts now.
func (c *sessionCache) mark() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.forgets
}

// put keeps p, loaded at now, unless a change was heard since mark.
func (c *sessionCache) put(p *Principal, mark uint64, now time.Time) {
	p = clone(p)
	sid, uid := p.Session.ID, p.User.ID
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.forgets != mark {
		return
	}
	if _, ok := c.entries[sid]; !ok && len(c.entries) >= c.max {
		for id := range c.entries { // any one: map order is unspecified
			c.drop(id)
			break
		}
	}
	c.entries[sid] = cached{p: p, loaded: now}
	ids := c.byUser[uid]
	if ids == nil {
		ids = make(map[string]struct{}, 1)
		c.byUser[uid] = ids
	}
	ids[sid] = struct{}{}
}

// forget drops what a transaction changed.
func (c *sessionCache) forget(ch store.Changes) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.forgets++
	for _, id := range ch.Sessions {
		c.drop(id)
	}
	for _, uid := range ch.Users {
		for id := range c.byUser[uid] {
			delete(c.entries, id)
		}
		delete(c.byUser, uid)
	}
}

func (c *sessionCache) drop(sessionID string) {
	e, ok := c.entries[sessionID]
	if !ok {
		return
	}
	delete(c.entries, sessionID)
	uid := e.p.User.ID
	delete(c.byUser[uid], sessionID)
	if len(c.byUser[uid]) == 0 {
		delete(c.byUser, uid)
	}
}
