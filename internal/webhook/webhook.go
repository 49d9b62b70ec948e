// Package webhook sends the outbox that the chat service writes (store
// migration 00013) to the app's backend, signed by the Standard Webhooks
// scheme (https://www.standardwebhooks.com): SPEC §9.3, docs/webhooks.md.
//
// A webhook row is written in the transaction of its change; the Sender only
// reads committed rows, so a crash anywhere loses none, and the webhook-id
// fixed at write time lets the receiver drop the duplicates that
// at-least-once delivery brings. The Sender is a service of its own: its
// HTTP requests run on their own goroutines, under their own timeout, so a
// slow or dead receiver never holds a send, a stream or a transaction.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parley-chat/parley/internal/metrics"
	"github.com/parley-chat/parley/internal/store"
)

// Defaults of Options.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultConcurrency = 32
	DefaultPoll        = 250 * time.Millisecond
)

// DefaultDelays are the waits after each failed attempt; the last repeats
// until the max age.
var DefaultDelays = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour}

// Options configure a Sender.
type Options struct {
	URL    string // where webhooks are POSTed
	Secret string // whsec_<base64>
	// MaxAge is how long a webhook is retried before it is kept as failed; 24h.
	MaxAge time.Duration
	// Delays are the waits after each failed attempt; DefaultDelays.
	Delays []time.Duration
	// Timeout bounds one attempt; 10s. Anything but a 2xx within it fails.
	Timeout time.Duration
	// Concurrency bounds the requests in flight; 32. A conversation has at
	// most one in flight, so its webhooks arrive in the order written.
	Concurrency int
	// Lease is how long a claimed row is this node's; other nodes take it
	// over after it (this node died mid-delivery). 6 × Timeout. A lease
	// shorter than Timeout may send a slow delivery twice (same id).
	Lease time.Duration
	// Poll is how often the outbox is read when nothing woke the sender; 250ms.
	Poll time.Duration
	// Batch is how many webhooks of one conversation one claim takes, sent
	// one after the other; 64.
	Batch int
	// Client sends the requests; a client with Timeout and no redirects.
	Client *http.Client
	// SingleNode says no other process shares the outbox (the embedded
	// database, which one process holds locked): every lease found at start
	// is a dead process's, released at once instead of after Lease.
	SingleNode bool
}

// Sender delivers the outbox.
type Sender struct {
	st      store.Store
	opts    Options
	key     []byte
	log     *slog.Logger
	metrics *metrics.Metrics
	wake    chan struct{}

	mu       sync.Mutex
	inflight int
}

// ParseSecret returns the key of a whsec_<base64> secret.
func ParseSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New("webhook secret must start with whsec_")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("webhook secret must be whsec_ followed by base64")
	}
	return key, nil
}

// Sign returns the webhook-signature header of a delivery: v1 and the
// base64 HMAC-SHA256 of id.timestamp.body under key.
func Sign(key []byte, id string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// New returns a Sender; m may be nil (no metrics).
func New(st store.Store, opts Options, m *metrics.Metrics, logger *slog.Logger) (*Sender, error) {
	key, err := ParseSecret(opts.Secret)
	if err != nil {
		return nil, err
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 24 * time.Hour
	}
	if len(opts.Delays) == 0 {
		opts.Delays = DefaultDelays
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = DefaultConcurrency
	}
	if opts.Lease <= 0 {
		opts.Lease = 6 * opts.Timeout
	}
	if opts.Poll <= 0 {
		opts.Poll = DefaultPoll
	}
	if opts.Batch <= 0 {
		opts.Batch = 64
	}
	if opts.Client == nil {
		opts.Client = &http.Client{
			Timeout: opts.Timeout,
			// A redirect is not a 2xx: it fails the attempt rather than
			// sending the signed body somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport: &http.Transport{
				Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: opts.Concurrency,
				IdleConnTimeout: 90 * time.Second, ResponseHeaderTimeout: opts.Timeout,
			},
		}
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Sender{st: st, opts: opts, key: key, log: logger, metrics: m, wake: make(chan struct{}, 1)}, nil
}

// Kick wakes the sender to read the outbox now rather than at its next
// poll: the server calls it after each commit. It never blocks.
func (s *Sender) Kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run delivers webhooks until ctx ends, then waits for the requests in
// flight (each bounded by the timeout).
func (s *Sender) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	if s.opts.SingleNode {
		if err := s.st.Update(ctx, func(tx *store.Tx) error { return tx.ReleaseWebhookLeases("") }); err != nil {
			s.log.Warn("release webhook leases", "err", err)
		}
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-t.C:
		}
		n := s.claim(ctx, &wg)
		if n > 0 {
			// More may be due: look again soon, without a busy loop while
			// every slot is taken (a finished delivery kicks).
			s.Kick()
		}
		t.Reset(s.opts.Poll)
	}
}

