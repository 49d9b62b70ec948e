package httpapi_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/hkdf"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/push"
	"github.com/parley-chat/parley/internal/servertest"
)

// browserSub is a push subscription as a browser makes it: its own P-256
// key pair and auth secret, and an endpoint at the test push service.
type browserSub struct {
	endpoint string
	key      *ecdh.PrivateKey
	auth     []byte
}

func newBrowserSub(t *testing.T, endpoint string) *browserSub {
	t.Helper()
	key, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	return &browserSub{endpoint: endpoint, key: key, auth: auth}
}

// json is the subscription as PushSubscription.toJSON() gives it.
func (b *browserSub) json() map[string]any {
	enc := base64.RawURLEncoding.EncodeToString
	return map[string]any{"endpoint": b.endpoint, "expirationTime": nil,
		"keys": map[string]string{"p256dh": enc(b.key.PublicKey().Bytes()), "auth": enc(b.auth)}}
}

// decrypt opens an aes128gcm body (RFC 8188) encrypted for this browser
// (RFC 8291) and strips its padding.
func (b *browserSub) decrypt(body []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("body shorter than its header")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if idlen != 65 || len(body) < 21+idlen {
		return nil, fmt.Errorf("key id of %d bytes, want the server's 65-byte public key", idlen)
	}
	if rs < 18 || len(body)-21-idlen > int(rs) {
		return nil, fmt.Errorf("record size %d for a %d-byte record: want one record", rs, len(body)-21-idlen)
	}
	serverPub, err := ecdh.P256().NewPublicKey(body[21 : 21+idlen])
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	secret, err := b.key.ECDH(serverPub)
	if err != nil {
		return nil, err
	}
	expand := func(secret, salt, info []byte, n int) []byte {
		out := make([]byte, n)
		if _, err := io.ReadFull(hkdf.New(sha256.New, secret, salt, info), out); err != nil {
			panic(err)
		}
		return out
	}
	keyInfo := append(append([]byte("WebPush: info\x00"), b.key.PublicKey().Bytes()...), serverPub.Bytes()...)
	ikm := expand(secret, b.auth, keyInfo, 32)
	cek := expand(ikm, salt, []byte("Content-Encoding: aes128gcm\x00"), 16)
	nonce := expand(ikm, salt, []byte("Content-Encoding: nonce\x00"), 12)
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, body[21+idlen:], nil)
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	// The last record ends with the delimiter 2, then zero padding.
	end := len(plain) - 1
	for end >= 0 && plain[end] == 0 {
		end--
	}
	if end < 0 || plain[end] != 2 {
		return nil, errors.New("no last-record delimiter")
	}
	return plain[:end], nil
}

// received is one push the test push service accepted and opened.
type received struct {
	path    string
	ttl     int
	urgency string
	payload push.Payload
	size    int
}

// pushService is a local push service (RFC 8030) that checks what Parley
// sends the way a real one does (VAPID JWT, RFC 8292) and decrypts it for
// the browser subscriptions it knows (RFC 8291). Paths under /gone/ answer
// 410, like an expired subscription.
type pushService struct {
	t       *testing.T
	srv     *httptest.Server
	subject string
	mu      sync.Mutex
	subs    map[string]*browserSub // by path
	vapid   string                 // the server's public key, once known
	got     chan received
	errs    chan error
}

func newPushService(t *testing.T, subject string) *pushService {
	ps := &pushService{t: t, subject: subject, subs: map[string]*browserSub{}, got: make(chan received, 16), errs: make(chan error, 16)}
	ps.srv = httptest.NewServer(http.HandlerFunc(ps.serve))
	t.Cleanup(ps.srv.Close)
	return ps
}

func (ps *pushService) sub(path string) *browserSub {
	b := newBrowserSub(ps.t, ps.srv.URL+path)
	ps.mu.Lock()
	ps.subs[path] = b
	ps.mu.Unlock()
	return b
}

