package main

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// TestKill9KeepsDeliveredReceipt: a message reaches its recipient (a poll
// returns it) and the node is SIGKILLed at once, inside the window in which
// the delivered marker is only in memory (chat.ReceiptFlushEvery). The
// delivery happened, so the receipt must follow: once the node is back on
// the same data dir and the recipient resumes from the id it got, the
// sender's log gets the delivered receipt.
func TestKill9KeepsDeliveredReceipt(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills parley processes; skipped with -short")
	}
	dir := t.TempDir()
	p := startParley(t, dir)
	ctx := context.Background()
	client, pro := p.register(t, "kclient", "client"), p.register(t, "kpro", "professional")
	var conv struct{ ID string }
	if _, err := p.call(ctx, "POST", "/api/conversations", client.token, map[string]any{
		"professional_id": pro.id, "message": map[string]any{"body": "hello"},
	}, &conv); err != nil {
		t.Fatal(err)
	}
	type polled struct {
		Events []struct {
			ID   int64           `json:"id"`
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		} `json:"events"`
		LastID int64 `json:"last_id"`
	}
	poll := func(p *proc, u crashUser, after int64, wait int) polled {
		t.Helper()
		var res polled
		if _, err := p.call(ctx, "GET", fmt.Sprintf("/api/events/poll?after=%d&wait=%d", after, wait), u.token, nil, &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	// The professional has read everything so far, receipts included.
	var proAt int64
	for {
		res := poll(p, pro, proAt, 1)
		if len(res.Events) == 0 {
			break
		}
		proAt = res.LastID
	}

	var msg struct {
		Seq int64 `json:"seq"`
	}
	if _, err := p.call(ctx, "POST", "/api/conversations/"+conv.ID+"/messages", client.token, map[string]any{"body": "deliver me"}, &msg); err != nil {
		t.Fatal(err)
	}
	res := poll(p, pro, proAt, 5)
	if len(res.Events) == 0 || res.Events[len(res.Events)-1].Type != "message.created" {
		t.Fatalf("the professional's poll returned %+v, want the message", res.Events)
	}
	// Delivered: the marker waits in memory for the next flush.
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done

	p = startParley(t, dir)
	// The professional's client comes back from where it was.
	poll(p, pro, res.LastID, 0)

	var clientAt int64
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r := poll(p, client, clientAt, 1)
		for _, e := range r.Events {
			var rc struct {
				Kind    string `json:"kind"`
				UserID  string `json:"user_id"`
				UpToSeq int64  `json:"up_to_seq"`
			}
			if e.Type == "receipt" && json.Unmarshal(e.Data, &rc) == nil && rc.Kind == "delivered" && rc.UserID == pro.id && rc.UpToSeq >= msg.Seq {
				return
			}
		}
		clientAt = r.LastID
	}
	t.Fatalf("no delivered receipt for seq %d reached the sender within 5s of the restart", msg.Seq)
}
