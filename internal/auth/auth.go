// Package auth is accounts and sessions: registration and login with bcrypt
// password hashes, HS256 tokens naming a server-side session, tokens the
// app Parley is part of signs for its own users (app.go, jwks.go), and the
// idle logout that expires sessions nobody is using.
package auth

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// Service issues and checks credentials.
type Service struct {
	Store       store.Store
	Secret      []byte
	IdleTimeout time.Duration // 0 = sessions never go idle
	TTL         time.Duration // lifetime of a token and its session
	Cost        int           // bcrypt cost
	// App checks the app's own tokens (SPEC §9.1); nil = only Parley's.
	App *AppTokens
	// touchEvery bounds how often a session's activity is written: activity
	// is kept to a tenth of the idle timeout instead of a write per request,
	// and not at all without one (nothing else reads it then). 0 = never.
	touchEvery time.Duration
	cache      *sessionCache // nil: every request reads its session
	tokens     *tokenCache   // Parley's tokens that verified

	dummyOnce sync.Once
	dummyHash []byte
}

// New returns a Service. cost is the bcrypt cost.
func New(st store.Store, secret []byte, idle, ttl time.Duration, cost int) *Service {
	touch := idle / 10
	return &Service{Store: st, Secret: secret, IdleTimeout: idle, TTL: ttl, Cost: cost, touchEvery: touch,
		tokens: newTokenCache(tokenCacheSize)}
}

// tokenCacheSize bounds the verified tokens kept (tokenCache): some 450
// bytes of heap each (measured), 22 MiB at most.
const tokenCacheSize = 50_000

// Grant is what register and login answer.
type Grant struct {
	User      *parley.User `json:"user"`
	Token     string       `json:"token"`
	ExpiresAt time.Time    `json:"expires_at"`
}

// Registration is the body of POST /api/auth/register.
type Registration struct {
	Username    string `json:"username"`
	Password    string `json:"password"`
	DisplayName string `json:"display_name"`
	Role        string `json:"role"`
}

var usernameRE = regexp.MustCompile(`^[a-z0-9_.-]{3,32}$`)

// Validate checks the SPEC's rules for a new account.
func (r *Registration) Validate() error {
	switch {
	case !usernameRE.MatchString(r.Username):
		return parley.Invalid("username", "username must be 3–32 of a-z 0-9 _ . -")
	case utf8.RuneCountInString(r.Password) < 8:
		return parley.Invalid("password", "password must be at least 8 characters")
	case len(r.Password) > 72:
		// bcrypt only reads 72 bytes; refusing more keeps two different
		// passwords from matching one hash.
		return parley.Invalid("password", "password must be at most 72 bytes")
	case r.Role != parley.RoleClient && r.Role != parley.RoleProfessional:
		return parley.Invalid("role", "role must be client or professional")
	}
	if strings.TrimSpace(r.DisplayName) != "" {
		if _, err := parley.DisplayName(r.DisplayName); err != nil {
			return err
		}
	}
	return nil
}

// NewUser checks a registration and returns the user it makes, with its
// password hashed, for the caller to store with tx.CreateUser.
func (s *Service) NewUser(r Registration) (*parley.User, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), s.Cost)
	if err != nil {
		return nil, fmt.Errorf("hash password: %w", err)
	}
	name := strings.TrimSpace(r.DisplayName)
	if name == "" {
		name = r.Username
	}
	return &parley.User{ID: parley.NewID("u"), Username: &r.Username, DisplayName: name, Role: r.Role, PasswordHash: hash, CreatedAt: store.Now()}, nil
}

// Register creates an account and logs it in.
func (s *Service) Register(ctx context.Context, r Registration) (*Grant, error) {
	u, err := s.NewUser(r)
	if err != nil {
		return nil, err
	}
	var g *Grant
	err = s.Store.Update(ctx, func(tx *store.Tx) error {
		if err := tx.CreateUser(u); err != nil {
			return err
		}
		g, err = s.startSession(tx, u)
		return err
	})
	return g, err
}

