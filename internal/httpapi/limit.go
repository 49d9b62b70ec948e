package httpapi

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter is a token bucket per user: rate r per second, burst twice that.
// Buckets idle for a minute are dropped, since a full bucket and a missing
// one behave the same.
type limiter struct {
	r     rate.Limit
	burst int
	mu    sync.Mutex
	users map[string]*bucket
	swept time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(perSecond float64) *limiter {
	return &limiter{r: rate.Limit(perSecond), burst: max(1, int(2*perSecond)), users: make(map[string]*bucket)}
}

func (l *limiter) allow(key string) bool {
	if l == nil || l.r <= 0 {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.users {
			if now.Sub(b.seen) > time.Minute {
				delete(l.users, k)
			}
		}
		l.swept = now
	}
	b := l.users[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.r, l.burst)}
		l.users[key] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}
