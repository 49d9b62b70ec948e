package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley/client"
)

// User is a bench account and its session token.
type User struct {
	ID    string `json:"id"`
	Token string `json:"token"`
}

// benchPassword is the password of every bench account.
const benchPassword = "bench-password"

// userPool creates bench accounts on demand and keeps them across runs, so
// repeated runs of a workload reuse the users of the first.
type userPool struct {
	rest        *client.Client
	runID       string
	concurrency int
	logf        func(string, ...any)

	mu    sync.Mutex
	users []User
}

func newUserPool(rest *client.Client, concurrency int, logf func(string, ...any)) *userPool {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return &userPool{rest: rest, runID: hex.EncodeToString(b), concurrency: max(concurrency, 1), logf: logf}
}

// Get returns n users, registering the ones not created yet (role client,
// usernames bench_<run>_<i>).
func (p *userPool) Get(ctx context.Context, n int) ([]User, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if have := len(p.users); have < n {
		start := time.Now()
		more := make([]User, n-have)
		var done atomic.Int64
		var firstErr error
		var errOnce sync.Once
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		next := make(chan int)
		var wg sync.WaitGroup
		for w := 0; w < min(p.concurrency, len(more)); w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					u, err := p.register(ctx, have+i)
					if err != nil {
						errOnce.Do(func() { firstErr = err; cancel() })
						return
					}
					more[i] = u
					if d := done.Add(1); d%5000 == 0 {
						p.logf("registered %d/%d users", d, len(more))
					}
				}
			}()
		}
	feed:
		for i := range more {
			select {
			case next <- i:
			case <-ctx.Done():
				break feed
			}
		}
		close(next)
		wg.Wait()
		if firstErr == nil && ctx.Err() != nil {
			firstErr = ctx.Err()
		}
		if firstErr != nil {
			return nil, fmt.Errorf("register bench users: %w", firstErr)
		}
		el := time.Since(start)
		p.logf("registered %d users in %v (%.0f/s)", len(more), el.Round(time.Millisecond), float64(len(more))/el.Seconds())
		p.users = append(p.users, more...)
	}
	return p.users[:n:n], nil
}

// register creates user i, waiting out 429 and 503 answers.
func (p *userPool) register(ctx context.Context, i int) (User, error) {
	c := p.rest.WithToken("")
	name := fmt.Sprintf("bench_%s_%d", p.runID, i)
	for attempt := 0; ; attempt++ {
		a, err := c.Register(ctx, client.Register{Username: name, Password: benchPassword, Role: client.RoleClient})
		if err == nil {
			return User{ID: a.User.ID, Token: a.Token}, nil
		}
		// Retry what a loaded server may answer: 429, 503, and transport
		// errors such as a reset connection. Anything else is final.
		var e *client.Error
		isErr := errors.As(err, &e)
		if ctx.Err() != nil || attempt >= 20 ||
			(isErr && e.Status != http.StatusTooManyRequests && e.Status != http.StatusServiceUnavailable) {
			return User{}, fmt.Errorf("%s: %w", name, err)
		}
		wait := 100 * time.Millisecond
		if isErr {
			wait = max(e.RetryAfter, wait)
		}
		select {
		case <-ctx.Done():
			return User{}, ctx.Err()
		case <-time.After(wait):
		}
	}
}
