package webhook_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
	"github.com/parley-chat/parley/internal/webhook"
)

// testSecret is a whsec_ key as an operator would generate it.
var testSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("parley-webhook-test-key-32-bytes"))

// delivery is one request the receiver got.
type delivery struct {
	ID, Timestamp, Signature string
	Header                   http.Header
	Body                     []byte
	Type                     string
	Data                     json.RawMessage
	Verified                 error
}

// receiver is a real HTTP endpoint that verifies each request with the
// Standard Webhooks library and answers with status(n) for the n-th
// request (from 1).
type receiver struct {
	*httptest.Server
	verifier *standardwebhooks.Webhook
	mu       sync.Mutex
	got      []delivery
	status   func(n int) int
	arrived  chan struct{}
}

func newReceiver(t *testing.T, status func(n int) int) *receiver {
	t.Helper()
	v, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{verifier: v, status: status, arrived: make(chan struct{}, 10000)}
	if r.status == nil {
		r.status = func(int) int { return http.StatusNoContent }
	}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		d := delivery{ID: req.Header.Get("webhook-id"), Timestamp: req.Header.Get("webhook-timestamp"),
			Signature: req.Header.Get("webhook-signature"), Header: req.Header.Clone(), Body: body}
		d.Verified = v.Verify(body, req.Header)
		var env struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}
		_ = json.Unmarshal(body, &env)
		d.Type, d.Data = env.Type, env.Data
		r.mu.Lock()
		r.got = append(r.got, d)
		n := len(r.got)
		r.mu.Unlock()
		w.WriteHeader(r.status(n))
		r.arrived <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

// wait returns the deliveries once there are at least n, or fails after timeout.
func (r *receiver) wait(t *testing.T, n int, timeout time.Duration) []delivery {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		got := append([]delivery(nil), r.got...)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-r.arrived:
		case <-deadline:
			t.Fatalf("got %d webhooks, want %d: %v", len(got), n, types(got))
		}
	}
}

func (r *receiver) all() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

func types(ds []delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Type
	}
	return out
}

func withWebhooks(url string, opts ...func(*config.Config)) servertest.Option {
	return func(c *config.Config) {
		c.WebhookURL, c.WebhookSecret = url, testSecret
		c.WebhookRetryDelays = []time.Duration{20 * time.Millisecond}
		for _, o := range opts {
			o(c)
		}
	}
}

// openConversation registers a client and a professional and opens a
// conversation between them.
func openConversation(t *testing.T, n *servertest.Node) (client, pro servertest.User, convID string) {
	t.Helper()
	client, pro = n.Register(t, "whc", "client"), n.Register(t, "whp", "professional")
	var conv struct{ ID string }
	res := n.Do(t, "POST", "/api/conversations", client.Token, map[string]any{"professional_id": pro.ID,
		"message": map[string]any{"body": "hello"}}, &conv)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("open conversation: %d", res.StatusCode)
	}
	return client, pro, conv.ID
}

