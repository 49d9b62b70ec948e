package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// AppTokens checks tokens that the app Parley is part of signs for its own
// users (SPEC §9.1): HMAC with a shared secret, or an asymmetric signature
// by a key of the app's JWKS. The algorithm is pinned to the kind of key:
// HS256/384/512 only ever verify with Secret, the others only with a JWKS
// key of the matching type (KeyFits), and "none" never.
type AppTokens struct {
	// Secret is the HMAC key; nil = HS* tokens are refused.
	Secret []byte
	// JWKS holds the app's public keys; nil = asymmetric tokens are refused.
	JWKS *JWKS
	// Issuer and Audience, when set, must match iss and one of aud.
	Issuer, Audience string
	// RoleClaim names the claim holding client or professional; parley_role.
	RoleClaim string
	// DefaultRole is the role when the claim is absent; client.
	DefaultRole string
	// Leeway is the clock skew allowed for nbf and iat; 60s.
	Leeway time.Duration
}

// AppClaims is what a verified app token says.
type AppClaims struct {
	Subject string
	// Name is the display name from the name claim, nil when absent or
	// not a usable name.
	Name *string
	// Role is the role claim, "" when absent.
	Role    string
	ID      string // jti, "" when absent
	Expiry  time.Time
	Issuer  string
	RawHash string // hash of the whole token, the session key without a jti
}

// MaxSubject is the longest sub an app token may carry, in characters.
const MaxSubject = 128

var (
	hmacAlgs       = []jose.SignatureAlgorithm{jose.HS256, jose.HS384, jose.HS512}
	asymmetricAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}
)

// errAppToken is the cause of a refused app token, for logs and tests; the
// caller only ever sees unauthorized.
type errAppToken string

func (e errAppToken) Error() string { return "app token: " + string(e) }

// Verify checks an app token at now and returns its claims. Every failure
// is an error; none of them has touched the store.
func (a *AppTokens) Verify(ctx context.Context, token string, now time.Time) (*AppClaims, error) {
	var algs []jose.SignatureAlgorithm
	if len(a.Secret) > 0 {
		algs = append(algs, hmacAlgs...)
	}
	if a.JWKS != nil {
		algs = append(algs, asymmetricAlgs...)
	}
	if len(algs) == 0 {
		return nil, errAppToken("no app keys are configured")
	}
	// go-jose refuses any algorithm not listed, "none" included, and
	// JWE or JSON-serialised forms.
	tok, err := josejwt.ParseSigned(token, algs)
	if err != nil {
		return nil, fmt.Errorf("app token: %w", err)
	}
	if len(tok.Headers) != 1 {
		return nil, errAppToken("one signature expected")
	}
	h := tok.Headers[0]
	alg := jose.SignatureAlgorithm(h.Algorithm)
	var keys []any
	if isHMAC(alg) {
		keys = []any{a.Secret}
	} else {
		keys = a.JWKS.Keys(ctx, h.KeyID, alg)
	}
	var std josejwt.Claims
	var extra map[string]any
	verified := false
	for _, k := range keys {
		std, extra = josejwt.Claims{}, nil
		if tok.Claims(k, &std, &extra) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, errAppToken("no key verifies the signature")
	}
	return a.check(std, extra, now, token)
}

func isHMAC(alg jose.SignatureAlgorithm) bool {
	return alg == jose.HS256 || alg == jose.HS384 || alg == jose.HS512
}

