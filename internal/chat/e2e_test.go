package chat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/servertest"
)

// device is one tab or phone of a user: it holds a stream, and now and then
// the stream is cut and resumed from the last id it saw.
type device struct {
	name  string
	user  servertest.User
	token string

	mu         sync.Mutex
	lastID     int64
	created    []parley.Message            // message.created, in arrival order
	receipts   map[string]map[string]int64 // kind → user → highest up_to_seq
	reconnects int
	dialErr    error
	err        error
}

func (d *device) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(d.name+": "+format, args...)
	}
}

// run keeps a stream open until ctx ends, cutting it after a random
// 30–300 ms each time and resuming with Last-Event-ID.
func (d *device) run(ctx context.Context, url string, rng *rand.Rand) {
	for ctx.Err() == nil {
		cctx, cancel := context.WithCancel(ctx)
		cut := time.AfterFunc(time.Duration(30+rng.IntN(270))*time.Millisecond, cancel)
		d.mu.Lock()
		from := d.lastID
		d.mu.Unlock()
		err := dial(cctx, url, d.token, from, d.handle)
		cut.Stop()
		cancel()
		d.mu.Lock()
		d.reconnects++
		if err != nil && cctx.Err() == nil {
			d.dialErr = err // e.g. refused; kept for the failure message
		}
		d.mu.Unlock()
	}
}

func (d *device) handle(e servertest.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !e.HasID {
		return
	}
	// Every durable id exactly once, in order, across every reconnect.
	if e.ID != d.lastID+1 {
		d.fail("event id %d after %d", e.ID, d.lastID)
	}
	d.lastID = e.ID
	switch e.Type {
	case parley.EventMessageCreated:
		var m parley.Message
		if err := json.Unmarshal([]byte(e.Data), &m); err != nil {
			d.fail("decode message: %v", err)
		}
		d.created = append(d.created, m)
	case parley.EventReceipt:
		var r parley.Receipt
		if err := json.Unmarshal([]byte(e.Data), &r); err != nil {
			d.fail("decode receipt: %v", err)
		}
		if d.receipts[r.Kind] == nil {
			d.receipts[r.Kind] = map[string]int64{}
		}
		if r.UpToSeq <= d.receipts[r.Kind][r.UserID] {
			d.fail("%s receipt of %s went from %d to %d", r.Kind, r.UserID, d.receipts[r.Kind][r.UserID], r.UpToSeq)
		}
		d.receipts[r.Kind][r.UserID] = r.UpToSeq
	}
}

func (d *device) snapshot() (created []parley.Message, receipts map[string]map[string]int64, reconnects int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	receipts = map[string]map[string]int64{}
	for k, m := range d.receipts {
		receipts[k] = map[string]int64{}
		for u, v := range m {
			receipts[k][u] = v
		}
	}
	return slices.Clone(d.created), receipts, d.reconnects, d.err
}