// TestDeliveriesAreSignedAndOrdered checks every kind of change reaches the
// receiver, in the order written, each verified by the Standard Webhooks
// library and by a verifier written from the scheme; and that a tampered
// body or a stale timestamp fails both.
func TestDeliveriesAreSignedAndOrdered(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := servertest.Start(t, withWebhooks(rcv.URL))
	_, pro, conv := openConversation(t, n)
	var msg struct{ ID string }
	n.Do(t, "POST", "/api/conversations/"+conv+"/messages", pro.Token, map[string]any{"body": "hi"}, &msg)
	n.Do(t, "PATCH", "/api/messages/"+msg.ID, pro.Token, map[string]any{"body": "hi, edited"}, nil)
	// Sent before the delete, which drops a deleted message's unsent webhooks.
	rcv.wait(t, 4, 10*time.Second)
	n.Do(t, "DELETE", "/api/messages/"+msg.ID, pro.Token, nil, nil)

	got := rcv.wait(t, 5, 10*time.Second)
	want := []string{"conversation.created", "message.created", "message.created", "message.updated", "message.deleted"}
	if strings.Join(types(got), " ") != strings.Join(want, " ") {
		t.Fatalf("types %v, want %v", types(got), want)
	}
	key, _ := webhook.ParseSecret(testSecret)
	ids := map[string]bool{}
	for _, d := range got {
		if d.Verified != nil {
			t.Errorf("%s %s: the library refused it: %v", d.Type, d.ID, d.Verified)
		}
		if ct := d.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type %q", ct)
		}
		ts, err := strconv.ParseInt(d.Timestamp, 10, 64)
		if err != nil || time.Since(time.Unix(ts, 0)) > time.Minute {
			t.Errorf("webhook-timestamp %q", d.Timestamp)
		}
		if !ownVerify(key, d.ID, d.Timestamp, d.Body, d.Signature) {
			t.Errorf("%s: the scheme's own check refused %q", d.Type, d.Signature)
		}
		if ids[d.ID] || !strings.HasPrefix(d.ID, "wh_") {
			t.Errorf("webhook-id %q repeated or malformed", d.ID)
		}
		ids[d.ID] = true
		var env struct {
			Type      string `json:"type"`
			Timestamp string `json:"timestamp"`
		}
		if err := json.Unmarshal(d.Body, &env); err != nil || env.Type != d.Type || env.Timestamp == "" {
			t.Errorf("body %s", d.Body)
		}
	}
	var deleted struct {
		ID      string `json:"id"`
		Deleted bool   `json:"deleted"`
		Body    string `json:"body"`
	}
	if err := json.Unmarshal(got[4].Data, &deleted); err != nil || deleted.ID != msg.ID || !deleted.Deleted || deleted.Body != "" {
		t.Errorf("message.deleted data %s", got[4].Data)
	}

	// Tampering and replay.
	d := got[1]
	tampered := append([]byte(nil), d.Body...)
	tampered[len(tampered)-2] ^= 1
	if err := rcv.verifier.Verify(tampered, d.Header); err == nil {
		t.Error("the library accepted a tampered body")
	}
	if ownVerify(key, d.ID, d.Timestamp, tampered, d.Signature) {
		t.Error("the scheme's check accepted a tampered body")
	}
	stale := d.Header.Clone()
	old := strconv.FormatInt(time.Now().Add(-10*time.Minute).Unix(), 10)
	stale.Set("webhook-timestamp", old)
	stale.Set("webhook-signature", webhook.Sign(key, d.ID, time.Now().Add(-10*time.Minute).Unix(), d.Body))
	if err := rcv.verifier.Verify(d.Body, stale); err == nil {
		t.Error("the library accepted a timestamp 10 minutes old")
	}
	if err := rcv.verifier.VerifyIgnoringTimestamp(d.Body, stale); err != nil {
		t.Errorf("the stale delivery is signed correctly but refused: %v", err)
	}
	if ownVerifyFresh(key, d.ID, old, d.Body, stale.Get("webhook-signature")) {
		t.Error("the scheme's check accepted a timestamp 10 minutes old")
	}
}

// ownVerify is the scheme's check written out: HMAC-SHA256 of
// id.timestamp.body, base64, against each v1 signature of the header.
func ownVerify(key []byte, id, ts string, body []byte, header string) bool {
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	want := webhook.Sign(key, id, t, body)
	for _, sig := range strings.Fields(header) {
		if sig == want {
			return true
		}
	}
	return false
}

// ownVerifyFresh is ownVerify with the 5-minute tolerance of the scheme.
func ownVerifyFresh(key []byte, id, ts string, body []byte, header string) bool {
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(t, 0)).Abs() > 5*time.Minute {
		return false
	}
	return ownVerify(key, id, ts, body, header)
}

