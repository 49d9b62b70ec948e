// Package config holds the server's settings, their documented defaults, and
// how they are read from flags and PARLEY_* environment variables.
package config

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is every setting of a Parley node. The zero value is not useful: start
// from Default.
type Config struct {
	Addr        string // listen address; default 127.0.0.1:8080
	DataDir     string // embedded database and generated secret; default ./parley-data
	DatabaseURL string // "" = SQLite in DataDir; postgres://… for PostgreSQL
	Bus         string // "" = in-process; redis://… or nats://…
	JWTSecret   string // "" = generated once and kept in DataDir
	APIKeys     []string
	CORSOrigins []string

	IdleTimeout       time.Duration // 5m; 0 = off
	Heartbeat         time.Duration // 15s
	Retry             time.Duration // the SSE retry: hint; 1s
	PresenceGrace     time.Duration // 10s
	CallTimeout       time.Duration // 30s
	MaxStreamsPerUser int           // 16
	MaxStreams        int           // 0 = derived from the open-files limit
	MaxDiagStreams    int           // open /api/diag/stream streams (no credentials needed); 32; 0 = no cap
	// BodyTimeout bounds the time a request body takes to arrive, from the
	// end of its headers: 30s. Uploads get it plus time for the largest
	// attachment at 32 KiB/s. 0 = none.
	BodyTimeout time.Duration
	// MaxConnsPerIP caps the connections one address (an IPv6 /64) holds open at once,
	// streams aside (they have their own caps): 256; trusted proxies are
	// exempt; 0 = no cap.
	MaxConnsPerIP int
	// PublishInFlight bounds the bytes of deliveries that POST /api/publish
	// calls hold at once (payload × recipients): 64 MiB. Beyond it a publish
	// waits up to a second, then gets 503 with Retry-After. 0 = no bound.
	PublishInFlight int64
	// PublishWait is how long a publish waits for room under
	// PublishInFlight: 1s. Not a flag; tests shorten it.
	PublishWait time.Duration
	RateLimit   float64 // requests/s per user, burst twice that; 20; 0 = off

	RetentionAge    time.Duration // 720h (30 days)
	RetentionEvents int           // 10000; events are kept while within either bound
	RetentionEvery  time.Duration // how often old events are pruned; 10m

	BodyLimit        int64 // 128 KiB
	PublishBodyLimit int64 // 1 MiB
	MaxBodyChars     int   // message body limit after trimming; 4000
	StreamBuffer     int   // events queued per stream before it is cut as too slow; 256
	WriteTimeout     time.Duration
	PasswordCost     int // bcrypt cost; 10. Lower only for load tests.
	SessionTTL       time.Duration

	LogLevel string // debug, info, warn, error
	// Pprof serves /debug/pprof/ on a listener of its own at PprofAddr,
	// never on the public one; false.
	Pprof bool
	// PprofAddr is where /debug/pprof/ is served when Pprof is set; setting
	// it turns pprof on. Default 127.0.0.1:6060 (loopback: profiles show
	// memory contents and cost CPU).
	PprofAddr string

	// TrustedProxies are the reverse proxies (CIDRs or addresses) whose
	// X-Forwarded-For, X-Real-IP and X-Forwarded-Proto are believed: only
	// when the TCP peer is one of them does the client address come from
	// those headers. Default none: the headers are ignored.
	TrustedProxies []string
	// CookieSecure decides the session cookie's Secure attribute: auto
	// (default: when the request came over TLS, directly or through a
	// trusted proxy's X-Forwarded-Proto: https), always or never.
	CookieSecure string

	// Inside an existing app (SPEC §9.1): its tokens and its registration.
	// AuthSecret is the HMAC key of the app's tokens; "" = none. HS256 needs
	// 32 bytes or more, HS384 48 and HS512 64 (RFC 7518 §3.2).
	AuthSecret      string
	AuthJWKSURL     string // the app's public keys: https://…, http://… or a file path; "" = none
	AuthIssuer      string // when set, an app token's iss must match
	AuthAudience    string // when set, an app token's aud must contain it
	AuthRoleClaim   string // claim holding client or professional; parley_role
	AuthDefaultRole string // role when the claim is absent; client
	Registration    string // open (default) or closed: POST /api/auth/register answers 403
	// AuthJWKSRefetch is the least time between two reads of the JWKS for
	// unknown kids: 30s. Not a flag: the SPEC fixes it; tests shorten it.
	AuthJWKSRefetch time.Duration

	// Reliability across nodes (see deploy/README.md).

	// PresenceLease is how long a node's share of the cross-node presence
	// counts lives unless the node renews it (every third of it): a node
	// that dies stops counting after at most this long, and its users go
	// offline a grace period later unless they reconnected elsewhere; 15s.
	// Every node of a cluster must use the same value.
	PresenceLease time.Duration

	// Demo seeds an empty database with two accounts and a conversation
	// between them at start; a database with users refuses it. false.
	Demo bool

	// The chat app's files, calls and notifications (docs/chat.md).
	MaxAttachment int64  // largest attachment upload in bytes; 10 MiB
	ICEServers    string // calls' STUN/TURN servers: a JSON array of RTCIceServer, served in /api/config; "" = none
	// PushServices are the hosts Web Push endpoints may point at: the push
	// services of Chrome, Firefox, Safari and Edge by default; "*." matches
	// subdomains, "*" any https host, an entry with a scheme (http://host:port)
	// that exact origin; empty = no Web Push.
	PushServices    []string
	PushSubject     string // VAPID contact (mailto: or https:); default the project's URL
	PushPreview     bool   // put a message's first words in its push; true
	VAPIDPrivateKey string // base64url P-256 key; "" = generated once and kept in the database

	// Webhooks to the app's backend (docs/webhooks.md).
	WebhookURL    string   // where webhooks are POSTed; "" = none
	WebhookSecret string   // whsec_<base64> signing key; required with a URL
	WebhookEvents []string // types sent; default all (WebhookTypes)
	// WebhookUnreadAfter is the delay of message.unread; 2m, 0 = never.
	WebhookUnreadAfter time.Duration
	// WebhookMaxAge is how long a delivery is retried before it is kept as
	// failed; 24h.
	WebhookMaxAge time.Duration
	// WebhookRetryDelays are the waits after each failed attempt, the last
	// repeated; 5s, 5m, 30m, 2h, 5h, 10h. Tests shorten them.
	WebhookRetryDelays []time.Duration
	// WebhookLease is how long a node owns a webhook it claimed; another
	// node sends it after that if this one died mid-delivery; 1m. Tests
	// shorten it.
	WebhookLease time.Duration
}

