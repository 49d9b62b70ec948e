package cluster_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/servertest"
	"github.com/parley-chat/parley/internal/testenv"
)

// Short presence settings for the node processes of TestBalancedCluster:
// an offline is announced grace after a user's last stream closed, and a
// dead node's streams stop counting at most lease after its last renewal.
const (
	testGrace = time.Second
	testLease = 3 * time.Second
)

// TestBalancedCluster: three node processes on one PostgreSQL database and a
// private Redis or NATS, behind nginx round-robin, as deploy/ describes. On
// one set of nodes per bus it checks, in order, what a balancer and a dead
// node do to the ephemeral and derived state that lives outside the log:
// typing stops that go through another node than their start, and the
// presence and delivered receipts of a node killed with SIGKILL.
func TestBalancedCluster(t *testing.T) {
	for _, kind := range []string{"redis", "nats"} {
		t.Run(kind, func(t *testing.T) {
			db := testenv.FreshDatabase(t, testenv.Postgres(t))
			var busURL string
			if kind == "redis" {
				_, busURL = testenv.RedisServer(t)
			} else {
				_, busURL = testenv.NATSServer(t)
			}
			if _, err := binary(); err != nil {
				t.Fatal(err) // before any server starts: a broken build is not a skip
			}
			var procs []*testenv.Process
			var nodes []*servertest.Node
			for i := range 3 {
				p, base := startProcessNode(t, fmt.Sprintf("%s-node%d", kind, i),
					"--database-url", db, "--bus", busURL, "--heartbeat", "2s",
					"--presence-grace", testGrace.String(), "--presence-lease", testLease.String())
				procs, nodes = append(procs, p), append(nodes, &servertest.Node{URL: base})
			}
			_, proxyURL := testenv.Nginx(t, hostPort(nodes[0].URL), hostPort(nodes[1].URL), hostPort(nodes[2].URL))
			proxy := &servertest.Node{URL: proxyURL}

			t.Run("TypingThroughTheBalancer", func(t *testing.T) { typingThroughBalancer(t, nodes, proxy) })
			// Last: it kills node 1.
			t.Run("NodeKilled", func(t *testing.T) { nodeKilled(t, procs[1], nodes, proxy) })
		})
	}
}