// TestRetriesKeepTheID: a receiver answering 500 three times, then 200,
// gets four attempts of the one webhook with the same webhook-id, and
// nothing more once it accepted.
func TestRetriesKeepTheID(t *testing.T) {
	rcv := newReceiver(t, func(n int) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	n := servertest.Start(t, withWebhooks(rcv.URL, func(c *config.Config) { c.WebhookEvents = []string{"conversation.created"} }))
	openConversation(t, n)
	got := rcv.wait(t, 4, 10*time.Second)
	for _, d := range got {
		if d.ID != got[0].ID || d.Type != "conversation.created" || d.Verified != nil {
			t.Fatalf("attempt %s %s (verified: %v), want %s each time", d.ID, d.Type, d.Verified, got[0].ID)
		}
	}
	time.Sleep(300 * time.Millisecond) // fifteen retry delays
	if all := rcv.all(); len(all) != 4 {
		t.Fatalf("%d attempts, want 4 (3 refused, 1 accepted)", len(all))
	}
	var failed struct {
		Webhooks []any `json:"webhooks"`
	}
	n.Do(t, "GET", "/api/server/webhooks/failed", servertest.APIKey, nil, &failed)
	if len(failed.Webhooks) != 0 {
		t.Fatalf("failed webhooks %v", failed.Webhooks)
	}
}

// TestFailedAndRetried: past the max age a webhook is kept as failed,
// listed, and sent again with the same id by a manual retry.
func TestFailedAndRetried(t *testing.T) {
	rcv := newReceiver(t, func(n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	n := servertest.Start(t, withWebhooks(rcv.URL, func(c *config.Config) {
		c.WebhookEvents, c.WebhookMaxAge = []string{"conversation.created"}, time.Millisecond
	}))
	openConversation(t, n)
	first := rcv.wait(t, 1, 10*time.Second)[0]
	var failed struct {
		Webhooks []struct {
			ID         string `json:"id"`
			State      string `json:"state"`
			LastStatus int    `json:"last_status"`
			Attempts   int    `json:"attempts"`
		} `json:"webhooks"`
	}
	for deadline := time.Now().Add(5 * time.Second); len(failed.Webhooks) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		n.Do(t, "GET", "/api/server/webhooks/failed", servertest.APIKey, nil, &failed)
	}
	if len(failed.Webhooks) != 1 || failed.Webhooks[0].ID != first.ID || failed.Webhooks[0].LastStatus != 503 || failed.Webhooks[0].State != "failed" {
		t.Fatalf("failed list %+v, want %s with status 503", failed.Webhooks, first.ID)
	}
	if res := n.Do(t, "POST", "/api/server/webhooks/"+first.ID+"/retry", servertest.APIKey, nil, nil); res.StatusCode != http.StatusAccepted {
		t.Fatalf("retry: %d", res.StatusCode)
	}
	again := rcv.wait(t, 2, 10*time.Second)[1]
	if again.ID != first.ID || again.Verified != nil {
		t.Fatalf("retry sent %s (verified %v), want %s", again.ID, again.Verified, first.ID)
	}
	metrics := n.Do(t, "GET", "/metrics", "", nil, nil)
	for _, name := range []string{"parley_webhooks_pending", "parley_webhooks_failed", "parley_webhooks_delivered_total", "parley_webhook_delivery_latency_seconds"} {
		if !strings.Contains(string(metrics.Body), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// TestUnread: message.unread fires once per conversation after the delay
// when the recipient has not read, never when they read in time, and again
// for a message after a read.
func TestUnread(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := servertest.Start(t, withWebhooks(rcv.URL, func(c *config.Config) {
		c.WebhookEvents, c.WebhookUnreadAfter = []string{"message.unread"}, 300*time.Millisecond
	}))
	_, pro, conv := openConversation(t, n)   // the client's first message, never read
	_, pro2, conv2 := openConversation(t, n) // read in time
	n.Do(t, "POST", "/api/conversations/"+conv2+"/read", pro2.Token, map[string]any{"up_to_seq": 1}, nil)

	got := rcv.wait(t, 1, 5*time.Second)
	var data struct {
		User           struct{ ID string } `json:"user"`
		ConversationID string              `json:"conversation_id"`
		Message        struct {
			Body string `json:"body"`
		} `json:"message"`
		UnreadCount int `json:"unread_count"`
	}
	if err := json.Unmarshal(got[0].Data, &data); err != nil || got[0].Type != "message.unread" || got[0].Verified != nil {
		t.Fatalf("%s %s: %v %v", got[0].Type, got[0].Data, err, got[0].Verified)
	}
	if data.User.ID != pro.ID || data.ConversationID != conv || data.Message.Body != "hello" || data.UnreadCount != 1 {
		t.Fatalf("message.unread data %s", got[0].Data)
	}
	// Once per conversation until read: a second unread message adds none.
	time.Sleep(700 * time.Millisecond)
	if all := rcv.all(); len(all) != 1 {
		t.Fatalf("%d message.unread, want 1 (the read conversation fires none): %s", len(all), all[len(all)-1].Data)
	}
	// Reading re-arms: the next message that stays unread fires again.
	n.Do(t, "POST", "/api/conversations/"+conv+"/read", pro.Token, map[string]any{"up_to_seq": 1}, nil)
	n.Do(t, "POST", "/api/server/conversations/"+conv+"/messages", servertest.APIKey, map[string]any{"body": "reminder"}, nil)
	// The system message is unread by both participants.
	got = rcv.wait(t, 3, 5*time.Second)
	for _, d := range got[1:] {
		if d.Type != "message.unread" || !strings.Contains(string(d.Data), "reminder") {
			t.Fatalf("after a read: %s %s", d.Type, d.Data)
		}
	}
}

// TestNoUnreadAfterDelete: when the unread message a recipient's watch
// was armed by is deleted, message.unread tells of the newest message
// still unread, never of the deleted one after its message.deleted; with
// none left unread it tells of nothing.
func TestNoUnreadAfterDelete(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := servertest.Start(t, withWebhooks(rcv.URL, func(c *config.Config) {
		c.WebhookEvents, c.WebhookUnreadAfter = []string{"message.unread", "message.deleted"}, 300*time.Millisecond
	}))
	client, pro, conv := openConversation(t, n)
	n.Do(t, "POST", "/api/conversations/"+conv+"/read", pro.Token, map[string]any{"up_to_seq": 1}, nil)
	var first, second struct{ ID string }
	n.Do(t, "POST", "/api/conversations/"+conv+"/messages", pro.Token, map[string]any{"body": "sent by mistake"}, &first)
	n.Do(t, "POST", "/api/conversations/"+conv+"/messages", pro.Token, map[string]any{"body": "meant this"}, &second)
	if res := n.Do(t, "DELETE", "/api/messages/"+first.ID, pro.Token, nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d %s", res.StatusCode, res.Body)
	}
	got := rcv.wait(t, 2, 5*time.Second)
	var data struct {
		User    struct{ ID string } `json:"user"`
		Message struct{ ID, Body string }
	}
	if got[0].Type != "message.deleted" || got[1].Type != "message.unread" || json.Unmarshal(got[1].Data, &data) != nil ||
		data.User.ID != client.ID || data.Message.ID != second.ID || data.Message.Body != "meant this" {
		t.Fatalf("got %v, %s; want message.deleted, then message.unread of the second message", types(got), got[len(got)-1].Data)
	}

	// Deleted, and nothing else unread: no message.unread.
	n.Do(t, "POST", "/api/conversations/"+conv+"/read", client.Token, map[string]any{"up_to_seq": 3}, nil)
	var third struct{ ID string }
	n.Do(t, "POST", "/api/conversations/"+conv+"/messages", pro.Token, map[string]any{"body": "never mind"}, &third)
	n.Do(t, "DELETE", "/api/messages/"+third.ID, pro.Token, nil, nil)
	rcv.wait(t, 3, 5*time.Second)
	time.Sleep(900 * time.Millisecond) // three times the unread delay
	if all := rcv.all(); len(all) != 3 || all[2].Type != "message.deleted" {
		t.Fatalf("got %v, want a third webhook, message.deleted, and no more", types(all))
	}
}

// TestDeleteDropsUnsentText: the webhooks of a message not yet accepted by
// the receiver are dropped when the message is deleted, so its text stays
// nowhere (not in the failed list either); the receiver gets the tombstone.
func TestDeleteDropsUnsentText(t *testing.T) {
	n := failingNode(t, "message.created", "message.deleted")
	_, pro, conv := openConversation(t, n)
	var msg struct{ ID string }
	n.Do(t, "POST", "/api/conversations/"+conv+"/messages", pro.Token, map[string]any{"body": "a secret to delete"}, &msg)
	untilFailed(t, n, "a secret to delete")
	n.Do(t, "DELETE", "/api/messages/"+msg.ID, pro.Token, nil, nil)
	untilFailed(t, n, "message.deleted")
	if b := failedBody(t, n); strings.Contains(b, "a secret to delete") {
		t.Fatalf("the deleted text is still in the outbox: %s", b)
	}
}

// TestCallMissed: a call rung out without an answer sends call.missed.
func TestCallMissed(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := servertest.Start(t, withWebhooks(rcv.URL, func(c *config.Config) {
		c.WebhookEvents, c.CallTimeout = []string{"call.missed"}, 200*time.Millisecond
	}))
	client, _, conv := openConversation(t, n)
	var call struct{ ID string }
	if res := n.Do(t, "POST", "/api/conversations/"+conv+"/calls", client.Token, map[string]any{"media": "audio"}, &call); res.StatusCode != http.StatusCreated {
		t.Fatalf("start call: %d", res.StatusCode)
	}
	d := rcv.wait(t, 1, 5*time.Second)[0]
	var data struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if err := json.Unmarshal(d.Data, &data); err != nil || d.Type != "call.missed" || data.ID != call.ID || data.State != "missed" || d.Verified != nil {
		t.Fatalf("%s %s (verified %v)", d.Type, d.Data, d.Verified)
	}
}

// heldReceiver is a receiver that holds every request until release, so
// the webhooks behind the first pile up in the outbox. Callers register
// release with t.Cleanup once their node runs: stopping the node and
// closing the receiver both wait for the held request.
func heldReceiver(t *testing.T) (rcv *receiver, release func()) {
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	return newReceiver(t, func(int) int { <-gate; return http.StatusNoContent }), release
}

// drained returns what the receiver got once the outbox is empty, and a
// duplicate would have had time to arrive.
func drained(t *testing.T, n *servertest.Node, rcv *receiver) []delivery {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); pendingWebhooks(t, n) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d webhooks still pending", pendingWebhooks(t, n))
		}
	}
	time.Sleep(200 * time.Millisecond)
	got := rcv.all()
	seen := map[string]bool{}
	for _, d := range got {
		if seen[d.ID] {
			t.Errorf("webhook %s (%s) delivered twice", d.ID, d.Type)
		}
		seen[d.ID] = true
	}
	return got
}

// TestConcurrentChangesOneOrder: sends, edits and deletes racing in one
// conversation while the receiver holds the first delivery, so the rest
// pile up in the outbox. On PostgreSQL the changes commit side by side:
// each must still get an order of its own in the conversation (two rows
// with one order would both be a head to claim, and the rows behind them
// would go out twice, from two senders at once), and the receiver must get
// every webhook once, a message's created before its updates, and nothing
// of a message after its message.deleted.
func TestConcurrentChangesOneOrder(t *testing.T) {
	rcv, release := heldReceiver(t)
	n := servertest.Start(t, withWebhooks(rcv.URL, func(c *config.Config) { c.WebhookUnreadAfter = 0 }))
	t.Cleanup(release)
	client, pro, conv := openConversation(t, n)
	post := func(u servertest.User, body string) (string, int) {
		var m struct{ ID string }
		res := n.Do(t, "POST", "/api/conversations/"+conv+"/messages", u.Token, map[string]any{"body": body}, &m)
		return m.ID, res.StatusCode
	}
	var seeds []string
	for i := range 6 {
		id, code := post(client, fmt.Sprintf("seed %d", i))
		if code != http.StatusCreated {
			t.Fatalf("seed: %d", code)
		}
		seeds = append(seeds, id)
	}

	const senders, sends, editors, edits = 4, 12, 3, 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	note := func(what string, code int, ok ...int) {
		for _, c := range ok {
			if code == c {
				return
			}
		}
		mu.Lock()
		bad = append(bad, fmt.Sprintf("%s: %d", what, code))
		mu.Unlock()
	}
	for s := range senders {
		u := []servertest.User{client, pro}[s%2]
		wg.Go(func() {
			for i := range sends {
				_, code := post(u, fmt.Sprintf("sender %d message %d", s, i))
				note("send", code, http.StatusCreated)
			}
		})
	}
	for e := range editors {
		wg.Go(func() {
			for i := range edits {
				id := seeds[(e+i)%len(seeds)]
				res := n.Do(t, "PATCH", "/api/messages/"+id, client.Token, map[string]any{"body": fmt.Sprintf("edit %d.%d", e, i)}, nil)
				note("edit", res.StatusCode, http.StatusOK, http.StatusConflict)
			}
		})
	}
	deleted := seeds[:3]
	wg.Go(func() {
		for _, id := range deleted {
			time.Sleep(5 * time.Millisecond)
			res := n.Do(t, "DELETE", "/api/messages/"+id, client.Token, nil, nil)
			note("delete", res.StatusCode, http.StatusOK)
		}
	})
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("unexpected answers: %v", bad)
	}
	if u := n.Config.DatabaseURL; strings.HasPrefix(u, "postgres") {
		assertOneOrderEach(t, u)
	}

	release()
	created := map[string]bool{}
	gone := map[string]bool{}
	lastBody := map[string]string{}
	for _, d := range drained(t, n, rcv) {
		var m struct {
			ID      string `json:"id"`
			Body    string `json:"body"`
			Deleted bool   `json:"deleted"`
		}
		if err := json.Unmarshal(d.Data, &m); err != nil {
			t.Fatalf("%s data %s: %v", d.Type, d.Data, err)
		}
		if gone[m.ID] {
			t.Errorf("%s of message %s after its message.deleted", d.Type, m.ID)
		}
		switch d.Type {
		case "message.created":
			created[m.ID] = true
		case "message.updated":
			if !created[m.ID] {
				t.Errorf("message.updated of %s before its message.created", m.ID)
			}
			lastBody[m.ID] = m.Body
		case "message.deleted":
			gone[m.ID] = true
		}
	}
	for _, id := range deleted {
		if !gone[id] {
			t.Errorf("no message.deleted for %s", id)
		}
	}
	// The last edit the receiver got of each message still there is its
	// text now: the webhooks of one message went out in commit order.
	h := getMessages(t, n, client, conv)
	for _, id := range seeds[len(deleted):] {
		if b, ok := lastBody[id]; ok && b != h[id] {
			t.Errorf("message %s: last message.updated %q, the message says %q", id, b, h[id])
		}
	}
	// Every message but the deleted ones, whose message.created may have
	// been dropped unsent with their text.
	if all := 1 + len(seeds) + senders*sends; len(created) < all-len(deleted) || len(created) > all {
		t.Errorf("%d messages' message.created reached the receiver, want %d to %d", len(created), all-len(deleted), all)
	}
}

// TestSharedOrderSentOnce: webhooks that share their conversation's order,
// as a PostgreSQL outbox written before changes took the conversation's
// lock may hold, still go out once each, in a fixed order.
func TestSharedOrderSentOnce(t *testing.T) {
	rcv, release := heldReceiver(t)
	n := servertest.Start(t, withWebhooks(rcv.URL, func(c *config.Config) { c.WebhookUnreadAfter = 0 }))
	t.Cleanup(release)
	if !strings.HasPrefix(n.Config.DatabaseURL, "postgres") {
		t.Skip("SKIP: an outbox with shared orders comes from concurrent writers (PostgreSQL: PARLEY_TEST_DATABASE_URL)")
	}
	client, _, conv := openConversation(t, n)
	// The conversation's first webhooks are claimed and held before the
	// messages are sent, so the messages' rows stay unclaimed (a claim that
	// came later, on a loaded machine, took them all into its group).
	for deadline := time.Now().Add(5 * time.Second); len(rcv.all()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no webhook attempt")
		}
	}
	for i := range 6 {
		n.Do(t, "POST", "/api/conversations/"+conv+"/messages", client.Token, map[string]any{"body": fmt.Sprint(i)}, nil)
		time.Sleep(2 * time.Millisecond) // ids order by the millisecond, and the tie-break is the id
	}
	db := connect(t, n.Config.DatabaseURL)
	// The rows not yet claimed (the messages') all share one order.
	tag, err := db.Exec(context.Background(), `UPDATE webhooks SET ord =
		(SELECT MIN(ord) FROM webhooks WHERE conversation_id = $1 AND lease_until = 0)
		WHERE conversation_id = $1 AND lease_until = 0`, conv)
	if err != nil || tag.RowsAffected() < 3 {
		t.Fatalf("share an order: %v (%d rows)", err, tag.RowsAffected())
	}
	release()
	var bodies []string
	for _, d := range drained(t, n, rcv) {
		var m struct{ Body string }
		if err := json.Unmarshal(d.Data, &m); err == nil && d.Type == "message.created" {
			bodies = append(bodies, m.Body)
		}
	}
	if got, want := strings.Join(bodies, " "), "hello 0 1 2 3 4 5"; got != want {
		t.Errorf("message.created bodies in the order received: %s, want %s", got, want)
	}
}

