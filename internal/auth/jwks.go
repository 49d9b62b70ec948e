package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// JWKS is the app's public keys (SPEC §9.1), read from an https://, http://
// URL or a file, kept in memory and read again: in the background, and when
// a token names a kid the set does not hold, at most once per MinRefetch.
// A read that fails, or yields no usable key, keeps the last good keys.
//
// Keys are parsed by go-jose (jose.JSONWebKey), never by hand. Only public
// keys of the types an asymmetric algorithm can use are kept: a symmetric
// ("oct") key in the set is ignored, so no token is ever checked with HMAC
// against something published as a public key.
type JWKS struct {
	// Source is the URL or file path.
	Source string
	// MinRefetch is the least time between two reads for unknown kids:
	// 30s (SPEC §9.1), so a flood of forged kids cannot hammer the app's
	// key server. Tests shorten it.
	MinRefetch time.Duration
	// Refresh is how often the keys are read in the background: 10m.
	Refresh time.Duration
	Client  *http.Client
	Logger  *slog.Logger

	mu       sync.Mutex
	keys     []jose.JSONWebKey
	lastRead time.Time     // start of the last read, successful or not
	inflight chan struct{} // closed when the read in progress ends
	loaded   bool

	reads atomic.Int64
	stop  chan struct{}
	done  chan struct{}
}

// NewJWKS returns a key set read from source, with the SPEC's defaults.
// Start reads it the first time.
func NewJWKS(source string, logger *slog.Logger) *JWKS {
	if logger == nil {
		logger = slog.Default()
	}
	return &JWKS{
		Source: source, MinRefetch: 30 * time.Second, Refresh: 10 * time.Minute,
		Client: &http.Client{Timeout: 10 * time.Second}, Logger: logger,
	}
}

// Start reads the keys once, waiting up to timeout, then keeps them fresh
// in the background until Stop. A first read that fails is not fatal: the
// node serves Parley's own tokens and refuses the app's until a read
// succeeds, which is retried every MinRefetch.
func (j *JWKS) Start(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	ok := j.read(ctx, true)
	cancel()
	j.stop, j.done = make(chan struct{}), make(chan struct{})
	go j.loop(ok)
}

// Stop ends the background reads.
func (j *JWKS) Stop() {
	if j.stop == nil {
		return
	}
	close(j.stop)
	<-j.done
}

func (j *JWKS) loop(ok bool) {
	defer close(j.done)
	for {
		wait := j.Refresh
		if !ok {
			wait = j.MinRefetch
		}
		t := time.NewTimer(wait)
		select {
		case <-j.stop:
			t.Stop()
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		ok = j.read(ctx, true)
		cancel()
	}
}

// Reads is how many times the set was read, for tests and diagnostics.
func (j *JWKS) Reads() int64 { return j.reads.Load() }

// Keys returns the public keys that may verify a token signed with alg and
// naming kid ("" = none named: every key fitting alg). A kid the set does
// not hold makes it read the set again, unless it was read less than
// MinRefetch ago; a read in progress is waited for.
func (j *JWKS) Keys(ctx context.Context, kid string, alg jose.SignatureAlgorithm) []any {
	if keys := j.match(kid, alg); len(keys) > 0 || kid == "" {
		return keys
	}
	j.read(ctx, false)
	return j.match(kid, alg)
}

func (j *JWKS) match(kid string, alg jose.SignatureAlgorithm) []any {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []any
	for _, k := range j.keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != string(alg) {
			continue
		}
		if KeyFits(alg, k.Key) {
			out = append(out, k.Key)
		}
	}
	return out
}

// KeyFits reports whether key is of the type alg verifies with: the pin
// that keeps a token from choosing how it is checked. HMAC algorithms fit
// no public key.
func KeyFits(alg jose.SignatureAlgorithm, key any) bool {
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		k, ok := key.(*rsa.PublicKey)
		return ok && k.N.BitLen() >= 2048
	case jose.ES256:
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve == elliptic.P256()
	case jose.ES384:
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve == elliptic.P384()
	case jose.ES512:
		k, ok := key.(*ecdsa.PublicKey)
		return ok && k.Curve == elliptic.P521()
	case jose.EdDSA:
		_, ok := key.(ed25519.PublicKey)
		return ok
	}
	return false
}

// read reads the set unless background is false and the last read began
// less than MinRefetch ago. It reports whether the keys are good.
func (j *JWKS) read(ctx context.Context, background bool) bool {
	j.mu.Lock()
	if ch := j.inflight; ch != nil {
		j.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		return true
	}
	if !background && time.Since(j.lastRead) < j.MinRefetch {
		j.mu.Unlock()
		return true
	}
	j.lastRead = time.Now()
	ch := make(chan struct{})
	j.inflight = ch
	j.mu.Unlock()

	j.reads.Add(1)
	keys, err := j.fetch(ctx)
	j.mu.Lock()
	if err == nil {
		j.keys, j.loaded = keys, true
	}
	j.inflight = nil
	j.mu.Unlock()
	close(ch)
	if err != nil {
		j.Logger.Warn("app token keys: read failed, keeping the last good keys", "source", j.Source, "err", err)
		return false
	}
	return true
}

// maxJWKS bounds a key set's size: a real one is a few KB.
const maxJWKS = 1 << 20

func (j *JWKS) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	var b []byte
	var err error
	if strings.HasPrefix(j.Source, "https://") || strings.HasPrefix(j.Source, "http://") {
		b, err = j.get(ctx)
	} else {
		b, err = os.ReadFile(j.Source)
	}
	if err != nil {
		return nil, err
	}
	return ParseJWKS(b)
}

func (j *JWKS) get(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.Source, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	res, err := j.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", res.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(res.Body, maxJWKS+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJWKS {
		return nil, errors.New("key set larger than 1 MiB")
	}
	return b, nil
}

// ParseJWKS returns the usable public keys of a JWKS document. Each key is
// parsed by go-jose on its own, so one key of a type it does not know (a
// newer curve, say) does not hide the others; private parts are dropped,
// and symmetric keys and keys for encryption are left out. A document with
// no usable key is an error, so that a bad read keeps the last good keys.
func ParseJWKS(b []byte) ([]jose.JSONWebKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("key set is not JSON: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range doc.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || !k.Valid() {
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if _, symmetric := k.Key.([]byte); symmetric {
			continue
		}
		if !k.IsPublic() {
			k = k.Public()
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("key set holds no usable public key")
	}
	return keys, nil
}