func (ps *pushService) serve(w http.ResponseWriter, r *http.Request) {
	fail := func(format string, args ...any) {
		ps.errs <- fmt.Errorf(r.URL.Path+": "+format, args...)
		http.Error(w, "bad request", http.StatusBadRequest)
	}
	body, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodPost || r.Header.Get("Content-Encoding") != "aes128gcm" {
		fail("%s with Content-Encoding %q", r.Method, r.Header.Get("Content-Encoding"))
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get("TTL"))
	if err != nil || ttl < 1 {
		fail("TTL %q", r.Header.Get("TTL"))
		return
	}
	// Authorization: vapid t=<JWT>, k=<the server's public key>.
	auth := r.Header.Get("Authorization")
	tok, key, ok := strings.Cut(strings.TrimPrefix(auth, "vapid t="), ", k=")
	if !strings.HasPrefix(auth, "vapid t=") || !ok {
		fail("Authorization %q", auth)
		return
	}
	ps.mu.Lock()
	vapid := ps.vapid
	b := ps.subs[r.URL.Path]
	ps.mu.Unlock()
	if key != vapid {
		fail("k=%s, not the public key of /api/config (%s)", key, vapid)
		return
	}
	raw, err := base64.RawURLEncoding.DecodeString(key)
	if err != nil {
		fail("k: %v", err)
		return
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		fail("k: %v", err)
		return
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(ps.srv.URL), jwt.WithExpirationRequired())
	if err != nil {
		fail("VAPID JWT: %v", err)
		return
	}
	if exp, _ := claims.GetExpirationTime(); exp.After(time.Now().Add(24 * time.Hour)) {
		fail("VAPID JWT expires more than 24 h ahead: %v", exp)
		return
	}
	if claims["sub"] != ps.subject {
		fail("VAPID sub %v, want %s", claims["sub"], ps.subject)
		return
	}
	if b == nil {
		fail("no such subscription")
		return
	}
	plain, err := b.decrypt(body)
	if err != nil {
		fail("%v", err)
		return
	}
	var p push.Payload
	if err := json.Unmarshal(plain, &p); err != nil {
		fail("payload %q: %v", plain, err)
		return
	}
	ps.got <- received{path: r.URL.Path, ttl: ttl, urgency: r.Header.Get("Urgency"), payload: p, size: len(body)}
	if strings.HasPrefix(r.URL.Path, "/gone/") {
		w.WriteHeader(http.StatusGone)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// next waits for the next push, failing on anything the service refused.
func (ps *pushService) next(timeout time.Duration) (received, bool) {
	ps.t.Helper()
	select {
	case r := <-ps.got:
		return r, true
	case err := <-ps.errs:
		ps.t.Fatalf("push service: %v", err)
	case <-time.After(timeout):
	}
	return received{}, false
}

// none requires that no push arrives within d.
func (ps *pushService) none(d time.Duration, why string) {
	ps.t.Helper()
	if r, ok := ps.next(d); ok {
		ps.t.Fatalf("%s, yet a push came to %s: %+v", why, r.path, r.payload)
	}
}

func subscribe(t *testing.T, n *servertest.Node, token string, b map[string]any) *servertest.Response {
	t.Helper()
	return n.Do(t, "POST", "/api/push/subscription", token, b, nil)
}

// pushNode starts a node whose only push service is ps.
func pushNode(t *testing.T, ps *pushService, opts ...servertest.Option) *servertest.Node {
	t.Helper()
	opts = append([]servertest.Option{func(c *config.Config) {
		c.PushServices = []string{ps.srv.URL}
		c.PushSubject = ps.subject
	}}, opts...)
	n := servertest.Start(t, opts...)
	var cfg map[string]any
	n.Do(t, "GET", "/api/config", "", nil, &cfg)
	k, _ := cfg["push_public_key"].(string)
	if b, err := base64.RawURLEncoding.DecodeString(k); err != nil || len(b) != 65 || b[0] != 4 {
		t.Fatalf("push_public_key %q is not an uncompressed P-256 point", k)
	}
	ps.mu.Lock()
	ps.vapid = k
	ps.mu.Unlock()
	return n
}

// TestWebPushEndToEnd: a message to someone with no stream open reaches
// their subscription through the push service: VAPID-signed for that
// service's origin with the configured contact, encrypted so that only the
// browser's key opens it, padded to one size, with a TTL no longer than the
// session has left. Nobody gets a push for their own message, nor while a
// stream of theirs is open. A subscription the push service says is gone
// (410) is deleted, and logging out drops the session's subscription.
func TestWebPushEndToEnd(t *testing.T) {
	ps := newPushService(t, "mailto:ops@example.org")
	n := pushNode(t, ps)
	client := n.Register(t, "c", parley.RoleClient)
	pro := n.Register(t, "p", parley.RoleProfessional)
	n.Do(t, "PATCH", "/api/me", client.Token, map[string]any{"display_name": "Ann Client"}, nil)

	proSub := ps.sub("/ok/pro")
	if res := subscribe(t, n, pro.Token, proSub.json()); res.StatusCode != http.StatusCreated {
		t.Fatalf("subscribe: %d %s", res.StatusCode, res.Body)
	}
	if res := subscribe(t, n, pro.Token, proSub.json()); res.StatusCode != http.StatusOK {
		t.Fatalf("subscribe again: %d %s", res.StatusCode, res.Body)
	}
	var got map[string]any
	if res := n.Do(t, "GET", "/api/push/subscription", pro.Token, nil, &got); res.StatusCode != http.StatusOK ||
		got["endpoint"] != proSub.endpoint || len(got) != 2 {
		t.Fatalf("GET subscription: %d %s", res.StatusCode, res.Body)
	}
	clientSub := ps.sub("/ok/client")
	if res := subscribe(t, n, client.Token, clientSub.json()); res.StatusCode != http.StatusCreated {
		t.Fatalf("subscribe client: %d %s", res.StatusCode, res.Body)
	}

	var conv parley.Conversation
	n.Do(t, "POST", "/api/conversations", client.Token, map[string]any{"professional_id": pro.ID,
		"message": map[string]any{"body": "Hello doctor,   my results came back. " + strings.Repeat("Long text ", 20)}}, &conv)
	r, ok := ps.next(10 * time.Second)
	if !ok {
		t.Fatalf("no push for a message to someone with no stream open")
	}
	p := r.payload
	if r.path != "/ok/pro" || p.Type != parley.EventMessageCreated || p.ConversationID != conv.ID || p.Seq != 1 ||
		p.SenderID != client.ID || p.SenderName != "Ann Client" || p.MessageID == "" || p.Attachments != 0 {
		t.Fatalf("push %s: %+v", r.path, p)
	}
	if p.Preview == nil || !strings.HasPrefix(*p.Preview, "Hello doctor, my results came back. Long text") ||
		len([]rune(*p.Preview)) != push.PreviewChars+1 || !strings.HasSuffix(*p.Preview, "…") {
		t.Fatalf("preview %v: want the first %d characters, spaces folded", p.Preview, push.PreviewChars)
	}
	if r.urgency != "high" || r.ttl > 300 || r.size != 4096 {
		t.Fatalf("urgency %q, TTL %d (idle timeout 300 s), body %d bytes (want padded to 4096)", r.urgency, r.ttl, r.size)
	}
	ps.none(2500*time.Millisecond, "the client sent the message")

	// While the professional has a stream open, their messages reach it:
	// no push. The reply goes to the client, who has none open.
	s := n.OpenStream(t, pro.Token, -1)
	s.NextOf(t, parley.EventReady, 5*time.Second)
	res := n.Do(t, "POST", "/api/conversations/"+conv.ID+"/messages", pro.Token, map[string]any{"body": "Reply"}, nil)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("reply: %d", res.StatusCode)
	}
	if r, ok := ps.next(10 * time.Second); !ok || r.path != "/ok/client" || *r.payload.Preview != "Reply" {
		t.Fatalf("reply's push: %v %+v", ok, r)
	}
	n.Do(t, "POST", "/api/conversations/"+conv.ID+"/messages", client.Token, map[string]any{"body": "while you watch"}, nil)
	ps.none(2500*time.Millisecond, "the professional had a stream open")
	s.Close()

	// A second session of the professional subscribes at an endpoint the
	// push service says is gone; the first session logs out.
	pro2 := login(t, n, pro.Username)
	if res := subscribe(t, n, pro2, ps.sub("/gone/pro2").json()); res.StatusCode != http.StatusCreated {
		t.Fatalf("subscribe second session: %d %s", res.StatusCode, res.Body)
	}
	if res := n.Do(t, "POST", "/api/auth/logout", pro.Token, nil, nil); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	eventually(t, 5*time.Second, "the professional's stream to close", func() bool {
		return metric(t, n, "parley_streams_open") == 0
	})
	n.Do(t, "POST", "/api/conversations/"+conv.ID+"/messages", client.Token, map[string]any{"body": "are you there?"}, nil)
	if r, ok := ps.next(10 * time.Second); !ok || r.path != "/gone/pro2" {
		t.Fatalf("push after logout went to %q (ok %v), want only the live session's /gone/pro2", r.path, ok)
	}
	eventually(t, 5*time.Second, "the gone subscription to be deleted", func() bool {
		return n.Do(t, "GET", "/api/push/subscription", pro2, nil, nil).StatusCode == http.StatusNotFound
	})
	ps.none(1500*time.Millisecond, "the first session logged out")
}

// TestWebPushNoPreview: with push-preview off, a push says who wrote and
// where, never what.
func TestWebPushNoPreview(t *testing.T) {
	ps := newPushService(t, "https://ops.example.org")
	n := pushNode(t, ps, func(c *config.Config) { c.PushPreview = false })
	client := n.Register(t, "c", parley.RoleClient)
	pro := n.Register(t, "p", parley.RoleProfessional)
	if res := subscribe(t, n, pro.Token, ps.sub("/ok/pro").json()); res.StatusCode != http.StatusCreated {
		t.Fatalf("subscribe: %d %s", res.StatusCode, res.Body)
	}
	n.Do(t, "POST", "/api/conversations", client.Token, map[string]any{"professional_id": pro.ID,
		"message": map[string]any{"body": "confidential"}}, nil)
	r, ok := ps.next(10 * time.Second)
	if !ok || r.payload.Preview != nil || r.payload.SenderName != client.Username {
		t.Fatalf("push without preview: %v %+v", ok, r.payload)
	}
}

// TestWebPushSubscriptionRules: a subscription must point at an allowed
// push service over https (never an address the server would reach on the
// subscriber's say-so) and carry a P-256 key and a 16-byte auth secret.
// DELETE drops it; with push-services "none" there is no key and nothing
// to subscribe to.
func TestWebPushSubscriptionRules(t *testing.T) {
	n := servertest.Start(t) // the default push services
	u := n.Register(t, "p", parley.RoleProfessional)
	good := newBrowserSub(t, "https://fcm.googleapis.com/fcm/send/abc:def").json()
	with := func(endpoint string, keys map[string]string) map[string]any {
		b := map[string]any{"endpoint": endpoint, "keys": good["keys"]}
		if keys != nil {
			b["keys"] = keys
		}
		return b
	}
	for _, ep := range []string{
		"", "http://fcm.googleapis.com/fcm/send/x", "https://evil.example/push", "https://fcm.googleapis.com.evil.example/x",
		"http://169.254.169.254/latest/meta-data", "https://127.0.0.1/push", "https://user:pw@fcm.googleapis.com/x",
		"fcm.googleapis.com/x", "https://push.apple.com.evil.example/x", "https://fcm.googleapis.com/" + strings.Repeat("x", 2100),
	} {
		wantField(t, subscribe(t, n, u.Token, with(ep, nil)), "endpoint")
	}
	keys := good["keys"].(map[string]string)
	for field, bad := range map[string]map[string]string{
		"keys.p256dh": {"p256dh": "AAAA", "auth": keys["auth"]},
		"keys.auth":   {"p256dh": keys["p256dh"], "auth": base64.RawURLEncoding.EncodeToString(make([]byte, 8))},
	} {
		wantField(t, subscribe(t, n, u.Token, with("https://fcm.googleapis.com/fcm/send/x", bad)), field)
	}
	offCurve := make([]byte, 65)
	offCurve[0] = 4
	wantField(t, subscribe(t, n, u.Token, with("https://fcm.googleapis.com/fcm/send/x",
		map[string]string{"p256dh": base64.RawURLEncoding.EncodeToString(offCurve), "auth": keys["auth"]})), "keys.p256dh")
	for _, ep := range []string{"https://fcm.googleapis.com/fcm/send/x", "https://web.push.apple.com/QGx", "https://updates.push.services.mozilla.com/wpush/v2/x"} {
		if res := subscribe(t, n, u.Token, with(ep, nil)); res.StatusCode/100 != 2 {
			t.Fatalf("%s: %d %s", ep, res.StatusCode, res.Body)
		}
	}
	if res := n.Do(t, "DELETE", "/api/push/subscription", u.Token, nil, nil); res.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d", res.StatusCode)
	}
	wantError(t, n.Do(t, "GET", "/api/push/subscription", u.Token, nil, nil), http.StatusNotFound, "not_found")
	wantError(t, n.Do(t, "GET", "/api/push/subscription", "", nil, nil), http.StatusUnauthorized, "unauthorized")

	off := servertest.Start(t, func(c *config.Config) { c.PushServices = nil })
	var cfg map[string]any
	off.Do(t, "GET", "/api/config", "", nil, &cfg)
	if v, ok := cfg["push_public_key"]; !ok || v != nil {
		t.Fatalf("push off: push_public_key = %v (present %v), want null", v, ok)
	}
	v := off.Register(t, "p", parley.RoleProfessional)
	wantError(t, subscribe(t, off, v.Token, good), http.StatusForbidden, "forbidden")
}