// connect opens the node's PostgreSQL database behind its back.
func connect(t *testing.T, dbURL string) *pgxpool.Pool {
	t.Helper()
	db, err := pgxpool.New(context.Background(), dbURL) // the URL carries the pool's settings
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(db.Close)
	return db
}

// assertOneOrderEach fails when two webhooks of a conversation share an
// order (PostgreSQL, read behind the server's back).
func assertOneOrderEach(t *testing.T, dbURL string) {
	t.Helper()
	ctx := context.Background()
	var rows, dups int
	err := connect(t, dbURL).QueryRow(ctx, `SELECT COUNT(*), COUNT(*) - COUNT(DISTINCT (conversation_id, ord)) FROM webhooks`).Scan(&rows, &dups)
	if err != nil {
		t.Fatalf("count orders: %v", err)
	}
	if dups > 0 {
		t.Errorf("%d of %d webhooks share their conversation's order with another", dups, rows)
	}
	t.Logf("%d webhooks in the outbox, %d sharing an order", rows, dups)
}

func pendingWebhooks(t *testing.T, n *servertest.Node) int {
	t.Helper()
	res := n.Do(t, "GET", "/metrics", "", nil, nil)
	for _, line := range strings.Split(string(res.Body), "\n") {
		if v, ok := strings.CutPrefix(line, "parley_webhooks_pending "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %q", line)
			}
			return int(f)
		}
	}
	t.Fatalf("no parley_webhooks_pending in /metrics (%d)", res.StatusCode)
	return 0
}

