package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
)

const appSecret = "fuzz-app-secret-fuzz-app-secret-fuzz-app-secret-fuzz-app-secret!"

// FuzzAppToken feeds arbitrary strings to Authenticate on a service that
// takes app tokens (HMAC, and an RSA key from a JWKS file). Only tokens
// the app signed can get in, so any success must be one of the seeded
// subjects; everything else is unauthorized and nothing else.
func FuzzAppToken(f *testing.F) {
	ctx := context.Background()
	db := mustOpen(f)
	s := auth.New(db, []byte(secret), time.Hour, time.Hour, 4)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: rsaKey.Public(), KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	path := filepath.Join(f.TempDir(), "jwks.json")
	if err := os.WriteFile(path, set, 0o600); err != nil {
		f.Fatal(err)
	}
	jwks := auth.NewJWKS(path, nil)
	jwks.Start(time.Second)
	f.Cleanup(jwks.Stop)
	s.App = &auth.AppTokens{Secret: []byte(appSecret), JWKS: jwks, Leeway: time.Minute}

	claims := func(sub string) jwt.MapClaims {
		return jwt.MapClaims{"sub": sub, "exp": time.Now().Add(time.Hour).Unix(), "name": "Fuzz", "parley_role": "client"}
	}
	hs, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("hs-user")).SignedString([]byte(appSecret))
	rt := jwt.NewWithClaims(jwt.SigningMethodRS256, claims("rs-user"))
	rt.Header["kid"] = "k1"
	rs, _ := rt.SignedString(rsaKey)
	for _, tok := range []string{hs, rs} {
		if p, err := s.Authenticate(ctx, tok, false); err != nil || p.User.ExternalID == nil {
			f.Fatalf("a seeded token is refused: %v", err)
		}
	}
	parts := strings.Split(rs, ".")
	for _, tok := range []string{hs, rs, hs + "x", rs[:len(rs)-2], parts[0] + "." + parts[1] + ".",
		"eyJhbGciOiJub25lIn0." + parts[1] + ".", "eyJhbGciOiJIUzI1NiIsImtpZCI6ImsxIn0." + parts[1] + "." + parts[2],
		"a.b.c", "", "{}", `{"payload":"x","signatures":[]}`} {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := s.Authenticate(ctx, token, false)
		if err != nil {
			if code := parley.ErrorCode(err); code != parley.EUnauthorized {
				t.Fatalf("Authenticate(%q) failed with %q (%v)", token, code, err)
			}
			return
		}
		if ext := p.User.ExternalID; ext == nil || (*ext != "hs-user" && *ext != "rs-user") {
			t.Fatalf("Authenticate(%q) let in %+v", token, p.User)
		}
	})
}

// FuzzParseJWKS: any document parses to public, asymmetric signing keys
// or an error, never a panic; no symmetric key ever comes out of it.
func FuzzParseJWKS(f *testing.F) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	good, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: rsaKey, KeyID: "private"}, {Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "oct"}}})
	for _, s := range []string{string(good), `{"keys":[]}`, `{"keys":[{"kty":"oct","k":"AAAA"}]}`, `{"keys":[{"kty":"EC","crv":"P-256","x":"","y":""}]}`, `[]`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := auth.ParseJWKS(b)
		if err != nil {
			return
		}
		for _, k := range keys {
			if !k.IsPublic() {
				t.Fatalf("a private key came out: %+v", k.KeyID)
			}
			if _, sym := k.Key.([]byte); sym {
				t.Fatalf("a symmetric key came out")
			}
		}
	})
}