// WebhookTypes are the webhook types (SPEC §9.3), the default of
// WebhookEvents.
var WebhookTypes = []string{"conversation.created", "message.created", "message.updated",
	"message.deleted", "call.missed", "message.unread"}

// DefaultWebhookRetryDelays are the waits between delivery attempts.
var DefaultWebhookRetryDelays = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour}

// DefaultPushServices are the browsers' own push services.
var DefaultPushServices = []string{
	"fcm.googleapis.com",                // Chrome, Edge on Android, Opera, Brave, Samsung Internet
	"android.googleapis.com",            // older Chrome subscriptions
	"updates.push.services.mozilla.com", // Firefox
	"*.push.apple.com",                  // Safari (web.push.apple.com)
	"*.notify.windows.com",              // Edge on Windows
}

// DefaultPushSubject is the VAPID contact when none is set. Apple's push
// service refuses placeholders (localhost, .invalid); operators should set
// their own address.
const DefaultPushSubject = "https://github.com/parley-chat/parley"

// DefaultPprofAddr is where pprof listens when turned on without an address.
const DefaultPprofAddr = "127.0.0.1:6060"

// Session cookie Secure settings.
const (
	CookieSecureAuto   = "auto"
	CookieSecureAlways = "always"
	CookieSecureNever  = "never"
)

// Registration settings.
const (
	RegistrationOpen   = "open"
	RegistrationClosed = "closed"
)