// getMessages returns the bodies of the conversation's messages by id.
func getMessages(t *testing.T, n *servertest.Node, u servertest.User, conv string) map[string]string {
	t.Helper()
	var h struct {
		Messages []struct{ ID, Body string } `json:"messages"`
	}
	if res := n.Do(t, "GET", "/api/conversations/"+conv+"/messages?limit=100", u.Token, nil, &h); res.StatusCode != http.StatusOK {
		t.Fatalf("history: %d", res.StatusCode)
	}
	out := map[string]string{}
	for _, m := range h.Messages {
		out[m.ID] = m.Body
	}
	return out
}

// appUser creates an app's user with the server API and returns a token
// for them.
func appUser(t *testing.T, n *servertest.Node, ext, role, display string) string {
	t.Helper()
	if res := n.Do(t, "PUT", "/api/server/users/"+ext, servertest.APIKey, map[string]any{"role": role, "display_name": display}, nil); res.StatusCode != http.StatusCreated {
		t.Fatalf("put %s: %d %s", ext, res.StatusCode, res.Body)
	}
	var tok struct{ Token string }
	if res := n.Do(t, "POST", "/api/server/tokens", servertest.APIKey, map[string]any{"external_id": ext}, &tok); res.StatusCode != http.StatusCreated {
		t.Fatalf("token %s: %d %s", ext, res.StatusCode, res.Body)
	}
	return tok.Token
}

