package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
)

// TestWebhooksThreeNodesOneKilled: three nodes on one PostgreSQL database
// share the outbox. 1,000 messages are sent across them and one node is
// SIGKILLed midway. Every acknowledged message's webhook arrives, and the
// receiver sees at most 1 % of deliveries twice: a conversation's webhooks
// go out one at a time, so a repeat is the one webhook per conversation the
// dead node was sending (taken over after its lease, same webhook-id), and
// ten conversations bound the repeats at ten, whatever the timing. (With
// twenty, a loaded machine saw 13.)
func TestWebhooksThreeNodesOneKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills parley processes; skipped with -short")
	}
	dbURL := testenv.FreshDatabase(t, testenv.Postgres(t))
	var mu sync.Mutex
	hooks := map[string]string{} // webhook-id → message id
	var received atomic.Int64
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var env struct {
			Data struct{ ID string } `json:"data"`
		}
		_ = json.Unmarshal(body, &env)
		mu.Lock()
		hooks[r.Header.Get("webhook-id")] = env.Data.ID
		mu.Unlock()
		received.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	defer rcv.Close()
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("parley-cluster-webhook-secret-32"))
	flags := []string{"--database-url", dbURL, "--jwt-secret", "cluster-test-secret-cluster-test-secret",
		"--webhook-url", rcv.URL, "--webhook-secret", secret, "--webhook-events", "message.created",
		"--webhook-retry-delays", "50ms", "--webhook-lease", "2s"}
	var nodes []*proc
	for range 3 {
		nodes = append(nodes, startParley(t, t.TempDir(), flags...))
	}
	ctx := context.Background()
	var acked sync.Map // message id → true
	const conversations = 10
	lanes := openLanes(t, nodes, "whc", conversations, &acked)
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w := range conversations {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := lanes[w]
			for i := range 1000/conversations - 1 {
				// A send the killed node did not answer is sent again to
				// the next node, with its client_id (answered once).
				var m struct{ ID string }
				for try := range 3 {
					node := nodes[(w+i+try)%3]
					if _, err := node.call(ctx, "POST", "/api/conversations/"+l.conv+"/messages", l.client.token,
						map[string]any{"body": "m", "client_id": fmt.Sprintf("w%d-%d", w, i)}, &m); err == nil {
						acked.Store(m.ID, true)
						break
					}
				}
				if sent.Add(1) == 490 {
					_ = nodes[2].cmd.Process.Signal(syscall.SIGKILL)
				}
			}
		}()
	}
	wg.Wait()
	var want []string
	acked.Range(func(k, _ any) bool { want = append(want, k.(string)); return true })
	if len(want) < 990 {
		t.Fatalf("only %d messages acknowledged", len(want))
	}
	deadline := time.Now().Add(25 * time.Second)
	for {
		mu.Lock()
		got := map[string]bool{}
		for _, msg := range hooks {
			got[msg] = true
		}
		distinct := len(hooks)
		mu.Unlock()
		missing := 0
		for _, id := range want {
			if !got[id] {
				missing++
			}
		}
		if missing == 0 {
			dups := received.Load() - int64(distinct)
			t.Logf("%d acknowledged messages, %d deliveries, %d repeated", len(want), received.Load(), dups)
			if dups > conversations || float64(dups) > 0.01*float64(distinct) {
				t.Fatalf("%d repeated deliveries of %d webhooks: more than one per conversation, or 1 %%", dups, distinct)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages have no webhook", missing, len(want))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