// errBadLogin is the one answer for a wrong username or password, so the
// answer does not tell whether the account exists.
var errBadLogin = parley.Errorf(parley.EUnauthorized, "invalid username or password")

// dummy returns the hash compared against when the user does not exist, so a
// login takes as long either way. It has the cost real hashes get: at any
// other cost the time would tell whether the account exists.
func (s *Service) dummy() []byte {
	s.dummyOnce.Do(func() {
		s.dummyHash, _ = bcrypt.GenerateFromPassword([]byte("parley-dummy-password"), s.Cost)
	})
	return s.dummyHash
}

// Login checks a password and starts a session.
func (s *Service) Login(ctx context.Context, username, password string) (*Grant, error) {
	var u *parley.User
	err := s.Store.View(ctx, func(tx *store.Tx) (err error) {
		u, err = tx.UserByUsername(username)
		return err
	})
	if err != nil && !errors.Is(err, parley.NotFound) {
		return nil, err
	}
	if u == nil || u.Username == nil {
		// An app's user has no password: the app signs them in.
		_ = bcrypt.CompareHashAndPassword(s.dummy(), []byte(password))
		return nil, errBadLogin
	}
	if bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(password)) != nil {
		return nil, errBadLogin
	}
	var g *Grant
	err = s.Store.Update(ctx, func(tx *store.Tx) (err error) {
		g, err = s.startSession(tx, u)
		return err
	})
	return g, err
}

func (s *Service) startSession(tx *store.Tx, u *parley.User) (*Grant, error) {
	return s.startSessionTTL(tx, u, s.TTL)
}

func (s *Service) startSessionTTL(tx *store.Tx, u *parley.User, ttl time.Duration) (*Grant, error) {
	now := store.Now()
	sess := &parley.Session{ID: parley.NewID("s"), UserID: u.ID, CreatedAt: now, LastActive: now, ExpiresAt: now.Add(ttl)}
	if err := tx.CreateSession(sess); err != nil {
		return nil, fmt.Errorf("create session: %w", err)
	}
	tok, err := s.sign(sess)
	if err != nil {
		return nil, err
	}
	return &Grant{User: u, Token: tok, ExpiresAt: sess.ExpiresAt}, nil
}

type claims struct {
	SessionID string `json:"sid"`
	jwt.RegisteredClaims
}

func (s *Service) sign(sess *parley.Session) (string, error) {
	c := claims{SessionID: sess.ID, RegisteredClaims: jwt.RegisteredClaims{
		Subject:   sess.UserID,
		IssuedAt:  jwt.NewNumericDate(sess.CreatedAt),
		ExpiresAt: jwt.NewNumericDate(sess.ExpiresAt),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(s.Secret)
}

var errUnauthorized = parley.Errorf(parley.EUnauthorized, "missing, invalid or expired credentials")

// Principal is an authenticated caller.
type Principal struct {
	User    *parley.User
	Session *parley.Session
}

// Authenticate checks a token: signature (HS256 only), expiry, and that its
// session is live and not idle. activity says whether this request counts as
// activity for the idle logout. A token whose signature Parley's secret
// does not verify is checked as the app's, when app tokens are configured
// (SPEC §9.1); one it verifies is Parley's, valid or not.
func (s *Service) Authenticate(ctx context.Context, token string, activity bool) (*Principal, error) {
	tc, ok := s.tokens.get(token, time.Now())
	if !ok {
		var c claims
		_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return s.Secret, nil },
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(tokenLeeway))
		if s.App != nil && (errors.Is(err, jwt.ErrTokenSignatureInvalid) || errors.Is(err, jwt.ErrTokenUnverifiable)) {
			return s.appPrincipal(ctx, token, activity)
		}
		if err != nil || c.SessionID == "" || c.Subject == "" {
			return nil, errUnauthorized
		}
		tc = tokenClaims{sessionID: c.SessionID, subject: c.Subject, expires: c.ExpiresAt.Time}
		if activity {
			// Only requests that count as activity keep the token: a
			// stream verifies its token once per connection, so for an
			// idle stream an entry would be memory and nothing else.
			s.tokens.put(token, tc)
		}
	}
	p, err := s.loadSession(ctx, tc.sessionID)
	if errors.Is(err, parley.NotFound) {
		return nil, errUnauthorized
	}
	if err != nil {
		return nil, err
	}
	if p.Session.UserID != tc.subject {
		return nil, errUnauthorized
	}
	return s.admit(ctx, p, time.Now(), activity)
}