// Default returns the documented defaults.
func Default() Config {
	return Config{
		Addr:               "127.0.0.1:8080",
		DataDir:            "./parley-data",
		IdleTimeout:        5 * time.Minute,
		Heartbeat:          15 * time.Second,
		Retry:              time.Second,
		PresenceGrace:      10 * time.Second,
		CallTimeout:        30 * time.Second,
		MaxStreamsPerUser:  16,
		MaxDiagStreams:     32,
		BodyTimeout:        30 * time.Second,
		MaxConnsPerIP:      256,
		PublishInFlight:    64 << 20,
		PublishWait:        time.Second,
		RateLimit:          20,
		RetentionAge:       30 * 24 * time.Hour,
		RetentionEvents:    10000,
		RetentionEvery:     10 * time.Minute,
		BodyLimit:          128 << 10,
		PublishBodyLimit:   1 << 20,
		MaxBodyChars:       4000,
		StreamBuffer:       256,
		WriteTimeout:       10 * time.Second,
		PasswordCost:       10,
		SessionTTL:         30 * 24 * time.Hour,
		LogLevel:           "info",
		AuthRoleClaim:      "parley_role",
		AuthDefaultRole:    "client",
		Registration:       RegistrationOpen,
		AuthJWKSRefetch:    30 * time.Second,
		PresenceLease:      15 * time.Second,
		MaxAttachment:      10 << 20,
		PushServices:       append([]string(nil), DefaultPushServices...),
		PushSubject:        DefaultPushSubject,
		PushPreview:        true,
		WebhookEvents:      append([]string(nil), WebhookTypes...),
		WebhookUnreadAfter: 2 * time.Minute,
		WebhookMaxAge:      24 * time.Hour,
		WebhookRetryDelays: append([]time.Duration(nil), DefaultWebhookRetryDelays...),
		WebhookLease:       time.Minute,
		PprofAddr:          DefaultPprofAddr,
		CookieSecure:       CookieSecureAuto,
	}
}

// Parse fills a Config from args and the environment. A flag wins over its
// PARLEY_* variable, which wins over the default.
//
// -h or --help writes the flags, with their variables and defaults, to usage
// and returns flag.ErrHelp. Every other error names the flag or variable at
// fault.
func Parse(args []string, getenv func(string) string, usage io.Writer) (Config, error) {
	c := Default()
	fs := flagSet(&c)
	// A bad value is reported by the setting that carries it, in the form
	// it was given: the flag's own error names neither.
	var bad error
	fs.VisitAll(func(f *flag.Flag) { f.Value = &checked{Value: f.Value, name: f.Name, bad: &bad} })

	// Environment variables are applied as if given first, so flags override them.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(EnvName(f.Name)); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s: %w", EnvName(f.Name), err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	bad = nil
	if err := fs.Parse(args); err != nil {
		switch {
		case errors.Is(err, flag.ErrHelp):
			if usage != nil {
				writeFlags(usage, fs)
			}
			return c, err
		case bad != nil:
			return c, bad
		}
		// Unknown flags and missing values: the flag package's message
		// names the flag already.
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q (settings are flags: --name=value)", fs.Arg(0))
	}
	return c, c.Validate()
}

