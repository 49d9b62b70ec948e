package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestKill9LosesNoWebhook: 200 messages are sent by 8 senders while the
// webhook receiver is down (503), and the node is SIGKILLed halfway. Once
// it is back on the same data dir and the receiver is up, every message the
// server acknowledged has its message.created webhook; a message arriving
// twice arrives with the same webhook-id.
func TestKill9LosesNoWebhook(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills parley processes; skipped with -short")
	}
	var up atomic.Bool
	var mu sync.Mutex
	ids := map[string]map[string]bool{} // message id → webhook-ids it came with
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var env struct {
			Data struct{ ID string } `json:"data"`
		}
		if err := json.Unmarshal(body, &env); err != nil || env.Data.ID == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		if ids[env.Data.ID] == nil {
			ids[env.Data.ID] = map[string]bool{}
		}
		ids[env.Data.ID][r.Header.Get("webhook-id")] = true
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	secret := "whsec_" + base64.StdEncoding.EncodeToString([]byte("parley-kill-test-webhook-secret!"))
	flags := []string{"--webhook-url", rcv.URL, "--webhook-secret", secret,
		"--webhook-events", "message.created", "--webhook-retry-delays", "50ms"}
	dir := t.TempDir()
	p := startParley(t, dir, flags...)
	ctx := context.Background()
	var acked sync.Map // message id → true
	lanes := openLanes(t, []*proc{p}, "whk", 4, &acked)

	var sent atomic.Int64
	var wg sync.WaitGroup
	killed := make(chan struct{})
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := lanes[w%len(lanes)]
			for range 25 {
				var m struct{ ID string }
				if _, err := p.call(ctx, "POST", "/api/conversations/"+l.conv+"/messages", l.client.token,
					map[string]any{"body": "in flight"}, &m); err != nil {
					return // the node is gone
				}
				acked.Store(m.ID, true)
				if sent.Add(1) == 100 {
					_ = p.cmd.Process.Signal(syscall.SIGKILL)
					close(killed)
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-killed:
	default:
		t.Fatal("the senders stopped before the kill")
	}
	<-p.done

	up.Store(true)
	startParley(t, dir, flags...)
	var want []string
	acked.Range(func(k, _ any) bool { want = append(want, k.(string)); return true })
	if len(want) < 100 {
		t.Fatalf("only %d acknowledged messages", len(want))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		var missing []string
		for _, id := range want {
			if len(ids[id]) == 0 {
				missing = append(missing, id)
			}
		}
		var twoIDs []string
		for msg, hooks := range ids {
			if len(hooks) > 1 {
				twoIDs = append(twoIDs, msg)
			}
		}
		mu.Unlock()
		if len(twoIDs) > 0 {
			t.Fatalf("messages delivered under different webhook-ids: %v", twoIDs)
		}
		if len(missing) == 0 {
			t.Logf("%d acknowledged messages, every one's webhook delivered", len(want))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged messages have no webhook, e.g. %v", len(missing), len(want), missing[0])
		}
		time.Sleep(50 * time.Millisecond)
	}
}