// check applies the SPEC's rules to verified claims.
func (a *AppTokens) check(std josejwt.Claims, extra map[string]any, now time.Time, token string) (*AppClaims, error) {
	leeway := a.Leeway
	switch {
	case !validSubject(std.Subject):
		return nil, errAppToken("sub must be 1–128 characters")
	case std.Expiry == nil:
		return nil, errAppToken("exp is required")
	case !now.Before(std.Expiry.Time()):
		return nil, errAppToken("expired")
	case std.NotBefore != nil && now.Add(leeway).Before(std.NotBefore.Time()):
		return nil, errAppToken("not valid yet (nbf)")
	case std.IssuedAt != nil && now.Add(leeway).Before(std.IssuedAt.Time()):
		return nil, errAppToken("issued in the future (iat)")
	case a.Issuer != "" && std.Issuer != a.Issuer:
		return nil, errAppToken("wrong iss")
	case a.Audience != "" && !std.Audience.Contains(a.Audience):
		return nil, errAppToken("wrong aud")
	}
	c := &AppClaims{Subject: std.Subject, ID: std.ID, Expiry: std.Expiry.Time(), Issuer: std.Issuer, RawHash: hashToken(token)}
	if v, ok := extra[a.roleClaim()]; ok && v != nil {
		role, _ := v.(string)
		if role != parley.RoleClient && role != parley.RoleProfessional {
			return nil, errAppToken("the role claim must be client or professional")
		}
		c.Role = role
	}
	if v, ok := extra["name"].(string); ok {
		// A token cannot be answered with a 400: what would be refused
		// elsewhere is stripped, and a name with nothing left is ignored.
		if name := parley.StripDisplayName(v); name != "" {
			c.Name = &name
		}
	}
	return c, nil
}

func (a *AppTokens) roleClaim() string {
	if a.RoleClaim == "" {
		return "parley_role"
	}
	return a.RoleClaim
}

func (a *AppTokens) defaultRole() string {
	if a.DefaultRole == "" {
		return parley.RoleClient
	}
	return a.DefaultRole
}