// flagSet registers every setting of c as a flag. Its PARLEY_* variable is
// derived from the flag's name (EnvName).
func flagSet(c *Config) *flag.FlagSet {
	fs := flag.NewFlagSet("parley serve", flag.ContinueOnError)
	// Parse reports errors itself and help is written by writeFlags, so the
	// flag package writes nothing.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory of the embedded database and generated secret")
	fs.StringVar(&c.DatabaseURL, "database-url", c.DatabaseURL, "postgres://… to use PostgreSQL instead of the embedded database")
	fs.StringVar(&c.Bus, "bus", c.Bus, "redis://… or nats://… to run several nodes; empty = in-process")
	fs.StringVar(&c.JWTSecret, "jwt-secret", c.JWTSecret, "token signing secret; empty = generated and kept in the data dir")
	fs.Func("api-keys", "comma-separated API keys for /api/publish", listInto(&c.APIKeys))
	fs.Func("cors-origins", "comma-separated allowed CORS origins", listInto(&c.CORSOrigins))
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "log out sessions idle this long (0 = off)")
	fs.DurationVar(&c.Heartbeat, "heartbeat", c.Heartbeat, "interval of the stream's ': ping' comment")
	fs.DurationVar(&c.Retry, "retry", c.Retry, "reconnect delay suggested to EventSource")
	fs.DurationVar(&c.PresenceGrace, "presence-grace", c.PresenceGrace, "delay before a user with no stream is shown offline")
	fs.DurationVar(&c.CallTimeout, "call-timeout", c.CallTimeout, "ringing time before a call is missed")
	fs.IntVar(&c.MaxStreamsPerUser, "max-streams-per-user", c.MaxStreamsPerUser, "open streams allowed per user")
	fs.IntVar(&c.MaxStreams, "max-streams", c.MaxStreams, "open streams allowed per process (0 = from the open-files limit)")
	fs.DurationVar(&c.BodyTimeout, "body-timeout", c.BodyTimeout, "time a request body may take to arrive (uploads get more, by size); 0 = none")
	fs.Var((*byteSize)(&c.PublishInFlight), "publish-in-flight", "bytes of deliveries (payload × recipients) publishes may hold at once; beyond, 503 after a second; 0 = no bound")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "connections one client address (an IPv6 /64) may hold open at once, streams aside; trusted proxies exempt; 0 = no cap")
	fs.IntVar(&c.MaxDiagStreams, "max-diag-streams", c.MaxDiagStreams, "open /api/diag/stream test streams allowed per process (0 = no cap)")
	fs.Float64Var(&c.RateLimit, "rate-limit", c.RateLimit, "requests/s per user, burst twice that (0 = off)")
	fs.DurationVar(&c.RetentionAge, "retention-age", c.RetentionAge, "keep events at least this long")
	fs.IntVar(&c.RetentionEvents, "retention-events", c.RetentionEvents, "keep at least this many newest events per user")
	fs.DurationVar(&c.RetentionEvery, "retention-every", c.RetentionEvery, "how often old events are pruned")
	fs.Int64Var(&c.BodyLimit, "body-limit", c.BodyLimit, "request body limit in bytes")
	fs.Int64Var(&c.PublishBodyLimit, "publish-body-limit", c.PublishBodyLimit, "request body limit of /api/publish in bytes")
	fs.IntVar(&c.MaxBodyChars, "max-body-chars", c.MaxBodyChars, "message body limit in characters after trimming")
	fs.IntVar(&c.StreamBuffer, "stream-buffer", c.StreamBuffer, "events queued per stream before a slow reader is cut")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", c.WriteTimeout, "deadline of one write to a stream")
	fs.IntVar(&c.PasswordCost, "password-cost", c.PasswordCost, "bcrypt cost (4–31); lower only for load tests")
	fs.DurationVar(&c.SessionTTL, "session-ttl", c.SessionTTL, "lifetime of a token and its session")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error")
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve /debug/pprof/ on its own listener (--pprof-addr), never the public one")
	fs.Var(pprofAddr{&c.PprofAddr, &c.Pprof}, "pprof-addr", "listen address of /debug/pprof/ (setting it turns pprof on)")
	fs.Func("trusted-proxies", "comma-separated CIDRs or addresses of reverse proxies whose X-Forwarded-For/-Proto and X-Real-IP are believed", listInto(&c.TrustedProxies))
	fs.StringVar(&c.CookieSecure, "cookie-secure", c.CookieSecure, "session cookie's Secure attribute: auto (when the request came over TLS), always or never")
	fs.StringVar(&c.AuthSecret, "auth-secret", c.AuthSecret, "HMAC key of the app's own tokens (HS256/384/512)")
	fs.StringVar(&c.AuthJWKSURL, "auth-jwks-url", c.AuthJWKSURL, "the app's public keys as a JWKS: https://…, http://… or a file path")
	fs.StringVar(&c.AuthIssuer, "auth-issuer", c.AuthIssuer, "required iss of the app's tokens")
	fs.StringVar(&c.AuthAudience, "auth-audience", c.AuthAudience, "required aud of the app's tokens")
	fs.StringVar(&c.AuthRoleClaim, "auth-role-claim", c.AuthRoleClaim, "claim of the app's tokens holding client or professional")
	fs.StringVar(&c.AuthDefaultRole, "auth-default-role", c.AuthDefaultRole, "role of the app's users whose token has no role claim")
	fs.StringVar(&c.Registration, "registration", c.Registration, "open, or closed to refuse POST /api/auth/register")
	fs.DurationVar(&c.PresenceLease, "presence-lease", c.PresenceLease, "with several nodes, how long a node's presence counts outlive it unless renewed")
	fs.BoolVar(&c.Demo, "demo", c.Demo, "on an empty database, create a professional and a client with a conversation, and print how to sign in")
	fs.Var((*byteSize)(&c.MaxAttachment), "max-attachment", "largest attachment upload")
	fs.StringVar(&c.ICEServers, "ice-servers", c.ICEServers, "STUN/TURN servers for calls: a JSON array of RTCIceServer objects")
	fs.Func("push-services", "comma-separated hosts Web Push endpoints may use (*.suffix, *, http://host:port; none = no Web Push; default the browsers' push services)", pushServicesInto(&c.PushServices))
	fs.StringVar(&c.PushSubject, "push-subject", c.PushSubject, "VAPID contact of this server's operator: mailto:… or https://…")
	fs.BoolVar(&c.PushPreview, "push-preview", c.PushPreview, "include the first words of a message in its Web Push notification")
	fs.StringVar(&c.VAPIDPrivateKey, "vapid-private-key", c.VAPIDPrivateKey, "Web Push key (base64url P-256); empty = generated once and kept in the database")
	fs.StringVar(&c.WebhookURL, "webhook-url", c.WebhookURL, "where webhooks are POSTed (http:// or https://); empty = no webhooks")
	fs.StringVar(&c.WebhookSecret, "webhook-secret", c.WebhookSecret, "webhook signing key, whsec_<base64>; required with --webhook-url")
	fs.Func("webhook-events", "comma-separated webhook types to send (default all: "+strings.Join(WebhookTypes, ",")+")", listInto(&c.WebhookEvents))
	fs.DurationVar(&c.WebhookUnreadAfter, "webhook-unread-after", c.WebhookUnreadAfter, "delay before message.unread for a message still unread (0 = never)")
	fs.DurationVar(&c.WebhookMaxAge, "webhook-max-age", c.WebhookMaxAge, "how long a webhook delivery is retried before it is kept as failed")
	fs.Func("webhook-retry-delays", "comma-separated waits after each failed webhook attempt, the last repeated (default 5s,5m,30m,2h,5h,10h; tests shorten them)", durationsInto(&c.WebhookRetryDelays))
	fs.DurationVar(&c.WebhookLease, "webhook-lease", c.WebhookLease, "with several nodes, how long a node owns a webhook it is sending before another may take it over (tests shorten it)")
	return fs
}