// typingThroughBalancer: behind round-robin, each typing request goes to the
// next node, so a stop never reaches the node that forwarded its start, and
// a start after a stop made elsewhere reaches a node that forwarded the
// previous start moments ago. The peer sees every start and stop within 1 s.
func typingThroughBalancer(t *testing.T, nodes []*servertest.Node, proxy *servertest.Node) {
	alice := proxy.Register(t, "alice", "client")
	bob := proxy.Register(t, "bob", "professional")
	var conv struct {
		ID string `json:"id"`
	}
	if res := proxy.Do(t, "POST", "/api/conversations", alice.Token, map[string]any{
		"professional_id": bob.ID, "message": map[string]any{"body": "hello"},
	}, &conv); res.StatusCode != http.StatusCreated {
		t.Fatalf("open conversation: %d %s", res.StatusCode, res.Body)
	}
	watcher := openDevice(t, "bob@node0", nodes[0].URL, bob.Token)

	seen := 0 // typing events the watcher has had so far
	typing := func(state string) {
		t.Helper()
		sent := time.Now()
		if res := proxy.Do(t, "POST", "/api/conversations/"+conv.ID+"/typing", alice.Token, map[string]any{"state": state}, nil); res.StatusCode != http.StatusNoContent {
			t.Fatalf("typing %s: %d %s", state, res.StatusCode, res.Body)
		}
		want := `"state":"` + state + `"`
		deadline := sent.Add(time.Second)
		for {
			got := watcher.ephemeralOf("typing")
			if len(got) > seen {
				if !strings.Contains(got[seen], want) || !strings.Contains(got[seen], alice.ID) {
					t.Fatalf("typing event %d is %s, want %s", seen+1, got[seen], want)
				}
				seen++
				t.Logf("%s seen %v after the request", state, time.Since(sent).Round(time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the peer did not see typing %s within 1s (typing events so far: %q)", state, got)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Round-robin over three nodes: start on node k, stop on k+1, a
	// request on k+2, the next start on k again, within its throttle.
	typing("start")
	typing("stop")
	if res := proxy.Do(t, "GET", "/healthz", "", nil, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %d", res.StatusCode)
	}
	typing("start")
	typing("stop")
	if extra := watcher.ephemeralOf("typing"); len(extra) != seen {
		t.Fatalf("typing events %q, want %d", extra, seen)
	}
}

// nodeKilled: node 1 holds the streams of three users, then is SIGKILLed
// (it announces nothing, flushes nothing and never withdraws its presence
// counts). A message reached alice on it just before: her device
// reconnects through nginx and resumes, and the sender gets the delivered
// receipt. Carol does not come back: bob gets her presence offline within
// grace + lease of the kill. Alice, back on another node at once, never
// flickers offline.
func nodeKilled(t *testing.T, victim *testenv.Process, nodes []*servertest.Node, proxy *servertest.Node) {
	alice := proxy.Register(t, "alice", "client")
	carol := proxy.Register(t, "carol", "client")
	bob := proxy.Register(t, "bob", "professional")
	convs := map[string]string{}
	for _, u := range []servertest.User{alice, carol} {
		var conv struct {
			ID string `json:"id"`
		}
		if res := proxy.Do(t, "POST", "/api/conversations", u.Token, map[string]any{
			"professional_id": bob.ID, "message": map[string]any{"body": "hello from " + u.Username},
		}, &conv); res.StatusCode != http.StatusCreated {
			t.Fatalf("open conversation: %d %s", res.StatusCode, res.Body)
		}
		convs[u.ID] = conv.ID
	}
	watcher := openDevice(t, "bob@node0", nodes[0].URL, bob.Token)

	// Carol's only stream is on node 1 and does not reconnect.
	carolStream := nodes[1].OpenStream(t, carol.Token, -1)
	carolStream.NextOf(t, "ready", 5*time.Second)
	// Alice's device goes through nginx and reconnects through it; open
	// until one sits on node 1.
	var aliceDev *device
	for i := 0; aliceDev == nil; i++ {
		if i == 6 {
			t.Fatal("nginx put none of alice's devices on node 1")
		}
		before := streamsOpen(nodes[1].URL)
		d := openDevice(t, fmt.Sprintf("alice@nginx%d", i), proxy.URL, alice.Token)
		if streamsOpen(nodes[1].URL) > before {
			aliceDev = d
		} else {
			d.close()
		}
	}
	for _, u := range []servertest.User{alice, carol} {
		watcher.waitEphemeral(t, "presence", 5*time.Second, u.ID, `"online":true`)
	}
	// Node 1's counts reach the board within its flush, the others read
	// them a read interval later.
	time.Sleep(testLease / 2)

	var msg struct {
		ID  string `json:"id"`
		Seq int64  `json:"seq"`
	}
	if res := nodes[0].Do(t, "POST", "/api/conversations/"+convs[alice.ID]+"/messages", bob.Token, map[string]any{"body": "are you there?"}, &msg); res.StatusCode != http.StatusCreated {
		t.Fatalf("send: %d %s", res.StatusCode, res.Body)
	}
	// Kill node 1 the moment the message is on alice's stream: its delivered
	// marker is then still in node 1's memory (receipts flush every 150 ms).
	aliceDev.waitMessage(t, msg.ID, 5*time.Second)
	victim.Kill()
	killed := time.Now()

	watcher.waitReceipt(t, alice.ID, "delivered", msg.Seq, 10*time.Second)
	t.Logf("delivered receipt %v after the kill", time.Since(killed).Round(time.Millisecond))

	// Grace + lease, plus a read interval and a second for a busy machine.
	watcher.waitEphemeral(t, "presence", testGrace+testLease+2*time.Second, carol.ID, `"online":false`)
	t.Logf("carol offline %v after the kill", time.Since(killed).Round(time.Millisecond))
	time.Sleep(testGrace) // anything about alice would come by now
	if watcher.hasEphemeral("presence", alice.ID, `"online":false`) {
		t.Fatal("alice, who reconnected to another node, was announced offline")
	}
	if aliceDev.connections() < 2 {
		t.Fatal("alice's device did not reconnect")
	}
	var u struct {
		Online bool `json:"online"`
	}
	for _, n := range []*servertest.Node{nodes[0], nodes[2]} {
		if res := n.Do(t, "GET", "/api/users/"+alice.ID, bob.Token, nil, &u); res.StatusCode != http.StatusOK || !u.Online {
			t.Errorf("%s shows alice online=%v (%d)", n.URL, u.Online, res.StatusCode)
		}
		if res := n.Do(t, "GET", "/api/users/"+carol.ID, bob.Token, nil, &u); res.StatusCode != http.StatusOK || u.Online {
			t.Errorf("%s shows carol online=%v (%d)", n.URL, u.Online, res.StatusCode)
		}
	}
	aliceDev.check(t)
}

// ephemeralOf returns the data of the ephemeral events of type typ the
// device has had, in order.
func (d *device) ephemeralOf(typ string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, e := range d.ephemeral {
		if e.Type == typ {
			out = append(out, e.Data)
		}
	}
	return out
}

// waitDurable returns as soon as the device has a durable event of type typ
// for which match holds, failing the test after timeout.
func (d *device) waitDurable(t *testing.T, what, typ string, match func(servertest.Event) bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d.mu.Lock()
		for _, e := range d.events {
			if e.Type == typ && match(e) {
				d.mu.Unlock()
				return
			}
		}
		d.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("%s: no %s within %v (last error: %v)", d.name, what, timeout, d.lastError())
		}
		select {
		case <-d.changed:
		case <-time.After(time.Millisecond):
		}
	}
}

// waitMessage waits for the message.created of the message with that id.
func (d *device) waitMessage(t *testing.T, msgID string, timeout time.Duration) {
	t.Helper()
	d.waitDurable(t, "message "+msgID, "message.created", func(e servertest.Event) bool {
		return strings.Contains(e.Data, `"id":"`+msgID+`"`)
	}, timeout)
}

// waitReceipt waits for a receipt of kind by userID that covers seq.
func (d *device) waitReceipt(t *testing.T, userID, kind string, seq int64, timeout time.Duration) {
	t.Helper()
	d.waitDurable(t, fmt.Sprintf("%s receipt of %s up to %d", kind, userID, seq), "receipt", func(e servertest.Event) bool {
		var r struct {
			UserID  string `json:"user_id"`
			Kind    string `json:"kind"`
			UpToSeq int64  `json:"up_to_seq"`
		}
		return json.Unmarshal([]byte(e.Data), &r) == nil && r.UserID == userID && r.Kind == kind && r.UpToSeq >= seq
	}, timeout)
}
