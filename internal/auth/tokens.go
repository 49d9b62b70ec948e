package auth

import (
	"sync"
	"time"
)

// tokenCache remembers the claims of Parley's own tokens whose signature
// verified, so that each request of a client does not verify its token
// again: the base64, the two JSON decodes and the HMAC of every request
// were 4 % of the server's CPU in the chat benchmark. A hit is the very
// string that verified, so nothing can be forged through it; the expiry is
// checked on each hit as the parser checks it, and the session behind the
// token is checked on every request as before. It holds no state a change
// could make stale, so unlike the session cache it serves every store.
// Streams and polls use the entries other requests made, but make none.
type tokenCache struct {
	max int

	mu      sync.Mutex
	entries map[string]tokenClaims // by the whole token
}

// tokenClaims are what Authenticate uses of a verified token.
type tokenClaims struct {
	sessionID, subject string
	expires            time.Time
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: make(map[string]tokenClaims)}
}

// get returns the claims of token if it verified and is not expired at now
// (with leeway, as the parser allows).
func (c *tokenCache) get(token string, now time.Time) (tokenClaims, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tc, ok := c.entries[token]
	if !ok {
		return tokenClaims{}, false
	}
	if !now.Before(tc.expires.Add(tokenLeeway)) { // as the parser: valid before exp+leeway
		delete(c.entries, token)
		return tokenClaims{}, false
	}
	return tc, true
}

// put keeps the claims of a token that verified.
func (c *tokenCache) put(token string, tc tokenClaims) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[token]; !ok && len(c.entries) >= c.max {
		for t := range c.entries { // any one: map order is unspecified
			delete(c.entries, t)
			break
		}
	}
	c.entries[token] = tc
}