// durationsInto parses a comma-separated list of positive durations.
func durationsInto(dst *[]time.Duration) func(string) error {
	return func(s string) error {
		var out []time.Duration
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part == "" {
				continue
			}
			d, err := time.ParseDuration(part)
			if err != nil || d <= 0 {
				return fmt.Errorf("%q is not a positive duration", part)
			}
			out = append(out, d)
		}
		if len(out) == 0 {
			return fmt.Errorf("at least one delay is required")
		}
		*dst = out
		return nil
	}
}

// validWebhooks checks the webhook settings.
func (c *Config) validWebhooks() error {
	for _, t := range c.WebhookEvents {
		if !slices.Contains(WebhookTypes, t) {
			return fmt.Errorf("webhook-events (--webhook-events, PARLEY_WEBHOOK_EVENTS): unknown type %q (known: %s)", t, strings.Join(WebhookTypes, ", "))
		}
	}
	switch {
	case c.WebhookUnreadAfter < 0:
		return fmt.Errorf("webhook-unread-after (--webhook-unread-after, PARLEY_WEBHOOK_UNREAD_AFTER) must not be negative")
	case c.WebhookLease < time.Second:
		return fmt.Errorf("webhook-lease (--webhook-lease, PARLEY_WEBHOOK_LEASE) must be at least 1s")
	case c.WebhookMaxAge <= 0:
		return fmt.Errorf("webhook-max-age (--webhook-max-age, PARLEY_WEBHOOK_MAX_AGE) must be positive")
	case c.WebhookURL == "":
		return nil
	}
	u, err := url.Parse(c.WebhookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook-url (--webhook-url, PARLEY_WEBHOOK_URL) must be an http:// or https:// URL")
	}
	if c.WebhookSecret == "" {
		return fmt.Errorf("webhook-secret (--webhook-secret, PARLEY_WEBHOOK_SECRET) is required with webhook-url")
	}
	key, ok := strings.CutPrefix(c.WebhookSecret, "whsec_")
	if b, err := base64.StdEncoding.DecodeString(key); !ok || err != nil || len(b) < 16 {
		return fmt.Errorf("webhook-secret (--webhook-secret, PARLEY_WEBHOOK_SECRET) must be whsec_ followed by the base64 of at least 16 random bytes")
	}
	return nil
}