// claim leases as many due rows as there are free slots and starts their
// deliveries; it returns how many.
func (s *Sender) claim(ctx context.Context, wg *sync.WaitGroup) int {
	s.mu.Lock()
	free := s.opts.Concurrency - s.inflight
	s.mu.Unlock()
	if free <= 0 {
		return 0
	}
	// Most polls find nothing: a read says so without a write transaction.
	var due bool
	if err := s.st.View(ctx, func(tx *store.Tx) error {
		var err error
		due, err = tx.WebhookDue(time.Now())
		return err
	}); err != nil || !due {
		if err != nil && ctx.Err() == nil {
			s.log.Warn("look for due webhooks", "err", err)
		}
		return 0
	}
	var groups [][]*store.Webhook
	err := s.st.Update(ctx, func(tx *store.Tx) error {
		var err error
		groups, err = tx.ClaimWebhooks(time.Now(), s.opts.Lease, free, s.opts.Batch)
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("claim webhooks", "err", err)
		}
		return 0
	}
	s.mu.Lock()
	s.inflight += len(groups)
	s.mu.Unlock()
	for _, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.deliverAll(ctx, g)
			s.mu.Lock()
			s.inflight--
			s.mu.Unlock()
			s.Kick()
		}()
	}
	return len(groups)
}

// deliverAll sends one conversation's claimed webhooks in order, and stops
// at the first that is not accepted: the rest wait behind it, their leases
// handed back.
func (s *Sender) deliverAll(ctx context.Context, g []*store.Webhook) {
	for i, w := range g {
		if !s.deliver(ctx, w) {
			rest := g[i+1:]
			if len(rest) == 0 {
				return
			}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			_ = s.st.Update(rctx, func(tx *store.Tx) error {
				for _, w := range rest {
					if err := tx.ReleaseWebhookLeases(w.ID); err != nil {
						return err
					}
				}
				return nil
			})
			return
		}
	}
}

// deliver makes one attempt and records its outcome; it reports whether
// the receiver accepted it.
func (s *Sender) deliver(ctx context.Context, w *store.Webhook) bool {
	status, err := s.post(ctx, w)
	if ctx.Err() != nil {
		// Shutting down: the attempt was cut short, not answered. The row
		// is handed back for the next start (or another node) at once.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = s.st.Update(rctx, func(tx *store.Tx) error { return tx.ReleaseWebhookLeases(w.ID) })
		return false
	}
	now := time.Now()
	if err == nil && status >= 200 && status < 300 {
		if err := s.st.Update(ctx, func(tx *store.Tx) error { return tx.WebhookDelivered(w.ID) }); err != nil {
			// Left leased: sent again after the lease, with the same id.
			// The conversation's next webhooks wait for it.
			s.log.Warn("record webhook delivery", "webhook_id", w.ID, "err", err)
			return false
		}
		if s.metrics != nil {
			s.metrics.WebhooksDelivered.Inc()
			s.metrics.WebhookLatency.Observe(now.Sub(w.CreatedAt).Seconds())
		}
		return true
	}
	errText := ""
	if err != nil {
		errText = err.Error()
	} else {
		errText = fmt.Sprintf("status %d", status)
	}
	attempt := w.Attempts + 1
	delay := s.opts.Delays[min(attempt, len(s.opts.Delays))-1]
	next := now.Add(delay)
	failed := next.Sub(w.RetryFrom) > s.opts.MaxAge
	if s.metrics != nil {
		s.metrics.WebhookAttemptsFailed.Inc()
	}
	// The secret and the body are never logged: the id finds the row.
	attrs := []any{"webhook_id", w.ID, "type", w.Type, "status", status, "attempt", attempt, "err", errText}
	if failed {
		s.log.Warn("webhook failed, no more retries", attrs...)
	} else {
		s.log.Warn("webhook delivery failed, will retry", append(attrs, "retry_in", delay.String())...)
	}
	if err := s.st.Update(ctx, func(tx *store.Tx) error {
		return tx.WebhookAttempted(w.ID, failed, next, status, errText)
	}); err != nil {
		s.log.Warn("record webhook attempt", "webhook_id", w.ID, "err", err)
	}
	return false
}

// post sends one attempt and returns the receiver's status.
func (s *Sender) post(ctx context.Context, w *store.Webhook) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.URL, bytes.NewReader(w.Body))
	if err != nil {
		return 0, err
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Parley-Webhooks")
	req.Header.Set("webhook-id", w.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	req.Header.Set("webhook-signature", Sign(s.key, w.ID, ts, w.Body))
	resp, err := s.opts.Client.Do(req)
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		return 0, ue.Err // the url.Error repeats the URL, which may carry a token
	} else if err != nil {
		return 0, err
	}
	// Drained (a little) so the connection is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}
