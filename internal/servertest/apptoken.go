package servertest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// AppSecret is the HMAC key of app tokens in tests (PARLEY_AUTH_SECRET).
const AppSecret = "app-secret-app-secret-app-secret-app-secret-app-secret-app-secret"

// AppKey is one signing key of a test app: the app side of SPEC §9.1.
// Tokens are signed with golang-jwt, a library Parley does not verify
// with (it verifies with go-jose), so the two check each other.
type AppKey struct {
	Kid     string
	Alg     string // RS256, ES256, EdDSA, HS256
	Private crypto.Signer
}

// NewAppKey makes a fresh key for alg (RS256, ES256 or EdDSA).
func NewAppKey(tb testing.TB, alg, kid string) *AppKey {
	tb.Helper()
	var k crypto.Signer
	var err error
	switch alg {
	case "RS256":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "EdDSA":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		tb.Fatalf("NewAppKey: unknown alg %s", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return &AppKey{Kid: kid, Alg: alg, Private: k}
}

// Sign signs claims with the key (HS256 with AppSecret when k is nil).
func (k *AppKey) Sign(tb testing.TB, claims jwt.MapClaims) string {
	tb.Helper()
	if k == nil {
		return SignHS(tb, "HS256", []byte(AppSecret), claims)
	}
	method := jwt.GetSigningMethod(k.Alg)
	tok := jwt.NewWithClaims(method, claims)
	if k.Kid != "" {
		tok.Header["kid"] = k.Kid
	}
	s, err := tok.SignedString(k.Private)
	if err != nil {
		tb.Fatalf("sign %s: %v", k.Alg, err)
	}
	return s
}

// SignHS signs claims with an HMAC algorithm and key.
func SignHS(tb testing.TB, alg string, key []byte, claims jwt.MapClaims) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(jwt.GetSigningMethod(alg), claims).SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// JWK is the key's public half as a JWK.
func (k *AppKey) JWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.Kid, Algorithm: k.Alg, Use: "sig"}
}

// KeyServer serves a JWKS over HTTP and counts the reads.
type KeyServer struct {
	URL string

	mu     sync.Mutex
	keys   []*AppKey
	status int
	reads  atomic.Int64
}

// ServeKeys starts a JWKS server with keys until the test ends.
func ServeKeys(tb testing.TB, keys ...*AppKey) *KeyServer {
	tb.Helper()
	ks := &KeyServer{keys: keys, status: http.StatusOK}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ks.reads.Add(1)
		ks.mu.Lock()
		status := ks.status
		set := jose.JSONWebKeySet{}
		for _, k := range ks.keys {
			set.Keys = append(set.Keys, k.JWK())
		}
		ks.mu.Unlock()
		if status != http.StatusOK {
			http.Error(w, "unavailable", status)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	tb.Cleanup(srv.Close)
	ks.URL = srv.URL + "/.well-known/jwks.json"
	return ks
}

// SetKeys replaces the keys served (a rotation).
func (ks *KeyServer) SetKeys(keys ...*AppKey) {
	ks.mu.Lock()
	ks.keys = keys
	ks.mu.Unlock()
}

// SetStatus makes the server answer with status (200 = serve the keys).
func (ks *KeyServer) SetStatus(status int) {
	ks.mu.Lock()
	ks.status = status
	ks.mu.Unlock()
}

// Reads is how many requests the server answered.
func (ks *KeyServer) Reads() int64 { return ks.reads.Load() }
