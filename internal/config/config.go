// Package config holds the server's settings, their documented defaults, and
// how they are read from flags and PARLEY_* environment variables.
package config

import (
	"flag"
	"fmt"
	"io"
	"os"
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
	RateLimit         float64       // requests/s per user, burst twice that; 20; 0 = off

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
	Pprof    bool   // serve /debug/pprof/ on the main listener

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
}

// Registration settings.
const (
	RegistrationOpen   = "open"
	RegistrationClosed = "closed"
)

// Default returns the documented defaults of SPEC §7.
func Default() Config {
	return Config{
		Addr:              "127.0.0.1:8080",
		DataDir:           "./parley-data",
		IdleTimeout:       5 * time.Minute,
		Heartbeat:         15 * time.Second,
		Retry:             time.Second,
		PresenceGrace:     10 * time.Second,
		CallTimeout:       30 * time.Second,
		MaxStreamsPerUser: 16,
		RateLimit:         20,
		RetentionAge:      30 * 24 * time.Hour,
		RetentionEvents:   10000,
		RetentionEvery:    10 * time.Minute,
		BodyLimit:         128 << 10,
		PublishBodyLimit:  1 << 20,
		MaxBodyChars:      4000,
		StreamBuffer:      256,
		WriteTimeout:      10 * time.Second,
		PasswordCost:      10,
		SessionTTL:        30 * 24 * time.Hour,
		LogLevel:          "info",
		AuthRoleClaim:     "parley_role",
		AuthDefaultRole:   "client",
		Registration:      RegistrationOpen,
		AuthJWKSRefetch:   30 * time.Second,
		PresenceLease:     15 * time.Second,
	}
}

// Parse fills a Config from args and the environment. A flag wins over its
// PARLEY_* variable, which wins over the default.
func Parse(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c := Default()
	fs := flag.NewFlagSet("parley serve", flag.ContinueOnError)
	fs.SetOutput(stderr)

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
	fs.BoolVar(&c.Pprof, "pprof", c.Pprof, "serve /debug/pprof/")
	fs.StringVar(&c.AuthSecret, "auth-secret", c.AuthSecret, "HMAC key of the app's own tokens (HS256/384/512)")
	fs.StringVar(&c.AuthJWKSURL, "auth-jwks-url", c.AuthJWKSURL, "the app's public keys as a JWKS: https://…, http://… or a file path")
	fs.StringVar(&c.AuthIssuer, "auth-issuer", c.AuthIssuer, "required iss of the app's tokens")
	fs.StringVar(&c.AuthAudience, "auth-audience", c.AuthAudience, "required aud of the app's tokens")
	fs.StringVar(&c.AuthRoleClaim, "auth-role-claim", c.AuthRoleClaim, "claim of the app's tokens holding client or professional")
	fs.StringVar(&c.AuthDefaultRole, "auth-default-role", c.AuthDefaultRole, "role of the app's users whose token has no role claim")
	fs.StringVar(&c.Registration, "registration", c.Registration, "open, or closed to refuse POST /api/auth/register")
	fs.DurationVar(&c.PresenceLease, "presence-lease", c.PresenceLease, "with several nodes, how long a node's presence counts outlive it unless renewed")

	// Environment variables are applied as if given first, so flags override them.
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		name := "PARLEY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" && envErr == nil {
			if err := fs.Set(f.Name, v); err != nil {
				envErr = fmt.Errorf("%s: %w", name, err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return c, c.Validate()
}

// Validate rejects settings the server cannot run with.
func (c *Config) Validate() error {
	switch {
	case c.Heartbeat <= 0:
		return fmt.Errorf("heartbeat must be positive")
	case c.IdleTimeout < 0:
		return fmt.Errorf("idle-timeout must not be negative")
	case c.MaxStreamsPerUser < 1:
		return fmt.Errorf("max-streams-per-user must be at least 1")
	case c.RateLimit < 0:
		return fmt.Errorf("rate-limit must not be negative")
	case c.RetentionEvents < 0 || c.RetentionAge < 0:
		return fmt.Errorf("retention bounds must not be negative")
	case c.PasswordCost < 4 || c.PasswordCost > 31:
		return fmt.Errorf("password-cost must be within 4..31")
	case c.PresenceLease < 300*time.Millisecond:
		return fmt.Errorf("presence-lease must be at least 300ms")
	case c.StreamBuffer < 1:
		return fmt.Errorf("stream-buffer must be at least 1")
	case c.BodyLimit < 1024 || c.PublishBodyLimit < 1024:
		return fmt.Errorf("body limits must be at least 1 KiB")
	case c.Registration != RegistrationOpen && c.Registration != RegistrationClosed:
		return fmt.Errorf("registration must be open or closed")
	case c.AuthDefaultRole != "client" && c.AuthDefaultRole != "professional":
		return fmt.Errorf("auth-default-role must be client or professional")
	case c.AuthSecret != "" && len(c.AuthSecret) < 32:
		// HS256 keys shorter than the hash are guessable offline from
		// any one token.
		return fmt.Errorf("auth-secret must be at least 32 characters")
	case c.AuthSecret != "" && c.AuthSecret == c.JWTSecret:
		// A token verifying with Parley's secret is Parley's (SPEC §9.1):
		// with one secret for both, the app's tokens would never be its.
		return fmt.Errorf("auth-secret must differ from jwt-secret")
	case c.Bus != "" && c.JWTSecret == "":
		// A generated secret is per node: a token from one node would be
		// refused by the others.
		return fmt.Errorf("bus: several nodes must sign tokens with one secret; set jwt-secret (PARLEY_JWT_SECRET) on every node")
	}
	return nil
}

// FromEnv is Parse with the process environment.
func FromEnv(args []string, stderr io.Writer) (Config, error) {
	return Parse(args, os.Getenv, stderr)
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