// TestErasureScrubsUnsentWebhooks: the webhooks an erasure finds unsent
// (failed here) keep nothing of the erased user. The conversation.created
// stays, with them as "Deleted user" and their first message as its
// tombstone; the message.unread addressed to them is dropped (bob's, about
// her message, went with the message); bob's own message stays as it was.
func TestErasureScrubsUnsentWebhooks(t *testing.T) {
	rcv := newReceiver(t, func(int) int { return http.StatusServiceUnavailable })
	n := servertest.Start(t, withWebhooks(rcv.URL, func(c *config.Config) {
		c.WebhookEvents = []string{"conversation.created", "message.created", "message.unread"}
		c.WebhookUnreadAfter, c.WebhookMaxAge = 100*time.Millisecond, time.Millisecond
	}))
	const name, sub, text = "Zelda Quartermain", "zelda-sub-7731", "ZELDA-FIRST-SECRET"
	zelda, bob := appUser(t, n, sub, "client", name), appUser(t, n, "bob-sub-7731", "professional", "Bob Keeps")
	var conv struct{ ID string }
	if res := n.Do(t, "POST", "/api/conversations", zelda, map[string]any{"professional_external_id": "bob-sub-7731",
		"message": map[string]any{"body": text}}, &conv); res.StatusCode != http.StatusCreated {
		t.Fatalf("open: %d %s", res.StatusCode, res.Body)
	}
	// Bob answers; Zelda never reads it, so a message.unread for her.
	n.Do(t, "POST", "/api/conversations/"+conv.ID+"/messages", bob, map[string]any{"body": "bob's answer"}, nil)
	type failed struct {
		Webhooks []struct {
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		} `json:"webhooks"`
	}
	list := func() (f failed, raw string) {
		t.Helper()
		res := n.Do(t, "GET", "/api/server/webhooks/failed", servertest.APIKey, nil, &f)
		return f, string(res.Body)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, raw := list()
		if strings.Contains(raw, `message.unread`) && strings.Contains(raw, `conversation.created`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhooks did not all fail: %s", raw)
		}
	}
	if res := n.Do(t, "DELETE", "/api/server/users/"+sub, servertest.APIKey, nil, nil); res.StatusCode != http.StatusNoContent {
		t.Fatalf("erase: %d %s", res.StatusCode, res.Body)
	}
	f, raw := list()
	for _, gone := range []string{name, sub, text} {
		if strings.Contains(raw, gone) {
			t.Errorf("the outbox still holds %q after the erasure: %s", gone, raw)
		}
	}
	for _, kept := range []string{"conversation.created", "Deleted user", "Bob Keeps", "bob's answer"} {
		if !strings.Contains(raw, kept) {
			t.Errorf("the outbox lost %q: %s", kept, raw)
		}
	}
	for _, w := range f.Webhooks {
		if w.Type == "message.unread" {
			t.Errorf("a message.unread is left: %s", w.Payload)
		}
		if w.Type != "conversation.created" {
			continue
		}
		var body struct {
			Data struct {
				LastMessage struct {
					Deleted bool   `json:"deleted"`
					Body    string `json:"body"`
				} `json:"last_message"`
			} `json:"data"`
		}
		if err := json.Unmarshal(w.Payload, &body); err != nil || !body.Data.LastMessage.Deleted {
			t.Errorf("conversation.created's last_message is not the tombstone (%v): %s", err, w.Payload)
		}
	}
	// What bob sends her now stays unread, and tells nobody of her.
	n.Do(t, "POST", "/api/conversations/"+conv.ID+"/messages", bob, map[string]any{"body": "after the erasure"}, nil)
	time.Sleep(700 * time.Millisecond) // seven times the unread delay
	if _, raw := list(); strings.Contains(raw, "message.unread") {
		t.Errorf("a message.unread after the erasure: %s", raw)
	}
}