// Two users with two devices each; 200 messages sent concurrently in both
// directions while every stream is cut and resumed at random. Every device
// must see every message once, in seq order, and the markers must add up.
func TestEndToEndConcurrentReconnects(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("end-to-end")
	}
	n := servertest.Start(t)
	client := n.Register(t, "c", parley.RoleClient)
	pro := n.Register(t, "p", parley.RoleProfessional)

	var devices []*device
	for _, u := range []servertest.User{client, pro} {
		for i := range 2 {
			devices = append(devices, &device{name: fmt.Sprintf("%s/%d", u.Username, i), user: u, token: u.Token,
				receipts: map[string]map[string]int64{}})
		}
	}
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i, d := range devices {
		wg.Go(func() { d.run(ctx, n.URL, rand.New(rand.NewPCG(uint64(i), 42))) })
	}
	defer func() { stop(); wg.Wait() }()
	timeout := time.Now().Add(28 * time.Second)

	conv := openConv(t, n, client, pro, "first")
	began := time.Now()

	// 100 messages from each side, four senders per side. Every tenth
	// message is sent twice with its client_id, as a client retrying after a
	// lost answer would; the retry must answer the original.
	const perSide, workers = 100, 4
	type sent struct {
		id, body string
		sender   string
	}
	var (
		smu   sync.Mutex
		sents []sent
		errs  = make(chan error, 2*perSide)
	)
	var swg sync.WaitGroup
	for _, u := range []servertest.User{client, pro} {
		for w := range workers {
			swg.Go(func() {
				for i := w; i < perSide; i += workers {
					body := fmt.Sprintf("%s #%d <b>&</b> 🙂", u.Username, i)
					req := map[string]any{"body": body, "client_id": fmt.Sprintf("%s-%d", u.ID, i)}
					var m, again parley.Message
					code, b, err := call(ctx, "POST", n.URL+"/api/conversations/"+conv.ID+"/messages", u.Token, req, &m)
					if err != nil || code != http.StatusCreated {
						errs <- fmt.Errorf("send %s: %d %s %v", body, code, b, err)
						return
					}
					if i%10 == 0 {
						code, b, err := call(ctx, "POST", n.URL+"/api/conversations/"+conv.ID+"/messages", u.Token, req, &again)
						if err != nil || code != http.StatusOK || again.ID != m.ID {
							errs <- fmt.Errorf("retry %s: %d %s %v", body, code, b, err)
							return
						}
					}
					smu.Lock()
					sents = append(sents, sent{m.ID, body, u.ID})
					smu.Unlock()
				}
			})
		}
	}
	swg.Wait()
	t.Logf("sent in %v", time.Since(began))
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = 2*perSide + 1

	// Both sides' histories are the same 201 messages, in seq order.
	var histories [2][]*parley.Message
	for i, u := range []servertest.User{client, pro} {
		h1 := getHistory(t, n, u, conv.ID, "?after_seq=0&limit=200")
		h2 := getHistory(t, n, u, conv.ID, "?after_seq=200&limit=200")
		if !h1.HasMore || h2.HasMore {
			t.Fatalf("has_more: %v, %v", h1.HasMore, h2.HasMore)
		}
		histories[i] = append(h1.Messages, h2.Messages...)
	}
	if len(histories[0]) != total {
		t.Fatalf("history holds %d messages, want %d", len(histories[0]), total)
	}
	bySeq := map[int64]*parley.Message{}
	var lastClientSeq, lastProSeq int64
	for i, m := range histories[0] {
		o := histories[1][i]
		if m.Seq != int64(i+1) || o.ID != m.ID || o.Body != m.Body || o.Seq != m.Seq {
			t.Fatalf("histories differ at %d: %+v / %+v", i, m, o)
		}
		bySeq[m.Seq] = m
		if m.SentBy(client.ID) {
			lastClientSeq = m.Seq
		} else {
			lastProSeq = m.Seq
		}
	}
	for _, s := range sents {
		if !slices.ContainsFunc(histories[0], func(m *parley.Message) bool { return m.ID == s.id && m.Body == s.body && m.SentBy(s.sender) }) {
			t.Fatalf("sent message %s missing from history", s.body)
		}
	}

	// Every device receives every message.created exactly once, in seq order.
	waitDevices := func(what string, done func(created []parley.Message, receipts map[string]map[string]int64) bool) {
		t.Helper()
		for {
			all := true
			for _, d := range devices {
				created, receipts, _, err := d.snapshot()
				if err != nil {
					t.Fatal(err)
				}
				all = all && done(created, receipts)
			}
			if all {
				return
			}
			if time.Now().After(timeout) {
				for _, d := range devices {
					created, receipts, rc, _ := d.snapshot()
					d.mu.Lock()
					t.Logf("%s: %d messages, receipts %v, %d reconnects, last id %d, last dial error %v",
						d.name, len(created), receipts, rc, d.lastID, d.dialErr)
					d.mu.Unlock()
				}
				if os.Getenv("CHAT_E2E_DEBUG") != "" {
					for _, d := range devices {
						d.mu.Lock()
						id := d.lastID
						d.mu.Unlock()
						evs := poll(t, n, d.user, id)
						t.Logf("%s: poll after %d: %v", d.name, id, eventTypes(evs))
						s := n.OpenStream(t, d.token, id)
						for range 3 {
							select {
							case e := <-s.Events:
								t.Logf("  stream: %+v", e)
							case <-time.After(time.Second):
								t.Logf("  stream: nothing")
							}
						}
						s.Close()
					}
				}
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitDevices("every message on every device", func(created []parley.Message, _ map[string]map[string]int64) bool {
		return len(created) >= total
	})

	t.Logf("all devices have every message after %v", time.Since(began))
	// Delivered markers: each side's messages reached the other side.
	eventually(t, 5*time.Second, "delivered markers", func() bool {
		return getConv(t, n, client, conv.ID).PeerDeliveredSeq == lastClientSeq &&
			getConv(t, n, pro, conv.ID).PeerDeliveredSeq == lastProSeq
	})
	cc, pc := getConv(t, n, client, conv.ID), getConv(t, n, pro, conv.ID)
	if cc.UnreadCount != perSide || pc.UnreadCount != perSide+1 {
		t.Fatalf("unread before reading: client %d, professional %d", cc.UnreadCount, pc.UnreadCount)
	}
	if cc.LastMessage == nil || cc.LastMessage.Seq != total || pc.LastMessage.ID != cc.LastMessage.ID {
		t.Fatalf("last_message = %+v", cc.LastMessage)
	}

	// Both read everything; every device hears both read receipts.
	for _, u := range []servertest.User{client, pro} {
		if res := n.Do(t, "POST", "/api/conversations/"+conv.ID+"/read", u.Token, map[string]any{"up_to_seq": total}, nil); res.StatusCode != 204 {
			t.Fatalf("read: %d", res.StatusCode)
		}
	}
	waitDevices("receipts on every device", func(_ []parley.Message, r map[string]map[string]int64) bool {
		return r[parley.ReceiptRead][client.ID] == total && r[parley.ReceiptRead][pro.ID] == total &&
			r[parley.ReceiptDelivered][client.ID] == lastProSeq && r[parley.ReceiptDelivered][pro.ID] == lastClientSeq
	})
	t.Logf("all devices have every receipt after %v", time.Since(began))
	cc, pc = getConv(t, n, client, conv.ID), getConv(t, n, pro, conv.ID)
	for _, c := range []*parley.Conversation{cc, pc} {
		if c.UnreadCount != 0 || c.LastReadSeq != total || c.PeerLastReadSeq != total || c.PeerDeliveredSeq != total {
			t.Fatalf("after reading: %+v", c)
		}
	}
	// On a fast run everything may arrive before each stream was cut a few
	// times; keep them cutting and resuming (nothing new arrives, and
	// nothing may arrive twice) until they have.
	eventually(t, 10*time.Second, "three reconnects on every device", func() bool {
		for _, d := range devices {
			if _, _, rc, _ := d.snapshot(); rc < 3 {
				return false
			}
		}
		return true
	})
	stop()
	wg.Wait()

	for _, d := range devices {
		created, _, reconnects, err := d.snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if len(created) != total {
			t.Fatalf("%s got %d message.created, want %d", d.name, len(created), total)
		}
		for i, m := range created {
			if want := bySeq[int64(i+1)]; m.Seq != int64(i+1) || m.ID != want.ID || m.Body != want.Body {
				t.Fatalf("%s: message %d is seq %d %q, want seq %d %q", d.name, i, m.Seq, m.Body, i+1, want.Body)
			}
		}
		if reconnects < 3 {
			t.Fatalf("%s reconnected only %d times; the test did not cut streams", d.name, reconnects)
		}
		t.Logf("%s: %d messages over %d connections", d.name, len(created), reconnects)
	}
}