// validSubject applies the rule for an app's user id (a token's sub, the
// {external_id} of the server API): 1–128 characters, valid UTF-8, no
// control characters (PostgreSQL cannot store NUL, and an id is no place
// for line breaks).
func validSubject(s string) bool {
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > MaxSubject {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// ValidExternalID reports whether s can be an app's user id.
func ValidExternalID(s string) bool { return validSubject(s) }

var sessionEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return sessionEncoding.EncodeToString(sum[:])
}

// sessionID is the server-side session of an app token: keyed by its jti
// (with the issuer and subject, so two users' jtis cannot meet), else by
// the token itself. Every request with the token finds the same session,
// so logging it out or letting it go idle ends the token.
func (c *AppClaims) sessionID() string {
	if c.ID == "" {
		return "sa_" + strings.ToLower(c.RawHash[:40])
	}
	sum := sha256.Sum256([]byte("jti\x00" + c.Issuer + "\x00" + c.Subject + "\x00" + c.ID))
	return "sa_" + strings.ToLower(sessionEncoding.EncodeToString(sum[:])[:40])
}

// appPrincipal authenticates an app token: verified, then its session,
// created with the user (or updating them) the first time the token is
// seen. A token whose session was logged out, went idle or expired stays
// refused.
func (s *Service) appPrincipal(ctx context.Context, token string, activity bool) (*Principal, error) {
	now := time.Now()
	c, err := s.App.Verify(ctx, token, now)
	if err != nil {
		return nil, errUnauthorized
	}
	sid := c.sessionID()
	p, err := s.loadSession(ctx, sid)
	if errors.Is(err, parley.NotFound) {
		p, err = s.startAppSession(ctx, c, sid)
	}
	if parley.ErrorCode(err) == parley.EConflict {
		return nil, errUnauthorized // being erased
	}
	if err != nil {
		return nil, err
	}
	if p.User.ExternalID == nil || *p.User.ExternalID != c.Subject {
		return nil, errUnauthorized
	}
	return s.admit(ctx, p, now, activity)
}

// startAppSession provisions the token's user and opens its session. Two
// requests (two nodes) seeing the token first at once race on the unique
// external id and session id; the loser reads what the winner wrote.
func (s *Service) startAppSession(ctx context.Context, c *AppClaims, sid string) (*Principal, error) {
	for range 3 {
		var p Principal
		err := s.Store.Update(ctx, func(tx *store.Tx) error {
			u, _, err := s.upsertAppUser(tx, c.Subject, c.Name, c.Role)
			if err != nil {
				return err
			}
			now := store.Now()
			sess := &parley.Session{ID: sid, UserID: u.ID, CreatedAt: now, LastActive: now, ExpiresAt: c.Expiry}
			if err := tx.CreateSession(sess); err != nil {
				return err
			}
			p = Principal{User: u, Session: sess}
			return nil
		})
		if errors.Is(err, store.ErrDuplicate) {
			p, err := s.loadSession(ctx, sid)
			if errors.Is(err, parley.NotFound) {
				continue // the user was the duplicate: try again, now finding them
			}
			return p, err
		}
		if err != nil {
			return nil, err
		}
		return &p, nil
	}
	return nil, parley.Errorf(parley.EUnavailable, "could not start the session; try again")
}

// upsertAppUser creates the app's user with externalID, or updates the name
// and role of the existing one where they are given (name nil, role "":
// kept; on creation the external id and the default role stand in).
func (s *Service) upsertAppUser(tx *store.Tx, externalID string, name *string, role string) (u *parley.User, created bool, err error) {
	u, err = tx.UserByExternalID(externalID)
	if errors.Is(err, parley.NotFound) {
		u = &parley.User{ID: parley.NewID("u"), ExternalID: &externalID, Role: role, CreatedAt: store.Now()}
		if u.Role == "" {
			u.Role = s.appDefaultRole()
		}
		u.DisplayName = externalID
		if name != nil {
			u.DisplayName = *name
		} else if dn := parley.StripDisplayName(externalID); dn != "" {
			u.DisplayName = dn
		} else {
			u.DisplayName = "User"
		}
		return u, true, tx.CreateUser(u)
	}
	if err != nil {
		return nil, false, err
	}
	if u.Erased {
		// Being erased: no new session, no change, until it is gone.
		return nil, false, parley.Errorf(parley.EConflict, "the user is being erased")
	}
	changed := false
	if name != nil && *name != u.DisplayName {
		u.DisplayName, changed = *name, true
	}
	if role != "" && role != u.Role {
		u.Role, changed = role, true
	}
	if changed {
		err = tx.UpdateUser(u.ID, u.DisplayName, u.Role)
	}
	return u, false, err
}

func (s *Service) appDefaultRole() string {
	if s.App == nil {
		return parley.RoleClient
	}
	return s.App.defaultRole()
}

// UpsertAppUser is PUT /api/server/users/{external_id}: the user a token
// with that sub maps to, created or updated. created tells which.
func (s *Service) UpsertAppUser(ctx context.Context, externalID string, name *string, role string) (u *parley.User, created bool, err error) {
	if !ValidExternalID(externalID) {
		return nil, false, parley.Invalid("external_id", "external_id must be 1–%d characters without control characters", MaxSubject)
	}
	if role != parley.RoleClient && role != parley.RoleProfessional {
		return nil, false, parley.Invalid("role", "role must be client or professional")
	}
	if name != nil {
		n, err := parley.DisplayName(*name)
		if err != nil {
			return nil, false, err
		}
		name = &n
	}
	for range 3 {
		err = s.Store.Update(ctx, func(tx *store.Tx) (err error) {
			u, created, err = s.upsertAppUser(tx, externalID, name, role)
			return err
		})
		if !errors.Is(err, store.ErrDuplicate) {
			return u, created, err
		}
	}
	return nil, false, parley.Errorf(parley.EUnavailable, "could not save the user; try again")
}

// AppUser returns the app's user with that external id, or parley.NotFound.
func (s *Service) AppUser(ctx context.Context, externalID string) (u *parley.User, err error) {
	err = s.Store.View(ctx, func(tx *store.Tx) error {
		u, err = tx.UserByExternalID(externalID)
		return err
	})
	return u, err
}

// LogoutUser ends every session of the user at once and returns their ids,
// for the streams to be told.
func (s *Service) LogoutUser(ctx context.Context, userID string) (ids []string, err error) {
	err = s.Store.Update(ctx, func(tx *store.Tx) error {
		ids, err = tx.RevokeUserSessions(userID)
		return err
	})
	return ids, err
}

// Mint starts a session for an existing user and returns its Parley token
// (POST /api/server/tokens). ttl 0 is the lifetime of a login.
func (s *Service) Mint(ctx context.Context, userID string, ttl time.Duration) (*Grant, error) {
	if ttl <= 0 {
		ttl = s.TTL
	}
	var g *Grant
	err := s.Store.Update(ctx, func(tx *store.Tx) error {
		u, err := tx.UserByID(userID)
		if err != nil {
			return err
		}
		g, err = s.startSessionTTL(tx, u, ttl)
		return err
	})
	return g, err
}