// TestErasureWhileSending: webhooks claimed for sending when the erasure
// runs (the one in flight and the rest of its conversation's group) are
// rewritten, not skipped: once their attempts fail, the failed list holds
// nothing of the erased user.
func TestErasureWhileSending(t *testing.T) {
	held := make(chan struct{})
	release := sync.OnceFunc(func() { close(held) })
	rcv := newReceiver(t, func(n int) int {
		if n == 1 {
			<-held
		}
		return http.StatusServiceUnavailable
	})
	t.Cleanup(release) // before the receiver's: it waits for its handlers
	n := servertest.Start(t, withWebhooks(rcv.URL, func(c *config.Config) {
		c.WebhookEvents, c.WebhookMaxAge = []string{"conversation.created", "message.created"}, time.Millisecond
	}))
	const name, sub, text = "Zelda Inflight", "zelda-sub-9120", "ZELDA-INFLIGHT-SECRET"
	zelda := appUser(t, n, sub, "client", name)
	appUser(t, n, "bob-sub-9120", "professional", "Bob")
	if res := n.Do(t, "POST", "/api/conversations", zelda, map[string]any{"professional_external_id": "bob-sub-9120",
		"message": map[string]any{"body": text}}, nil); res.StatusCode != http.StatusCreated {
		t.Fatalf("open: %d %s", res.StatusCode, res.Body)
	}
	// conversation.created in flight, message.created claimed with it.
	for deadline := time.Now().Add(5 * time.Second); len(rcv.all()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no webhook attempt")
		}
	}
	if res := n.Do(t, "DELETE", "/api/server/users/"+sub, servertest.APIKey, nil, nil); res.StatusCode != http.StatusNoContent {
		t.Fatalf("erase: %d %s", res.StatusCode, res.Body)
	}
	release()
	rcv.wait(t, 2, 5*time.Second)
	var raw string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		raw = failedBody(t, n)
		if strings.Count(raw, `"state":"failed"`) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two webhooks did not both fail: %s", raw)
		}
	}
	for _, gone := range []string{name, sub, text} {
		if strings.Contains(raw, gone) {
			t.Errorf("the outbox still holds %q: %s", gone, raw)
		}
	}
}

