// Package server wires Parley's parts into a running node: it opens the
// store, builds the hub, services and HTTP API from a config.Config, runs the
// background loops and shuts everything down in order.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/attach"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/httpapi"
	"github.com/parley-chat/parley/internal/metrics"
	"github.com/parley-chat/parley/internal/presence"
	"github.com/parley-chat/parley/internal/push"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/postgres"
	"github.com/parley-chat/parley/internal/store/sqlite"
	"github.com/parley-chat/parley/internal/stream"
	"github.com/parley-chat/parley/internal/web"
	"github.com/parley-chat/parley/internal/webhook"
)

// Server is one Parley node.
type Server struct {
	cfg     config.Config
	log     *slog.Logger
	store   store.Store
	hub     *stream.Hub
	metrics *metrics.Metrics
	auth    *auth.Service
	api     *httpapi.API
	http    *http.Server
	ln      net.Listener
	// pprof serves /debug/pprof/ on its own listener (--pprof-addr), nil
	// when off.
	pprof   *http.Server
	pprofLn net.Listener

	// cluster connects this node to the others; nil for a single node.
	cluster *cluster

	chat     *chat.Service
	presence *presence.Tracker
	// jwks is the app's public keys, nil when none are configured.
	jwks *auth.JWKS

	attach *attach.Service
	push   *push.Service
	// webhooks sends the outbox to the app's backend; nil without a URL.
	webhooks *webhook.Sender

	stop  chan struct{}
	wg    sync.WaitGroup
	swept time.Time // end of the last session sweep window
}