// tokenLeeway lets a token signed on a node whose clock is a little ahead
// pass on another; the expiry that matters is the session's, which is
// checked against the store on every request.
const tokenLeeway = 30 * time.Second

// loadSession reads a session and its user; parley.NotFound if either is
// gone.
func (s *Service) loadSession(ctx context.Context, sessionID string) (*Principal, error) {
	now := time.Now()
	var mark uint64
	if s.cache != nil {
		if p, ok := s.cache.get(sessionID, now); ok {
			return p, nil
		}
		mark = s.cache.mark()
	}
	var p Principal
	err := s.Store.Read(ctx, func(tx *store.Tx) (err error) {
		p.Session, p.User, err = tx.SessionWithUser(sessionID)
		return err
	})
	if err != nil {
		return nil, err
	}
	// Login reads the hash itself; a request never needs it, and a cached
	// principal does not keep it, so no principal carries it.
	p.User.PasswordHash = nil
	if s.cache != nil {
		s.cache.put(&p, mark, now)
	}
	return &p, nil
}

// CacheSessions keeps up to max sessions, with their users, in memory for
// the requests that name them, and returns what the store must call with
// every committed change of sessions and users (store.ChangeHook). Only for
// a store no other process writes; call it before serving.
func (s *Service) CacheSessions(max int) store.ChangeHook {
	s.cache = newSessionCache(max, time.Minute)
	return s.cache.forget
}

// admit lets a principal in if its session is live and the account not
// erased, counting the request as activity if it is one.
func (s *Service) admit(ctx context.Context, p *Principal, now time.Time, activity bool) (*Principal, error) {
	if !s.Live(p.Session, now) || p.User.Erased {
		return nil, errUnauthorized
	}
	if activity && s.touchEvery > 0 && now.Sub(p.Session.LastActive) >= s.touchEvery {
		if err := s.Touch(ctx, p.Session.ID); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Live reports whether a session may still be used at now.
func (s *Service) Live(sess *parley.Session, now time.Time) bool {
	if sess.Revoked || !now.Before(sess.ExpiresAt) {
		return false
	}
	return s.IdleTimeout <= 0 || now.Sub(sess.LastActive) < s.IdleTimeout
}

// Touch marks the session active now.
func (s *Service) Touch(ctx context.Context, sessionID string) error {
	return s.Store.Update(ctx, func(tx *store.Tx) error { return tx.TouchSession(sessionID, store.Now()) })
}

// Logout revokes the session at once.
func (s *Service) Logout(ctx context.Context, sessionID string) error {
	return s.Store.Update(ctx, func(tx *store.Tx) error { return tx.RevokeSession(sessionID) })
}

// EndedBetween returns the sessions that ended in (from, to]: revoked,
// expired or idle for too long. A sweeper that asks for consecutive windows
// ends the streams of sessions ended on any node, at a cost that follows the
// number of sessions ending, not of streams open.
func (s *Service) EndedBetween(ctx context.Context, from, to time.Time) (ended []parley.Session, err error) {
	err = s.Store.View(ctx, func(tx *store.Tx) error {
		ended, err = tx.EndedBetween(from, to, s.IdleTimeout)
		return err
	})
	return ended, err
}
