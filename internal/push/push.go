// Package push sends Web Push notifications (RFC 8030, with message
// encryption by RFC 8291 and VAPID by RFC 8292) for new messages to people
// who have no stream open, so a browser shows them with no tab open.
//
// It is a service fed by committed events, like the stream hub: the commit
// hook hands it each message.created without waiting, and a few workers
// send the pushes later, off the request path, so a slow push service never
// slows a send. A push is best effort: it is not retried, and pushes queued
// when a node stops are dropped (the message itself is in the log).
//
// Subscriptions are kept per session and end with it: logout deletes the
// session's subscription in the same transaction, a sweep deletes those of
// sessions that went idle or expired, and a push is only ever sent to a
// session that is live, with a TTL that ends when the session would.
package push

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// Tuning of the sender (docs/chat.md).
const (
	// DefaultDelay is how long after a message is committed its push is
	// decided: long enough for a stream that is reconnecting to get it and
	// its delivered receipt to be written (every 150 ms), short enough for
	// a notification to feel immediate.
	DefaultDelay = 1500 * time.Millisecond
	// MaxTTL bounds how long a push service keeps a push for an offline
	// device; a session's own end bounds it further.
	MaxTTL = 24 * time.Hour
	// PreviewChars is how much of a message a push shows.
	PreviewChars = 100
	// SweepEvery is the pace of the removal of subscriptions whose sessions
	// ended.
	SweepEvery = time.Minute
	// MaxEndpointBytes bounds a subscription's endpoint URL.
	MaxEndpointBytes = 2048

	queueSize   = 16384
	workers     = 4
	sendTimeout = 10 * time.Second
	settingName = "vapid_private_key"
)

// Presence tells whether an event reaches a user now (a stream on any node,
// or a recent poll); *presence.Tracker is one.
type Presence interface {
	Connected(userID string) bool
}

// Keys is a VAPID key pair, base64url without padding: the private scalar
// (32 bytes) and the uncompressed public point (65 bytes), which browsers
// take as applicationServerKey.
type Keys struct {
	Private string
	Public  string
}

// LoadKeys returns the VAPID keys: configured (a base64url private key), or
// generated on the first start and kept in the database, where every node
// of a cluster finds the same pair (the first node to start decides).
func LoadKeys(ctx context.Context, st store.Store, configured string) (Keys, error) {
	if configured != "" {
		k, err := keysFrom(configured)
		if err != nil {
			return Keys{}, fmt.Errorf("vapid-private-key: %w", err)
		}
		return k, nil
	}
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return Keys{}, err
	}
	fresh := base64.RawURLEncoding.EncodeToString(priv.Bytes())
	var stored string
	err = st.Update(ctx, func(tx *store.Tx) (err error) {
		stored, err = tx.InitSetting(settingName, fresh)
		return err
	})
	if err != nil {
		return Keys{}, fmt.Errorf("vapid keys: %w", err)
	}
	k, err := keysFrom(stored)
	if err != nil {
		return Keys{}, fmt.Errorf("vapid keys in the database: %w", err)
	}
	return k, nil
}

func keysFrom(private string) (Keys, error) {
	b, err := decodeKey(private)
	if err != nil {
		return Keys{}, errors.New("not base64url")
	}
	priv, err := ecdh.P256().NewPrivateKey(b)
	if err != nil {
		return Keys{}, errors.New("not a P-256 private key")
	}
	return Keys{
		Private: base64.RawURLEncoding.EncodeToString(priv.Bytes()),
		Public:  base64.RawURLEncoding.EncodeToString(priv.PublicKey().Bytes()),
	}, nil
}