// Validate rejects settings the server cannot run with.
func (c *Config) Validate() error {
	switch {
	case c.Heartbeat <= 0:
		return fmt.Errorf("heartbeat (--heartbeat, PARLEY_HEARTBEAT) must be positive")
	case c.IdleTimeout < 0:
		return fmt.Errorf("idle-timeout (--idle-timeout, PARLEY_IDLE_TIMEOUT) must not be negative")
	case c.MaxStreamsPerUser < 1:
		return fmt.Errorf("max-streams-per-user (--max-streams-per-user, PARLEY_MAX_STREAMS_PER_USER) must be at least 1")
	case c.BodyTimeout < 0:
		return fmt.Errorf("body-timeout (--body-timeout, PARLEY_BODY_TIMEOUT) must not be negative")
	case c.PublishInFlight < 0:
		return fmt.Errorf("publish-in-flight (--publish-in-flight, PARLEY_PUBLISH_IN_FLIGHT) must not be negative")
	case c.MaxConnsPerIP < 0:
		return fmt.Errorf("max-conns-per-ip (--max-conns-per-ip, PARLEY_MAX_CONNS_PER_IP) must not be negative")
	case c.MaxDiagStreams < 0:
		return fmt.Errorf("max-diag-streams (--max-diag-streams, PARLEY_MAX_DIAG_STREAMS) must not be negative")
	case c.RateLimit < 0:
		return fmt.Errorf("rate-limit (--rate-limit, PARLEY_RATE_LIMIT) must not be negative")
	case c.RetentionEvents < 0 || c.RetentionAge < 0:
		return fmt.Errorf("retention bounds (--retention-events, --retention-age) must not be negative")
	case c.PasswordCost < 4 || c.PasswordCost > 31:
		return fmt.Errorf("password-cost (--password-cost, PARLEY_PASSWORD_COST) must be within 4..31")
	case c.PresenceLease < 300*time.Millisecond:
		return fmt.Errorf("presence-lease (--presence-lease, PARLEY_PRESENCE_LEASE) must be at least 300ms")
	case c.StreamBuffer < 1:
		return fmt.Errorf("stream-buffer (--stream-buffer, PARLEY_STREAM_BUFFER) must be at least 1")
	case c.BodyLimit < 1024 || c.PublishBodyLimit < 1024:
		return fmt.Errorf("body limits (--body-limit, --publish-body-limit) must be at least 1 KiB")
	case c.MaxAttachment < 1:
		return fmt.Errorf("max-attachment (--max-attachment, PARLEY_MAX_ATTACHMENT) must be at least 1 byte")
	case c.PushSubject != "" && !strings.HasPrefix(c.PushSubject, "mailto:") && !strings.HasPrefix(c.PushSubject, "https://"):
		return fmt.Errorf("push-subject (--push-subject, PARLEY_PUSH_SUBJECT) must start with mailto: or https://")
	case !slices.Contains([]string{"debug", "info", "warn", "error"}, strings.ToLower(c.LogLevel)):
		return fmt.Errorf("log-level (--log-level, PARLEY_LOG_LEVEL) must be debug, info, warn or error, not %q", c.LogLevel)
	case c.Registration != RegistrationOpen && c.Registration != RegistrationClosed:
		return fmt.Errorf("registration (--registration, PARLEY_REGISTRATION) must be open or closed")
	case c.AuthDefaultRole != "client" && c.AuthDefaultRole != "professional":
		return fmt.Errorf("auth-default-role (--auth-default-role, PARLEY_AUTH_DEFAULT_ROLE) must be client or professional")
	case c.AuthSecret != "" && len(c.AuthSecret) < 32:
		// HS256 keys shorter than the hash are guessable offline from
		// any one token.
		return fmt.Errorf("auth-secret (--auth-secret, PARLEY_AUTH_SECRET) must be at least 32 characters")
	case c.AuthSecret != "" && c.AuthSecret == c.JWTSecret:
		// A token verifying with Parley's secret is Parley's (SPEC §9.1):
		// with one secret for both, the app's tokens would never be its.
		return fmt.Errorf("auth-secret must differ from jwt-secret")
	case c.Bus != "" && c.JWTSecret == "":
		// A generated secret is per node: a token from one node would be
		// refused by the others.
		return fmt.Errorf("bus: several nodes must sign tokens with one secret; set jwt-secret (PARLEY_JWT_SECRET) on every node")
	}
	if err := c.validWebhooks(); err != nil {
		return err
	}
	if c.CookieSecure != CookieSecureAuto && c.CookieSecure != CookieSecureAlways && c.CookieSecure != CookieSecureNever {
		return fmt.Errorf("cookie-secure (--cookie-secure, PARLEY_COOKIE_SECURE) must be auto, always or never, not %q", c.CookieSecure)
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < MinJWTSecret {
		// HS256 with a short key can be brute-forced offline from any one
		// token, and then anyone can sign in as anyone.
		return fmt.Errorf("jwt-secret (--jwt-secret, PARLEY_JWT_SECRET) must be at least %d bytes, got %d; generate one with: openssl rand -hex 32 (or leave it unset to have one generated and kept in the data dir)", MinJWTSecret, len(c.JWTSecret))
	}
	if _, err := ParsePrefixes(c.TrustedProxies); err != nil {
		return err
	}
	if _, err := ParseICEServers(c.ICEServers); err != nil {
		return err
	}
	return nil
}

// MinJWTSecret is the shortest signing secret accepted, in bytes: the size
// of the HS256 hash.
const MinJWTSecret = 32

// ParsePrefixes reads --trusted-proxies: each entry a CIDR (10.0.0.0/8) or a
// single address (127.0.0.1, ::1).
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted-proxies (--trusted-proxies, PARLEY_TRUSTED_PROXIES): %q is neither a CIDR nor an IP address", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// FromEnv is Parse with the process environment.
func FromEnv(args []string, usage io.Writer) (Config, error) {
	return Parse(args, os.Getenv, usage)
}

// EnvName is the PARLEY_* variable of a flag: PARLEY_ and the flag's name in
// capitals with - as _ (idle-timeout: PARLEY_IDLE_TIMEOUT).
func EnvName(flagName string) string {
	return "PARLEY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// WriteFlags writes every setting to w as --help shows it: the flag, its
// variable, what it does and its default.
func WriteFlags(w io.Writer) {
	c := Default()
	writeFlags(w, flagSet(&c))
}

func writeFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name := "--" + f.Name
		if k := kind(f.Value); k != "boolean" {
			name += " " + k
		}
		def := ""
		switch {
		case f.DefValue == "" || f.DefValue == "[]":
			// no default worth printing
		case kind(f.Value) == "boolean" && f.DefValue == "false":
		case kind(f.Value) == "duration":
			def = " (default " + shortDuration(f.DefValue) + ")"
		default:
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(w, "  %s  %s\n      %s%s\n", name, EnvName(f.Name), f.Usage, def)
	})
}

