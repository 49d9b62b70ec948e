package natsbus_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/bus"
	"github.com/parley-chat/parley/internal/bus/bustest"
	"github.com/parley-chat/parley/internal/bus/natsbus"
	"github.com/parley-chat/parley/internal/testenv"
)

func open(t *testing.T, url, node string) *natsbus.Bus {
	t.Helper()
	b, err := natsbus.Open(context.Background(), url, node, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestBus(t *testing.T) {
	url := testenv.NATS(t)
	var p bustest.Prefixes
	bustest.Run(t, func(t *testing.T, node string) bus.Bus {
		return open(t, url+"?prefix="+p.Of(t), node)
	})
}

func TestCounter(t *testing.T) {
	// A private server: the test's buckets go with it.
	_, url := testenv.NATSServer(t)
	var p bustest.Prefixes
	bustest.RunCounter(t, func(t *testing.T, node string) bus.Board {
		b, err := open(t, url+"?prefix="+p.Of(t), node).Board(context.Background(), bustest.FastTiming.TTL)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

// TestOutage stops a private NATS server under two subscribed nodes and
// starts it again: both are told their subscription resumed, and messages
// flow again without reopening anything.
func TestOutage(t *testing.T) {
	srv, url := testenv.NATSServer(t)
	a, b := open(t, url, "node-a"), open(t, url, "node-b")
	ra, rb := bustest.NewRecorder(), bustest.NewRecorder()
	if err := a.Subscribe(ra.Receive, ra.Resumed); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(rb.Receive, rb.Resumed); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Publish(ctx, bus.Message{Heads: []bus.Head{{UserID: "u", LastID: 1}}}); err != nil {
		t.Fatal(err)
	}
	rb.WaitFor(t, 5*time.Second, "before the outage", func(ms []bus.Message) bool { return bustest.Heads(ms)["u"] == 1 })

	srv.Kill()
	time.Sleep(500 * time.Millisecond)
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	if err := a.Ping(pctx); err == nil {
		t.Fatal("Ping answers while NATS is down")
	}
	cancel()
	srv.Start()

	deadline := time.Now().Add(15 * time.Second)
	for ra.Resumes() == 0 || rb.Resumes() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("subscriptions not resumed: a %d, b %d", ra.Resumes(), rb.Resumes())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := a.Ping(ctx); err != nil {
		t.Fatalf("Ping after restart: %v", err)
	}
	if err := a.Publish(ctx, bus.Message{Heads: []bus.Head{{UserID: "u", LastID: 3}}}); err != nil {
		t.Fatalf("publish after restart: %v", err)
	}
	rb.WaitFor(t, 5*time.Second, "after the outage", func(ms []bus.Message) bool { return bustest.Heads(ms)["u"] == 3 })
}