// New builds a node from cfg without listening yet.
func New(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, log: logger, stop: make(chan struct{})}
	secret, err := loadSecret(cfg)
	if err != nil {
		return nil, err
	}
	if _, err := config.ParseICEServers(cfg.ICEServers); err != nil {
		return nil, err
	}
	if _, err := config.ParsePrefixes(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	maxStreams := cfg.MaxStreams
	if maxStreams == 0 {
		maxStreams = streamCapacity()
	}
	// The bus comes before presence, which counts streams over all nodes
	// through it, and the hub, which relays through it.
	s.cluster, err = openCluster(ctx, cfg.Bus, cfg.PresenceLease, logger)
	if err != nil {
		return nil, err
	}
	// Presence counts streams through the hub's hooks; it gets the store
	// once that is open, before anything can connect.
	s.presence = presence.New(s.cluster.presenceCounter(), cfg.PresenceGrace, logger)
	s.hub = stream.NewHub(stream.Limits{PerUser: cfg.MaxStreamsPerUser, Total: maxStreams, Buffer: cfg.StreamBuffer}, s.presence)
	s.cluster.attach(s.hub, s.presence)
	s.metrics = metrics.New(func() float64 { return float64(s.hub.Open()) })
	if s.cluster != nil {
		s.metrics.WatchBus(s.cluster.upGauge)
	}

	s.store, err = openStore(ctx, cfg, s.onCommit)
	if err != nil {
		s.cluster.close()
		return nil, err
	}
	if err := s.openChatFeatures(ctx); err != nil {
		s.store.Close()
		s.cluster.close()
		return nil, err
	}
	s.auth = auth.New(s.store, secret, cfg.IdleTimeout, cfg.SessionTTL, cfg.PasswordCost)
	s.auth.App = s.appTokens()
	s.presence.Start(s.store, s.hub)
	chatOpts := chat.Options{MaxBodyChars: cfg.MaxBodyChars, CallTimeout: cfg.CallTimeout, Files: s.attach}
	if cfg.WebhookURL != "" {
		chatOpts.Webhooks = chat.Webhooks{Types: cfg.WebhookEvents, UnreadAfter: cfg.WebhookUnreadAfter}
		_, local := s.store.(*sqlite.DB)
		s.webhooks, err = webhook.New(s.store, webhook.Options{
			URL: cfg.WebhookURL, Secret: cfg.WebhookSecret, MaxAge: cfg.WebhookMaxAge,
			Delays: cfg.WebhookRetryDelays, Lease: cfg.WebhookLease, SingleNode: local,
		}, s.metrics, logger)
		if err != nil {
			s.store.Close()
			s.cluster.close()
			return nil, err
		}
	}
	s.metrics.WatchWebhooks(s.webhookCounts)
	s.chat = chat.New(s.store, s.hub, s.presence, chatOpts, logger)
	s.cluster.observeTyping(s.chat.TypingSeen)
	streams := &stream.Server{
		Hub: s.hub, Log: eventLog{s.store, s.readFailed}, Metrics: s.metrics, Logger: logger,
		Heartbeat: cfg.Heartbeat, Retry: cfg.Retry, WriteTimeout: cfg.WriteTimeout,
		// With other nodes writing, a lost bus message must cost latency,
		// never an event: streams also read their logs at each heartbeat.
		Recheck:     s.cluster != nil,
		OnDelivered: s.chat.Delivered, OnPoll: s.presence.Polled, OnResume: s.chat.Resumed,
	}
	if db, local := s.store.(*sqlite.DB); local {
		// Opening a stream is then CPU work on this process alone: more
		// openings at once than Ps only lengthen the run queue. PostgreSQL
		// reads wait on the network, where more at once is what helps.
		streams.Openings = runtime.GOMAXPROCS(0)
		s.metrics.WatchTail(func() float64 { return float64(db.Unmerged()) })
		s.metrics.WatchStore(db.TailFull, db.MergeFailures)
		s.metrics.WatchCommits(db.Commits)
		db.TimeWrites(s.metrics.TimeWrites())
		db.SetLogger(logger)
		// This process is the file's only writer, so the store hears of
		// every change to a session or user and a cache of them stays exact.
		db.OnChange(s.auth.CacheSessions(sessionCacheSize))
	}
	s.api = &httpapi.API{
		Config: cfg, Auth: s.auth, Store: s.store, Streams: streams, Metrics: s.metrics, Logger: logger,
		Ready: s.ready, Web: web.Handler(),
		Presence: s.presence, Routes: []func(*httpapi.ServeMux, *httpapi.API){
			httpapi.ChatRoutes(s.chat), httpapi.ServerRoutes(s.chat),
			httpapi.AttachmentRoutes(s.attach), httpapi.SearchRoutes(s.chat), httpapi.ProfileRoutes(), httpapi.PushRoutes(s.push),
			httpapi.WebhookRoutes(s.kickWebhooks),
		},
	}
	s.http = &http.Server{
		Handler:           s.api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// appTokens is the check of the app's own tokens (SPEC §9.1), nil when
// neither a secret nor a JWKS is configured. The JWKS is read here, so a
// node that starts serves the app's tokens at once when the keys answer.
func (s *Server) appTokens() *auth.AppTokens {
	cfg := s.cfg
	if cfg.AuthSecret == "" && cfg.AuthJWKSURL == "" {
		return nil
	}
	app := &auth.AppTokens{
		Issuer: cfg.AuthIssuer, Audience: cfg.AuthAudience,
		RoleClaim: cfg.AuthRoleClaim, DefaultRole: cfg.AuthDefaultRole, Leeway: time.Minute,
	}
	if cfg.AuthSecret != "" {
		app.Secret = []byte(cfg.AuthSecret)
	}
	if cfg.AuthJWKSURL != "" {
		s.jwks = auth.NewJWKS(cfg.AuthJWKSURL, s.log)
		if cfg.AuthJWKSRefetch > 0 {
			s.jwks.MinRefetch = cfg.AuthJWKSRefetch
		}
		s.jwks.Start(10 * time.Second)
		app.JWKS = s.jwks
	}
	return app
}

func openStore(ctx context.Context, cfg config.Config, hook store.CommitHook) (store.Store, error) {
	switch {
	case cfg.DatabaseURL == "":
		return sqlite.Open(ctx, filepath.Join(cfg.DataDir, "parley.db"), hook)
	case strings.HasPrefix(cfg.DatabaseURL, "sqlite:"), strings.HasPrefix(cfg.DatabaseURL, "file:"):
		path := strings.TrimPrefix(strings.TrimPrefix(cfg.DatabaseURL, "sqlite:"), "file:")
		return sqlite.Open(ctx, path, hook)
	case strings.HasPrefix(cfg.DatabaseURL, "postgres://"), strings.HasPrefix(cfg.DatabaseURL, "postgresql://"):
		return postgres.Open(ctx, cfg.DatabaseURL, hook)
	}
	return nil, fmt.Errorf("database-url: unsupported scheme in %q", redact(cfg.DatabaseURL))
}

// onCommit runs after every commit and must not block: local streams get
// the events, other nodes a notification queued for the bus. With
// PostgreSQL it runs concurrently and commits may come out of order; a
// stream that sees a gap reads the log.
func (s *Server) onCommit(events []parley.Event) {
	s.metrics.EventsWritten.Add(float64(len(events)))
	s.hub.Publish(events)
	if s.cluster != nil {
		s.cluster.committed(events)
	}
	s.push.Committed(events)
	// A commit may have written webhooks: look now, not at the next poll.
	s.kickWebhooks()
}

// kickWebhooks wakes the webhook sender, if there is one.
func (s *Server) kickWebhooks() {
	if s.webhooks != nil {
		s.webhooks.Kick()
	}
}

// webhookCounts reads the outbox's pending and failed counts for /metrics.
func (s *Server) webhookCounts() (pending, failed float64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var p, f int64
	if err := s.store.View(ctx, func(tx *store.Tx) error {
		var err error
		p, f, err = tx.WebhookCounts()
		return err
	}); err != nil {
		s.log.Warn("count webhooks", "err", err)
	}
	return float64(p), float64(f)
}

// openChatFeatures builds the attachment store and the Web Push sender.
// The embedded store keeps attachments as files in the data dir;
// PostgreSQL keeps them in the database, so every node serves them.
func (s *Server) openChatFeatures(ctx context.Context) error {
	dir := ""
	if _, local := s.store.(*sqlite.DB); local {
		dir = filepath.Join(s.cfg.DataDir, "attachments")
	}
	var err error
	if s.attach, err = attach.New(s.store, dir, s.cfg.MaxAttachment, s.log); err != nil {
		return err
	}
	var keys push.Keys
	if len(s.cfg.PushServices) > 0 {
		if keys, err = push.LoadKeys(ctx, s.store, s.cfg.VAPIDPrivateKey); err != nil {
			return err
		}
	}
	s.push = push.New(s.store, keys, s.presence, push.Options{
		Services: s.cfg.PushServices, Subject: s.cfg.PushSubject, Preview: s.cfg.PushPreview,
		IdleTimeout: s.cfg.IdleTimeout,
	}, s.log)
	return nil
}

// ready is /readyz: the store answers. A bus outage is left out (SPEC
// §7): every node shares the bus, so it would take them all out of the
// balancer at once, while they still serve (streams fall back to reading
// their logs); it shows as parley_bus_up and in the log instead.
func (s *Server) ready(ctx context.Context) error {
	if err := s.store.Ping(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Routes returns the route patterns the node serves, as registered.
func (s *Server) Routes() []string { return s.api.Patterns() }

// Handler is the node's HTTP handler, for tests that serve it themselves.
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Start listens on the configured address and serves in the background.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return err
	}
	trusted, _ := config.ParsePrefixes(s.cfg.TrustedProxies) // checked in New
	ln = newCapListener(ln, s.cfg.MaxConnsPerIP, trusted, s.metrics.ConnsRefused.Inc)
	s.ln = ln
	s.swept = time.Now()
	if s.cfg.Pprof {
		addr := s.cfg.PprofAddr
		if addr == "" {
			addr = config.DefaultPprofAddr
		}
		pln, err := net.Listen("tcp", addr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("pprof listener (--pprof-addr): %w", err)
		}
		s.pprofLn = pln
		s.pprof = &http.Server{Handler: httpapi.PprofHandler(), ReadHeaderTimeout: 10 * time.Second}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.pprof.Serve(pln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("serve pprof", "err", err)
			}
		}()
		s.log.Info("pprof listening", "addr", pln.Addr().String())
	}
	if s.cluster != nil {
		// Subscribed before serving: no stream can miss a notification.
		if err := s.cluster.start(); err != nil {
			ln.Close()
			return fmt.Errorf("bus: %w", err)
		}
	}
	if err := s.api.Streams.Start(); err != nil {
		ln.Close()
		return fmt.Errorf("start stream loop: %w", err)
	}
	s.loop(s.cfg.RetentionEvery, s.prune)
	s.loop(sweepEvery(s.cfg.IdleTimeout), s.sweepSessions)
	s.loop(chat.ReceiptFlushEvery, s.chat.FlushReceipts)
	s.loop(chat.CallSweepEvery(s.cfg.CallTimeout), s.chat.ExpireCalls)
	s.loop(attach.CollectEvery, s.attach.Collect)
	if s.webhooks != nil {
		if s.cfg.WebhookUnreadAfter > 0 {
			s.loop(chat.CallSweepEvery(s.cfg.WebhookUnreadAfter), s.chat.FireUnread)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			go func() { <-s.stop; cancel() }()
			s.webhooks.Run(ctx)
		}()
	}
	s.push.Start()
	if s.push.Enabled() {
		s.loop(push.SweepEvery, s.push.Sweep)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.attach.SweepFiles(context.Background())
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("serve", "err", err)
		}
	}()
	s.log.Info("parley listening", "addr", ln.Addr().String(), "url", s.URL())
	return nil
}

