package httpapi

import (
	"strings"
	"sync"
	"time"
)

// loginGuard slows password guessing against one account, from any number
// of addresses (the per-address limiter cannot, since an attacker has many):
// after freeLoginFailures failed logins for a username, each further attempt
// must wait a delay that doubles with every failure, up to maxLoginDelay. A
// success clears the count; so does loginForget without failures.
//
// An attempt counts as failed from the moment it starts, and is cleared if
// the password was right: otherwise a burst of concurrent attempts would all
// pass the check before the first slow password hash had failed.
//
// The count is per node. Behind a balancer with n nodes the pace is n times
// faster, still exponential.
type loginGuard struct {
	mu    sync.Mutex
	users map[string]*loginFailures
	swept time.Time
}

type loginFailures struct {
	n     int       // failed (or ongoing) attempts
	until time.Time // no attempt before this
	last  time.Time
}

const (
	freeLoginFailures = 5
	maxLoginDelay     = 15 * time.Minute
	loginForget       = time.Hour
)

func loginKey(username string) string {
	username = strings.ToLower(strings.TrimSpace(username))
	if len(username) > 64 {
		username = username[:64]
	}
	return username
}

// begin records an attempt for username, or returns how long the caller
// must wait before one is allowed.
func (g *loginGuard) begin(username string, now time.Time) (wait time.Duration) {
	key := loginKey(username)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.users == nil {
		g.users = make(map[string]*loginFailures)
	}
	if now.Sub(g.swept) > time.Minute {
		for k, f := range g.users {
			if now.Sub(f.last) > loginForget && now.After(f.until) {
				delete(g.users, k)
			}
		}
		g.swept = now
	}
	f := g.users[key]
	if f == nil {
		f = &loginFailures{}
		g.users[key] = f
	}
	if now.Before(f.until) {
		return f.until.Sub(now)
	}
	f.n++
	f.last = now
	if f.n >= freeLoginFailures {
		d := time.Second << min(f.n-freeLoginFailures, 20)
		f.until = now.Add(min(d, maxLoginDelay))
	}
	return 0
}

// succeeded clears username's failures: the password was right.
func (g *loginGuard) succeeded(username string) {
	g.mu.Lock()
	delete(g.users, loginKey(username))
	g.mu.Unlock()
}