// checked wraps a flag's value so that a bad value is reported as what the
// setting wants ("invalid duration"), and, when given as a flag, by the
// flag's name; the flag package only says "parse error".
type checked struct {
	flag.Value
	name string
	bad  *error // where a flag's error is kept for Parse
}

func (v *checked) Set(s string) error {
	if err := v.Value.Set(s); err != nil {
		err = fmt.Errorf("invalid %s %q%s", kind(v.Value), s, hint(kind(v.Value)))
		*v.bad = fmt.Errorf("--%s: %w", v.name, err)
		return err
	}
	return nil
}

// IsBoolFlag keeps boolean flags usable without a value (--pprof).
func (v *checked) IsBoolFlag() bool {
	b, ok := v.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// pprofAddr is --pprof-addr: an address, whose setting turns pprof on.
type pprofAddr struct {
	addr *string
	on   *bool
}

func (v pprofAddr) String() string {
	if v.addr == nil {
		return ""
	}
	return *v.addr
}

func (v pprofAddr) Get() any { return v.String() }

func (v pprofAddr) Set(s string) error {
	*v.addr = strings.TrimSpace(s)
	*v.on = *v.addr != ""
	return nil
}

// kind names what a flag's value must be.
func kind(v flag.Value) string {
	if c, ok := v.(*checked); ok {
		v = c.Value
	}
	g, ok := v.(flag.Getter)
	if !ok {
		return "list" // the comma-separated settings, made with fs.Func
	}
	switch g.Get().(type) {
	case time.Duration:
		return "duration"
	case bool:
		return "boolean"
	case int, int64, uint, uint64:
		return "integer"
	case float64:
		return "number"
	case byteSize:
		return "size"
	}
	return "string"
}

// shortDuration drops the zero units time.Duration.String keeps: 5m0s is
// written 5m, 720h0m0s 720h.
func shortDuration(s string) string {
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func hint(kind string) string {
	switch kind {
	case "duration":
		return " (a number with a unit: 30s, 5m, 1h30m)"
	case "boolean":
		return " (true or false)"
	case "size":
		return " (bytes, or a number with KiB, MiB or GiB: 10MiB)"
	}
	return ""
}

func listInto(dst *[]string) func(string) error {
	return func(s string) error {
		*dst = nil
		for _, part := range strings.Split(s, ",") {
			if part = strings.TrimSpace(part); part != "" {
				*dst = append(*dst, part)
			}
		}
		return nil
	}
}

// byteSize is a size in bytes, written and read with a KiB, MiB or GiB
// suffix where one fits (10MiB), or as a plain number of bytes.
type byteSize int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	for _, u := range sizeUnits {
		if *b != 0 && int64(*b)%u.mult == 0 {
			return strconv.FormatInt(int64(*b)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *byteSize) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64/mult {
		return errors.New("want a number of bytes, optionally with KiB, MiB or GiB")
	}
	*b = byteSize(n * mult)
	return nil
}

// Get implements flag.Getter.
func (b *byteSize) Get() any { return *b }

// pushServicesInto is listInto where "none" means no Web Push at all (an
// empty variable would mean "not set").
func pushServicesInto(dst *[]string) func(string) error {
	list := listInto(dst)
	return func(s string) error {
		if strings.TrimSpace(s) == "none" {
			*dst = []string{}
			return nil
		}
		return list(s)
	}
}

// ICEServer is one RTCIceServer as WebRTC takes it.
type ICEServer struct {
	URLs       json.RawMessage `json:"urls"`
	Username   *string         `json:"username,omitempty"`
	Credential *string         `json:"credential,omitempty"`
}

// ParseICEServers checks ice-servers (a JSON array of RTCIceServer) the way
// a browser would, so that a mistake stops the server at start with a clear
// message instead of failing every call: each needs urls (a string or a
// non-empty array of strings) with the stun:, stuns:, turn: or turns:
// scheme, and a turn(s): server needs username and credential. It returns
// the array compacted; "" is an empty array.
func ParseICEServers(s string) (json.RawMessage, error) {
	if strings.TrimSpace(s) == "" {
		return json.RawMessage("[]"), nil
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("ice-servers (--ice-servers, PARLEY_ICE_SERVERS): "+format, args...)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var servers []ICEServer
	if err := dec.Decode(&servers); err != nil {
		return nil, bad("want a JSON array of {\"urls\", \"username\", \"credential\"} objects: %v", err)
	}
	if dec.More() {
		return nil, bad("unexpected data after the array")
	}
	if servers == nil {
		return nil, bad("want a JSON array, not null")
	}
	for i, srv := range servers {
		var urls []string
		var one string
		if err := json.Unmarshal(srv.URLs, &one); err == nil {
			urls = []string{one}
		} else if err := json.Unmarshal(srv.URLs, &urls); err != nil || len(urls) == 0 {
			return nil, bad("server %d: urls must be a string or a non-empty array of strings", i)
		}
		turn := false
		for _, u := range urls {
			scheme, _, ok := strings.Cut(u, ":")
			switch {
			case !ok || len(u) == len(scheme)+1:
				return nil, bad("server %d: %q is not a STUN or TURN URL", i, u)
			case scheme == "turn" || scheme == "turns":
				turn = true
			case scheme != "stun" && scheme != "stuns":
				return nil, bad("server %d: %q must start with stun:, stuns:, turn: or turns:", i, u)
			}
		}
		if turn && (srv.Username == nil || srv.Credential == nil) {
			return nil, bad("server %d: a TURN server needs username and credential", i)
		}
	}
	var out bytes.Buffer
	if err := json.Compact(&out, []byte(s)); err != nil {
		return nil, bad("%v", err)
	}
	return out.Bytes(), nil
}