// decodeKey reads base64url with or without padding (browsers give the
// subscription's keys without).
func decodeKey(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// Options configure a Service.
type Options struct {
	// Services are the hosts endpoints may point at (config.PushServices);
	// empty turns Web Push off.
	Services []string
	// Subject is the VAPID contact, mailto:… or https://….
	Subject string
	// Preview puts the first PreviewChars of a message in its push.
	Preview bool
	// IdleTimeout is the sessions' idle timeout (0 = none), which bounds
	// which sessions are live and how long a push may wait for a device.
	IdleTimeout time.Duration
	// Delay is DefaultDelay unless set.
	Delay time.Duration
	// Client sends the pushes; by default one that never follows a
	// redirect and gives up after 10 s.
	Client *http.Client
}

// Service keeps subscriptions and sends pushes. Its methods are safe for
// concurrent use.
type Service struct {
	store    store.Store
	keys     Keys
	presence Presence
	opts     Options
	log      *slog.Logger

	queue   chan item
	dropped atomic.Int64
	stop    chan struct{}
	wg      sync.WaitGroup
	started bool
}

// item is one message.created event for one user, waiting for its turn.
type item struct {
	userID string
	data   json.RawMessage
	due    time.Time
}

// New returns a Service; Start starts its workers.
func New(st store.Store, keys Keys, presence Presence, opts Options, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.Default()
	}
	if opts.Delay <= 0 {
		opts.Delay = DefaultDelay
	}
	if opts.Client == nil {
		opts.Client = &http.Client{
			Timeout: sendTimeout,
			// A push service answers; it does not redirect. Following one
			// would let an endpoint send the request anywhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Service{
		store: st, keys: keys, presence: presence, opts: opts, log: logger,
		queue: make(chan item, queueSize), stop: make(chan struct{}),
	}
}

// Enabled reports whether Web Push is on (some push service is allowed).
func (s *Service) Enabled() bool { return s != nil && len(s.opts.Services) > 0 }

// PublicKey is the VAPID public key browsers subscribe with, or "" when
// Web Push is off.
func (s *Service) PublicKey() string {
	if !s.Enabled() {
		return ""
	}
	return s.keys.Public
}

// Start starts the workers.
func (s *Service) Start() {
	if !s.Enabled() || s.started {
		return
	}
	s.started = true
	for range workers {
		s.wg.Add(1)
		go s.work()
	}
}

// Stop stops the workers; queued pushes are dropped.
func (s *Service) Stop() {
	if !s.started {
		return
	}
	close(s.stop)
	s.wg.Wait()
}

// Committed is the commit hook's part: it queues each message.created for
// a later decision and never blocks. When the queue is full the event is
// dropped (a push is best effort).
func (s *Service) Committed(events []parley.Event) {
	if !s.Enabled() {
		return
	}
	var due time.Time
	for i := range events {
		e := &events[i]
		if e.Type != parley.EventMessageCreated {
			continue
		}
		if due.IsZero() {
			due = time.Now().Add(s.opts.Delay)
		}
		select {
		case s.queue <- item{userID: e.UserID, data: e.Data, due: due}:
		default:
			if s.dropped.Add(1)%1000 == 1 {
				s.log.Warn("web push queue full; pushes dropped", "dropped", s.dropped.Load())
			}
		}
	}
}

func (s *Service) work() {
	defer s.wg.Done()
	for {
		var it item
		select {
		case <-s.stop:
			return
		case it = <-s.queue:
		}
		if wait := time.Until(it.due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-s.stop:
				t.Stop()
				return
			case <-t.C:
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*sendTimeout)
		s.deliver(ctx, it)
		cancel()
	}
}

// Payload is what a push carries, encrypted for the browser (RFC 8291) and
// padded to the largest record, so the push service sees neither the text
// nor its length. The service worker shows it; the app fetches the rest.
type Payload struct {
	Type           string      `json:"type"` // "message.created"
	ConversationID string      `json:"conversation_id"`
	MessageID      string      `json:"message_id"`
	Seq            int64       `json:"seq"`
	SenderID       string      `json:"sender_id"`
	SenderName     string      `json:"sender_name"`
	Preview        *string     `json:"preview"` // null when previews are off
	Attachments    int         `json:"attachments"`
	CreatedAt      parley.Time `json:"created_at"`
}

// deliver decides and sends the push of one message to one user: not to
// the sender, not to someone connected now or whose device already got the
// message, not for a message deleted meanwhile, and only to live sessions.
func (s *Service) deliver(ctx context.Context, it item) {
	// Most recipients are connected: asked first, that spares decoding
	// every message twice (the sender's copy and the recipient's).
	if s.presence != nil && s.presence.Connected(it.userID) {
		return
	}
	var ev struct {
		ID             string `json:"id"`
		ConversationID string `json:"conversation_id"`
		Seq            int64  `json:"seq"`
		SenderID       string `json:"sender_id"`
	}
	if err := json.Unmarshal(it.data, &ev); err != nil || ev.ID == "" || ev.SenderID == it.userID {
		return
	}
	var (
		msg    *parley.Message
		sender string
		subs   []store.PushSubscription
		ends   []time.Time
	)
	now := time.Now()
	err := s.store.View(ctx, func(tx *store.Tx) error {
		mem, err := tx.Member(ev.ConversationID, it.userID)
		if err != nil {
			return err
		}
		if mem.DeliveredSeq >= ev.Seq || mem.ReadSeq >= ev.Seq {
			return nil // reached a stream or a poll, maybe on another node
		}
		if msg, err = tx.MessageByID(ev.ID); err != nil {
			return err
		}
		if msg.Deleted {
			msg = nil
			return nil
		}
		if ev.SenderID != "" {
			if u, err := tx.UserByID(ev.SenderID); err == nil {
				sender = u.DisplayName
			}
		}
		subs, ends, err = tx.LivePushSubscriptions(it.userID, now, s.opts.IdleTimeout)
		return err
	})
	if errors.Is(err, parley.NotFound) {
		return
	}
	if err != nil {
		s.log.Warn("web push: load", "user", it.userID, "err", err)
		return
	}
	if msg == nil || len(subs) == 0 {
		return
	}
	p := Payload{
		Type: parley.EventMessageCreated, ConversationID: msg.ConversationID, MessageID: msg.ID, Seq: msg.Seq,
		SenderID: ev.SenderID, SenderName: sender, Attachments: len(msg.Attachments), CreatedAt: msg.CreatedAt,
	}
	if s.opts.Preview {
		v := preview(msg.Body)
		p.Preview = &v
	}
	body, err := json.Marshal(p)
	if err != nil {
		return
	}
	for i := range subs {
		ttl := min(ends[i].Sub(now), MaxTTL)
		if ttl < time.Second {
			continue
		}
		s.send(ctx, &subs[i], body, ttl)
	}
}

func preview(body string) string {
	body = strings.Join(strings.Fields(body), " ")
	n := 0
	for i := range body {
		if n == PreviewChars {
			return body[:i] + "…"
		}
		n++
	}
	return body
}

// send posts one push and handles the push service's answer: 404 and 410
// mean the subscription is gone for good (RFC 8030 §7.3), so it is deleted.
func (s *Service) send(ctx context.Context, sub *store.PushSubscription, body []byte, ttl time.Duration) {
	res, err := webpush.SendNotificationWithContext(ctx, body, &webpush.Subscription{
		Endpoint: sub.Endpoint,
		Keys:     webpush.Keys{P256dh: sub.P256dh, Auth: sub.Auth},
	}, &webpush.Options{
		HTTPClient:      s.opts.Client,
		Subscriber:      subscriber(s.opts.Subject),
		TTL:             int(ttl / time.Second),
		Urgency:         webpush.UrgencyHigh,
		VAPIDPublicKey:  s.keys.Public,
		VAPIDPrivateKey: s.keys.Private,
	})
	if err != nil {
		s.log.Warn("web push: send", "host", host(sub.Endpoint), "err", err)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	res.Body.Close()
	switch {
	case res.StatusCode/100 == 2:
	case res.StatusCode == http.StatusNotFound || res.StatusCode == http.StatusGone:
		err := s.store.Update(ctx, func(tx *store.Tx) error { return tx.DeletePushEndpoint(sub.Endpoint) })
		if err != nil {
			s.log.Warn("web push: delete expired subscription", "err", err)
		}
	default:
		s.log.Warn("web push: refused", "host", host(sub.Endpoint), "status", res.StatusCode)
	}
}

// subscriber is the VAPID subject as webpush-go takes it: it adds mailto:
// itself to anything that is not an https: URL.
func subscriber(subject string) string { return strings.TrimPrefix(subject, "mailto:") }

func host(endpoint string) string {
	if u, err := url.Parse(endpoint); err == nil {
		return u.Host
	}
	return ""
}

// Sweep deletes the subscriptions of sessions that are no longer live.
func (s *Service) Sweep(ctx context.Context) {
	for range 100 {
		var n int64
		err := s.store.Update(ctx, func(tx *store.Tx) (err error) {
			n, err = tx.DeleteDeadPushSubscriptions(time.Now(), s.opts.IdleTimeout, 500)
			return err
		})
		if err != nil {
			s.log.Warn("web push: sweep subscriptions", "err", err)
			return
		}
		if n < 500 {
			return
		}
	}
}

// Subscription is a browser's PushSubscription as its toJSON() gives it.
type Subscription struct {
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// Subscribe makes sub the session's subscription. It reports whether it is
// new (false when the session had it already).
func (s *Service) Subscribe(ctx context.Context, sess *parley.Session, sub Subscription) (*store.PushSubscription, bool, error) {
	if !s.Enabled() {
		return nil, false, parley.Errorf(parley.EForbidden, "Web Push is off on this server")
	}
	if err := s.validate(&sub); err != nil {
		return nil, false, err
	}
	row := &store.PushSubscription{
		SessionID: sess.ID, UserID: sess.UserID, Endpoint: sub.Endpoint,
		P256dh: sub.Keys.P256dh, Auth: sub.Keys.Auth, CreatedAt: store.Now(),
	}
	var created bool
	err := s.store.Update(ctx, func(tx *store.Tx) (err error) {
		created, err = tx.PutPushSubscription(row)
		return err
	})
	if errors.Is(err, store.ErrDuplicate) {
		return nil, false, parley.Errorf(parley.EConflict, "the endpoint was registered at the same time by another session")
	}
	if err != nil {
		return nil, false, err
	}
	return row, created, nil
}

// SubscriptionOf returns the session's subscription, or parley.NotFound.
func (s *Service) SubscriptionOf(ctx context.Context, sessionID string) (*store.PushSubscription, error) {
	var sub *store.PushSubscription
	err := s.store.View(ctx, func(tx *store.Tx) (err error) {
		sub, err = tx.PushSubscriptionOf(sessionID)
		return err
	})
	if err == nil && sub == nil {
		err = parley.NotFound
	}
	return sub, err
}

// Unsubscribe deletes the session's subscription, if any.
func (s *Service) Unsubscribe(ctx context.Context, sessionID string) error {
	return s.store.Update(ctx, func(tx *store.Tx) error { return tx.DeletePushSubscription(sessionID) })
}

// validate checks a subscription: an endpoint of an allowed push service,
// and the browser's P-256 key and 16-byte auth secret.
func (s *Service) validate(sub *Subscription) error {
	if sub.Endpoint == "" {
		return parley.Invalid("endpoint", "endpoint is required")
	}
	if len(sub.Endpoint) > MaxEndpointBytes || !utf8.ValidString(sub.Endpoint) || strings.IndexByte(sub.Endpoint, 0) >= 0 {
		return parley.Invalid("endpoint", "endpoint must be a URL of at most %d bytes", MaxEndpointBytes)
	}
	u, err := url.Parse(sub.Endpoint)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" {
		return parley.Invalid("endpoint", "endpoint must be an absolute URL without credentials")
	}
	if !Allowed(u, s.opts.Services) {
		return parley.Invalid("endpoint", "this server does not send Web Push to %s", u.Host)
	}
	if b, err := decodeKey(sub.Keys.P256dh); err != nil || len(b) != 65 {
		return parley.Invalid("keys.p256dh", "keys.p256dh must be a base64url P-256 public key")
	} else if _, err := ecdh.P256().NewPublicKey(b); err != nil {
		return parley.Invalid("keys.p256dh", "keys.p256dh is not a point of P-256")
	}
	if b, err := decodeKey(sub.Keys.Auth); err != nil || len(b) != 16 {
		return parley.Invalid("keys.auth", "keys.auth must be a base64url 16-byte secret")
	}
	return nil
}

// Allowed reports whether a push endpoint points at one of services: a
// host ("fcm.googleapis.com"), a suffix ("*.push.apple.com"), any host
// ("*"), all over https; or an exact origin with its scheme
// ("http://127.0.0.1:8089", for a push service of one's own). The list is
// what keeps the server from posting to wherever a subscription says, such
// as an address inside its own network.
func Allowed(u *url.URL, services []string) bool {
	host := strings.ToLower(u.Hostname())
	for _, s := range services {
		s = strings.ToLower(strings.TrimSpace(s))
		if strings.Contains(s, "://") {
			o, err := url.Parse(s)
			if err == nil && o.Scheme == u.Scheme && strings.EqualFold(o.Host, u.Host) {
				return true
			}
			continue
		}
		if u.Scheme != "https" {
			continue
		}
		switch {
		case s == "*":
			return true
		case strings.HasPrefix(s, "*."):
			if strings.HasSuffix(host, s[1:]) && len(host) > len(s)-1 {
				return true
			}
		case host == s:
			return true
		}
	}
	return false
}