// TestDeleteFirstMessageKeepsConversationCreated: deleting a conversation's
// first message leaves its unsent conversation.created in place, with the
// tombstone as last_message and none of the text.
func TestDeleteFirstMessageKeepsConversationCreated(t *testing.T) {
	n := failingNode(t, "conversation.created")
	client, pro := n.Register(t, "whc", "client"), n.Register(t, "whp", "professional")
	var conv struct {
		ID          string
		LastMessage struct{ ID string } `json:"last_message"`
	}
	n.Do(t, "POST", "/api/conversations", client.Token, map[string]any{"professional_id": pro.ID,
		"message": map[string]any{"body": "an opening secret"}}, &conv)
	untilFailed(t, n, "an opening secret")
	if res := n.Do(t, "DELETE", "/api/messages/"+conv.LastMessage.ID, client.Token, nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d %s", res.StatusCode, res.Body)
	}
	b := failedBody(t, n)
	if strings.Contains(b, "an opening secret") || !strings.Contains(b, `"type":"conversation.created"`) || !strings.Contains(b, `"deleted":true`) {
		t.Fatalf("after the delete, the outbox holds: %s", b)
	}
}

// failingNode starts a node sending webhooks of types to a receiver that
// answers 503 to all, with no retries left after the first attempt: each
// webhook is listed as failed soon after it is written.
func failingNode(t *testing.T, types ...string) *servertest.Node {
	rcv := newReceiver(t, func(int) int { return http.StatusServiceUnavailable })
	return servertest.Start(t, withWebhooks(rcv.URL, func(c *config.Config) {
		c.WebhookEvents, c.WebhookMaxAge = types, time.Millisecond
	}))
}

// failedBody is the first page of the failed webhooks, as the API lists it.
func failedBody(t *testing.T, n *servertest.Node) string {
	t.Helper()
	return string(n.Do(t, "GET", "/api/server/webhooks/failed", servertest.APIKey, nil, nil).Body)
}

// untilFailed waits for the failed list to hold text.
func untilFailed(t *testing.T, n *servertest.Node, text string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(failedBody(t, n), text); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no failed webhook holds %q: %s", text, failedBody(t, n))
		}
	}
}

// TestDeleteEmptiesQuotesInUnsentWebhooks: a reply's webhook quotes the
// message it replies to; once that message is deleted, the reply's unsent
// webhook shows the quote emptied, as the reply itself does, and keeps
// its own text.
func TestDeleteEmptiesQuotesInUnsentWebhooks(t *testing.T) {
	n := failingNode(t, "message.created")
	client, pro, conv := openConversation(t, n)
	var quoted struct{ ID string }
	n.Do(t, "POST", "/api/conversations/"+conv+"/messages", client.Token, map[string]any{"body": "a quoted secret"}, &quoted)
	res := n.Do(t, "POST", "/api/conversations/"+conv+"/messages", pro.Token,
		map[string]any{"body": "the answer to it", "reply_to_id": quoted.ID}, nil)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("reply: %d %s", res.StatusCode, res.Body)
	}
	untilFailed(t, n, "the answer to it")
	if b := failedBody(t, n); strings.Count(b, "a quoted secret") != 2 {
		t.Fatalf("want the secret in its own webhook and in the reply's preview: %s", b)
	}
	if res := n.Do(t, "DELETE", "/api/messages/"+quoted.ID, client.Token, nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d %s", res.StatusCode, res.Body)
	}
	b := failedBody(t, n)
	if strings.Contains(b, "a quoted secret") || !strings.Contains(b, "the answer to it") || !strings.Contains(b, `"preview":""`) {
		t.Fatalf("after the delete, the outbox holds: %s", b)
	}
}

// TestDeleteWithWebhooksOffDropsOldText: webhooks that failed while they
// were on stay listed after they are switched off; deleting a message then
// still takes its text out of them.
func TestDeleteWithWebhooksOffDropsOldText(t *testing.T) {
	n := failingNode(t, "message.created")
	_, pro, conv := openConversation(t, n)
	var msg struct{ ID string }
	n.Do(t, "POST", "/api/conversations/"+conv+"/messages", pro.Token, map[string]any{"body": "an old secret"}, &msg)
	untilFailed(t, n, "an old secret")
	n.Stop()
	c := n.Config
	c.WebhookURL = ""
	n = servertest.StartConfig(t, c)
	if res := n.Do(t, "DELETE", "/api/messages/"+msg.ID, pro.Token, nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d %s", res.StatusCode, res.Body)
	}
	b := failedBody(t, n)
	if strings.Contains(b, "an old secret") || !strings.Contains(b, `"webhooks":[`) {
		t.Fatalf("after the delete, the outbox holds: %s", b)
	}
}