// Addr is the address the node listens on, once started.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// PprofAddr is where /debug/pprof/ is served, once started; "" when off.
func (s *Server) PprofAddr() string {
	if s.pprofLn == nil {
		return ""
	}
	return s.pprofLn.Addr().String()
}

// URL is where a browser on this machine reaches the node, once started. A
// node listening on every interface (0.0.0.0, ::) is shown at 127.0.0.1:
// browsers treat loopback as a secure context, which calls need.
func (s *Server) URL() string {
	host, port, err := net.SplitHostPort(s.Addr())
	if err != nil {
		return "http://" + s.Addr() + "/"
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// Shutdown stops accepting, tells every stream to reconnect, waits for
// requests in flight and closes the store.
func (s *Server) Shutdown(ctx context.Context) error {
	close(s.stop)
	s.hub.Close()
	s.api.Streams.Stop()
	err := s.http.Shutdown(ctx)
	if s.pprof != nil {
		// A profile being taken runs for its seconds: no reason to wait.
		_ = s.pprof.Close()
	}
	s.wg.Wait()
	s.push.Stop()
	// The streams are gone: write what they delivered and who was online.
	s.chat.FlushReceipts(ctx)
	s.presence.Close(ctx)
	if s.cluster != nil {
		err = errors.Join(err, s.cluster.close())
	}
	if s.jwks != nil {
		s.jwks.Stop()
	}
	return errors.Join(err, s.store.Close())
}

// Run starts the node and shuts it down when ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	return s.Wait(ctx)
}

// Wait serves, once started, until ctx ends, then shuts the node down.
func (s *Server) Wait(ctx context.Context) error {
	<-ctx.Done()
	s.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return s.Shutdown(sctx)
}

// loop runs fn every interval until shutdown.
func (s *Server) loop(every time.Duration, fn func(context.Context)) {
	if every <= 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for {
			fn(ctx)
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// prune applies the retention policy.
func (s *Server) prune(ctx context.Context) {
	// PruneEvents merges SQLite's tail of new events first, all in its
	// transaction; drained here in steps, that transaction finds little
	// left. (Merged in one, a soak's 60,000 events left the writer's
	// memory 90 MiB larger for good.)
	for range 1000 {
		var more bool
		err := s.store.Update(ctx, func(tx *store.Tx) (err error) {
			more, err = tx.MergeTailStep(4096)
			return err
		})
		if err != nil {
			s.log.Error("merge event tail", "err", err)
			return
		}
		if !more {
			break
		}
	}
	before := time.Now().Add(-s.cfg.RetentionAge)
	var n int64
	err := s.store.Update(ctx, func(tx *store.Tx) (err error) {
		n, err = tx.PruneEvents(before, s.cfg.RetentionEvents)
		return err
	})
	if err != nil {
		s.readFailed(err)
		s.log.Error("prune events", "err", err)
	} else if n > 0 {
		s.log.Info("pruned events", "count", n)
	}
}

// sweepSessions ends the streams of sessions that went idle or were revoked,
// on this node or another; the store is the truth, so no bus is needed.
func (s *Server) sweepSessions(ctx context.Context) {
	now := time.Now()
	// Windows overlap by a second so clock skew between the node that
	// ended a session and this one cannot hide the end; a kick is idempotent.
	from := s.swept.Add(-time.Second)
	ended, err := s.auth.EndedBetween(ctx, from, now)
	if err != nil {
		s.log.Warn("sweep sessions", "err", err)
		return
	}
	s.swept = now
	for _, sess := range ended {
		s.hub.KickSessionLocal(sess.UserID, sess.ID)
	}
}

// sweepEvery checks sessions often enough that idle logout lands within a
// small fraction of the timeout.
func sweepEvery(idle time.Duration) time.Duration {
	if idle <= 0 {
		return 5 * time.Second // still catches logouts made on another node
	}
	return min(max(idle/10, 50*time.Millisecond), 5*time.Second)
}

// readFailed makes a corrupt stored run of events visible: a log line that
// names the user and the row, and parley_store_corrupt_runs_total. Every
// replay of that user's log through the row fails until it is dropped.
func (s *Server) readFailed(err error) {
	var bad *store.CorruptRunError
	if !errors.As(err, &bad) {
		return
	}
	s.metrics.CorruptRuns.Inc()
	s.log.Error("store: corrupt event run; replays of this user's log through it fail until `parley check --repair` (node stopped) drops it",
		"user_id", bad.UserID, "first_id", bad.FirstID, "last_id", bad.LastID, "err", bad.Err)
}

// eventLog adapts the store to the stream package's Log.
type eventLog struct {
	st     store.Store
	failed func(error) // told of read errors
}

// Bounds, After and Heads read outside a transaction (Store.Read), each a
// statement (After's second, for the messages it refers to, shows them as
// they are now anyway: they are emptied, never removed). On PostgreSQL
// that is two round trips fewer each, on every stream's opening, replay,
// catch-up and heartbeat check: a reconnect storm makes them by the
// thousand.
func (l eventLog) Bounds(ctx context.Context, userID string) (first, last int64, err error) {
	err = l.st.Read(ctx, func(tx *store.Tx) error {
		first, last, err = tx.LogBounds(userID)
		return err
	})
	return first, last, err
}

func (l eventLog) After(ctx context.Context, userID string, after int64, limit, maxBytes int) (evs []parley.Event, err error) {
	err = l.st.Read(ctx, func(tx *store.Tx) error {
		evs, err = tx.EventsAfterMax(userID, after, limit, maxBytes)
		return err
	})
	if err != nil {
		l.failed(err)
	}
	return evs, err
}

func (l eventLog) Heads(ctx context.Context, userIDs []string) (heads map[string]int64, err error) {
	err = l.st.Read(ctx, func(tx *store.Tx) error {
		heads, err = tx.LogHeads(userIDs)
		return err
	})
	return heads, err
}

// loadSecret returns the configured secret, or the one kept in the data dir,
// generating it on first start.
func loadSecret(cfg config.Config) ([]byte, error) {
	if cfg.JWTSecret != "" {
		if len(cfg.JWTSecret) < config.MinJWTSecret {
			return nil, fmt.Errorf("jwt-secret (--jwt-secret, PARLEY_JWT_SECRET) must be at least %d bytes, got %d", config.MinJWTSecret, len(cfg.JWTSecret))
		}
		return []byte(cfg.JWTSecret), nil
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(cfg.DataDir, "jwt-secret")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= 32 {
		return []byte(strings.TrimSpace(string(b))), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	secret := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("keep secret: %w", err)
	}
	return []byte(secret), nil
}

// reservedFiles is the room kept under the open-files limit for the
// database, the listener, requests in flight (a stream being opened holds
// two descriptors for a moment) and the requests that are refused with 503.
const reservedFiles = 512

// sessionCacheSize bounds the sessions kept in memory for requests (auth):
// about 600 bytes each for a typical user (30 MiB in all), more for long
// bios and external ids (up to about 2 KB).
const sessionCacheSize = 50_000

// streamCapacity is how many streams fit under the open-files limit.
func streamCapacity() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > 1<<30 {
		return 0
	}
	return max(64, int(lim.Cur)-reservedFiles)
}

func redact(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "…" + u[i:]
		}
	}
	return u
}