// TestVAPIDKeysKept: the key pair is generated once and kept in the
// database: a restarted node (SQLite) or another node of the cluster
// (PostgreSQL) has the same public key, so subscriptions stay valid.
func TestVAPIDKeysKept(t *testing.T) {
	c := servertest.Config(t)
	key := func(n *servertest.Node) string {
		var cfg map[string]any
		n.Do(t, "GET", "/api/config", "", nil, &cfg)
		k, _ := cfg["push_public_key"].(string)
		return k
	}
	n1 := servertest.StartConfig(t, c)
	k1 := key(n1)
	var c2 = c
	if strings.HasPrefix(c.DatabaseURL, "postgres") {
		c2 = servertest.Peer(t, c)
	} else {
		n1.Stop()
	}
	if k2 := key(servertest.StartConfig(t, c2)); k1 == "" || k2 != k1 {
		t.Fatalf("public keys %q and %q, want one key kept", k1, k2)
	}
	// A configured key wins, and its public half is derived from it.
	priv, _ := ecdh.P256().GenerateKey(rand.Reader)
	c3 := servertest.Config(t)
	c3.VAPIDPrivateKey = base64.RawURLEncoding.EncodeToString(priv.Bytes())
	if k3 := key(servertest.StartConfig(t, c3)); k3 != base64.RawURLEncoding.EncodeToString(priv.PublicKey().Bytes()) {
		t.Fatalf("configured key: public %q", k3)
	}
}
