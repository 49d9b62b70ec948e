package cluster_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
	"github.com/parley-chat/parley/internal/testenv"
)

// TestChatAcrossNodes: three nodes on one database and a Redis bus, behind
// nginx. A client and a professional whose streams sit on different nodes
// (and a second device each, through nginx) exchange published events and
// chat messages in both directions; every device sees its user's ids 1, 2,
// 3… with nothing missing or repeated, and the messages in order.
func TestChatAcrossNodes(t *testing.T) {
	nodes := startNodes(t, 3, withPrefix(testenv.Redis(t)), nil)
	_, proxyURL := testenv.Nginx(t, hostPort(nodes[0].URL), hostPort(nodes[1].URL), hostPort(nodes[2].URL))
	proxy := &servertest.Node{URL: proxyURL}

	alice := proxy.Register(t, "alice", "client")
	bob := proxy.Register(t, "bob", "professional")
	alicePhone := openDevice(t, "alice@node0", nodes[0].URL, alice.Token)
	aliceLaptop := openDevice(t, "alice@nginx", proxyURL, alice.Token)
	bobPhone := openDevice(t, "bob@node1", nodes[1].URL, bob.Token)
	bobLaptop := openDevice(t, "bob@nginx", proxyURL, bob.Token)

	// Published events, each committed on a node other than some of the
	// recipients' streams.
	for i := range 10 {
		via := nodes[i%3].URL
		switch i % 3 {
		case 0:
			mustPublish(t, via, "app.both", map[string]int{"i": i}, alice.ID, bob.ID)
		case 1:
			mustPublish(t, via, "app.alice", map[string]int{"i": i}, alice.ID)
		default:
			mustPublish(t, proxyURL, "app.bob", map[string]int{"i": i}, bob.ID)
		}
	}

	// Chat: alice opens a conversation on node 0, bob answers on node 1,
	// then they alternate through nginx and node 2.
	var conv struct {
		ID string `json:"id"`
	}
	res := nodes[0].Do(t, "POST", "/api/conversations", alice.Token, map[string]any{
		"professional_id": bob.ID, "subject": "across nodes", "message": map[string]any{"body": "m1"},
	}, &conv)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("open conversation: %d %s", res.StatusCode, res.Body)
	}
	senders := []struct {
		via   *servertest.Node
		token string
	}{{nodes[1], bob.Token}, {proxy, alice.Token}, {nodes[2], bob.Token}, {nodes[0], alice.Token}, {proxy, bob.Token}}
	const messages = 12
	for i := 2; i <= messages; i++ {
		s := senders[(i-2)%len(senders)]
		res := s.via.Do(t, "POST", "/api/conversations/"+conv.ID+"/messages", s.token, map[string]any{"body": fmt.Sprintf("m%d", i)}, nil)
		if res.StatusCode != http.StatusCreated {
			t.Fatalf("send m%d: %d %s", i, res.StatusCode, res.Body)
		}
	}

	// A last event marks each log's head.
	heads := mustPublish(t, nodes[2].URL, "app.done", map[string]any{}, alice.ID, bob.ID)
	for _, d := range []*device{alicePhone, aliceLaptop} {
		d.waitFor(t, heads[alice.ID], 10*time.Second)
	}
	for _, d := range []*device{bobPhone, bobLaptop} {
		d.waitFor(t, heads[bob.ID], 10*time.Second)
	}
	for _, d := range []*device{alicePhone, aliceLaptop, bobPhone, bobLaptop} {
		var bodies []string
		for _, e := range d.check(t) {
			if e.Type != "message.created" {
				continue
			}
			var m struct {
				Seq  int64  `json:"seq"`
				Body string `json:"body"`
			}
			e.Decode(t, &m)
			if m.Seq != int64(len(bodies)+1) {
				t.Errorf("%s: message seq %d at position %d", d.name, m.Seq, len(bodies)+1)
			}
			bodies = append(bodies, m.Body)
		}
		if len(bodies) != messages {
			t.Errorf("%s: %d messages, want %d: %v", d.name, len(bodies), messages, bodies)
		}
	}
	// The two devices of a user saw the same log. Delivered receipts are
	// flushed in the background and may land after app.done, on one device
	// before the other: wait until both have the newer head.
	newest := max(alicePhone.lastID(), aliceLaptop.lastID())
	alicePhone.waitFor(t, newest, 10*time.Second)
	aliceLaptop.waitFor(t, newest, 10*time.Second)
	// Each holds ids 1… with no gap (check), so the first newest compare.
	a, b := alicePhone.check(t), aliceLaptop.check(t)
	if int64(min(len(a), len(b))) < newest {
		t.Fatalf("alice's devices saw %d and %d events, want at least %d", len(a), len(b), newest)
	}
	a, b = a[:newest], b[:newest]
	for i := range a {
		if a[i].Type != b[i].Type || a[i].Data != b[i].Data {
			t.Fatalf("alice's devices differ at id %d: %s %s / %s %s", a[i].ID, a[i].Type, a[i].Data, b[i].Type, b[i].Data)
		}
	}
}

// TestLogoutAndEphemeralAcrossNodes: a logout on one node ends the session's
// stream on another at once (through the bus, not the periodic sweep), and
// a typing event reaches the peer's stream on another node.
func TestLogoutAndEphemeralAcrossNodes(t *testing.T) {
	nodes := startNodes(t, 2, withPrefix(testenv.Redis(t)), func(c *config.Config) {
		c.IdleTimeout = 0 // the session sweep then runs only every 5 s
	})
	alice := nodes[0].Register(t, "alice", "client")
	bob := nodes[0].Register(t, "bob", "professional")

	var conv struct {
		ID string `json:"id"`
	}
	if res := nodes[0].Do(t, "POST", "/api/conversations", alice.Token, map[string]any{
		"professional_id": bob.ID, "message": map[string]any{"body": "hello"},
	}, &conv); res.StatusCode != http.StatusCreated {
		t.Fatalf("open conversation: %d %s", res.StatusCode, res.Body)
	}

	bobStream := nodes[1].OpenStream(t, bob.Token, -1)
	bobStream.NextOf(t, "ready", 5*time.Second)
	if res := nodes[0].Do(t, "POST", "/api/conversations/"+conv.ID+"/typing", alice.Token, map[string]any{"state": "start"}, nil); res.StatusCode != http.StatusNoContent {
		t.Fatalf("typing: %d %s", res.StatusCode, res.Body)
	}
	e := bobStream.NextOf(t, "typing", 3*time.Second)
	if e.HasID {
		t.Fatalf("typing event has an id: %+v", e)
	}

	aliceStream := nodes[1].OpenStream(t, alice.Token, -1)
	aliceStream.NextOf(t, "ready", 5*time.Second)
	start := time.Now()
	if res := nodes[0].Do(t, "POST", "/api/auth/logout", alice.Token, nil, nil); res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d", res.StatusCode)
	}
	aliceStream.NextOf(t, "session.expired", 3*time.Second)
	t.Logf("stream on the other node ended %v after logout", time.Since(start))
}

// TestNodeKilled: three node processes behind nginx under a publish load;
// one is killed with SIGKILL in the middle. Its devices reconnect through
// nginx to the others, and every acknowledged event reaches every
// recipient exactly once, in order.
func TestNodeKilled(t *testing.T) {
	db := testenv.FreshDatabase(t, testenv.Postgres(t))
	busURL := withPrefix(testenv.Redis(t))
	if _, err := binary(); err != nil {
		t.Fatal(err) // before any server starts: a broken build is not a skip
	}
	var procs []*testenv.Process
	var bases []string
	for i := range 3 {
		p, base := startProcessNode(t, fmt.Sprintf("node%d", i),
			"--database-url", db, "--bus", busURL, "--heartbeat", "2s")
		procs, bases = append(procs, p), append(bases, base)
	}
	_, proxyURL := testenv.Nginx(t, hostPort(bases[0]), hostPort(bases[1]), hostPort(bases[2]))
	proxy := &servertest.Node{URL: proxyURL}
	victim := 1

	const users = 8
	var ids, tokens []string
	var devices []*device
	owner := map[*device]string{}
	for i := range users {
		u := proxy.Register(t, fmt.Sprintf("u%d", i), "client")
		ids, tokens = append(ids, u.ID), append(tokens, u.Token)
		d := openDevice(t, fmt.Sprintf("u%d@nginx", i), proxyURL, u.Token)
		devices, owner[d] = append(devices, d), u.ID
	}
	// nginx spreads the streams round-robin; make sure the victim holds
	// some, or the test would prove nothing.
	for i := 0; streamsOpen(bases[victim]) < 2; i++ {
		if i == 30 {
			t.Fatalf("the victim node holds %d streams", streamsOpen(bases[victim]))
		}
		d := openDevice(t, fmt.Sprintf("u%d-extra%d@nginx", i%users, i), proxyURL, tokens[i%users])
		devices, owner[d] = append(devices, d), ids[i%users]
	}
	t.Logf("streams per node before the kill: %d %d %d", streamsOpen(bases[0]), streamsOpen(bases[1]), streamsOpen(bases[2]))

	var mu sync.Mutex
	acked := map[string][]int64{}
	var okCount, failCount atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				to := []string{ids[r.IntN(users)], ids[r.IntN(users)]}
				if to[0] == to[1] {
					to = to[:1]
				}
				got, err := publish(proxyURL, "app.load", map[string]int{"w": w, "n": n}, to...)
				if err != nil {
					failCount.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				okCount.Add(1)
				mu.Lock()
				for u, id := range got {
					acked[u] = append(acked[u], id)
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	time.Sleep(2 * time.Second)
	procs[victim].Kill()
	t.Logf("killed node %d after %d acknowledged publishes", victim, okCount.Load())
	time.Sleep(4 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d publishes acknowledged, %d failed (requests that met the dying node)", okCount.Load(), failCount.Load())

	heads := mustPublish(t, proxyURL, "app.done", map[string]any{}, ids...)
	reconnected := 0
	for _, d := range devices {
		d.waitFor(t, heads[owner[d]], 20*time.Second)
		if d.connections() > 1 {
			reconnected++
		}
	}
	if reconnected == 0 {
		t.Fatal("no device had to reconnect: the killed node held no stream")
	}
	t.Logf("%d of %d devices reconnected", reconnected, len(devices))
	for _, d := range devices {
		got := d.check(t) // exactly 1..head, once each
		mu.Lock()
		for _, id := range acked[owner[d]] {
			if id < 1 || id > int64(len(got)) || got[id-1].ID != id {
				t.Errorf("%s: acknowledged event %d not received", d.name, id)
			}
		}
		mu.Unlock()
	}
}

// TestBusOutage stops a private Redis or NATS for 5 s under a publish load
// and starts it again. Each user's stream sits on a node other than the one
// that commits their events, so delivery needs the bus. Nothing is lost, and
// delivery is back within seconds of the restart without restarting any
// node — long before the 30 s heartbeat's re-read of the log would have
// brought it. Throughout, /readyz stays 200 (a shared bus must not take
// every node out of the balancer at once) and parley_bus_up tells the
// outage.
func TestBusOutage(t *testing.T) {
	for _, kind := range []string{"redis", "nats"} {
		t.Run(kind, func(t *testing.T) {
			var srv *testenv.Process
			var busURL string
			if kind == "redis" {
				srv, busURL = testenv.RedisServer(t)
			} else {
				srv, busURL = testenv.NATSServer(t)
			}
			nodes := startNodes(t, 3, busURL, func(c *config.Config) { c.Heartbeat = 30 * time.Second })

			const users = 6
			var ids []string
			var devices []*device
			for i := range users {
				u := nodes[0].Register(t, fmt.Sprintf("u%d", i), "client")
				ids = append(ids, u.ID)
				devices = append(devices, openDevice(t, fmt.Sprintf("u%d@node%d", i, i%3), nodes[i%3].URL, u.Token))
			}
			// Events for user i are committed on node i+1: never the node
			// of the user's stream.
			heads := make([]int64, users)
			publishRound := func(round int) {
				for i := range users {
					got := mustPublish(t, nodes[(i+1)%3].URL, "app.tick", map[string]int{"round": round}, ids[i])
					heads[i] = got[ids[i]]
				}
			}
			waitAll := func(timeout time.Duration) {
				t.Helper()
				for i, d := range devices {
					d.waitFor(t, heads[i], timeout)
				}
			}

			publishRound(0)
			waitAll(3 * time.Second) // live over the bus, well under the heartbeat

			for _, n := range nodes {
				if up := gauge(n.URL, "parley_bus_up"); up != 1 {
					t.Fatalf("%s: parley_bus_up = %v with the bus up", n.URL, up)
				}
			}
			srv.Kill()
			deadline := time.Now().Add(5 * time.Second)
			for gauge(nodes[0].URL, "parley_bus_up") != 0 {
				if time.Now().After(deadline) {
					t.Fatal("parley_bus_up still not 0 5s into the outage")
				}
				time.Sleep(100 * time.Millisecond)
			}
			for _, n := range nodes {
				if code := ready(n.URL); code != http.StatusOK {
					t.Errorf("%s /readyz = %d during a bus outage, want 200", n.URL, code)
				}
			}
			outage := time.Now()
			for round := 1; time.Since(outage) < 5*time.Second; round++ {
				publishRound(round) // the store is up: every publish is acknowledged
				time.Sleep(50 * time.Millisecond)
			}
			srv.Start()
			restarted := time.Now()
			publishRound(1000)
			waitAll(8 * time.Second)
			t.Logf("all delivered %v after the bus restarted", time.Since(restarted))
			for _, d := range devices {
				d.check(t)
			}
			// Live delivery over the bus works again, and the gauge says so.
			publishRound(1001)
			waitAll(3 * time.Second)
			for _, n := range nodes {
				if code := ready(n.URL); code != http.StatusOK {
					t.Errorf("%s /readyz = %d after the bus came back", n.URL, code)
				}
				deadline := time.Now().Add(5 * time.Second)
				for gauge(n.URL, "parley_bus_up") != 1 {
					if time.Now().After(deadline) {
						t.Fatalf("%s: parley_bus_up not back to 1 within 5s", n.URL)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
}

// TestNATSCluster: three nodes on a NATS bus under a publish load from
// several goroutines to users whose streams are spread over the nodes; all
// events arrive, once each, in order.
func TestNATSCluster(t *testing.T) {
	// A private server: the presence bucket goes with it.
	_, natsURL := testenv.NATSServer(t)
	nodes := startNodes(t, 3, natsURL, nil)
	const users = 9
	var ids []string
	var devices []*device
	for i := range users {
		u := nodes[i%3].Register(t, fmt.Sprintf("n%d", i), "client")
		ids = append(ids, u.ID)
		devices = append(devices, openDevice(t, fmt.Sprintf("n%d@node%d", i, i%3), nodes[i%3].URL, u.Token))
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := map[string]int64{}
	for w := range 3 {
		wg.Go(func() {
			for n := range 40 {
				to := []string{ids[(w+n)%users]}
				if other := ids[(w+2*n+1)%users]; other != to[0] {
					to = append(to, other)
				}
				if _, err := publish(nodes[w].URL, "app.load", map[string]int{"w": w, "n": n}, to...); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
				mu.Lock()
				for _, u := range to {
					want[u]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	heads := mustPublish(t, nodes[0].URL, "app.done", map[string]any{}, ids...)
	for i, d := range devices {
		if heads[ids[i]] != want[ids[i]]+1 {
			t.Errorf("user %d's head is %d, want %d", i, heads[ids[i]], want[ids[i]]+1)
		}
		d.waitFor(t, heads[ids[i]], 10*time.Second)
		d.check(t)
	}
}

// TestInProcessCluster needs no bus service: two nodes of one process on
// PostgreSQL and a memory:// bus. It checks the wiring that the Redis and
// NATS tests share — publish on one node, deliver on the other — wherever
// those services are missing. (Nodes cannot share a SQLite file: the store
// refuses a second opener, TestSecondOpenRefused.)
func TestInProcessCluster(t *testing.T) {
	nodes := startNodes(t, 2, "memory://"+unique("cluster"), nil)
	a, b := nodes[0], nodes[1]

	u := a.Register(t, "mem", "client")
	d := openDevice(t, "mem@b", b.URL, u.Token)
	var last int64
	for i := range 5 {
		last = mustPublish(t, a.URL, "app.x", map[string]int{"i": i}, u.ID)[u.ID]
	}
	d.waitFor(t, last, 3*time.Second) // the heartbeat (15 s) would be too late
	d.check(t)
}

// TestSmallCommitsCrossWithoutLogReads: a small commit's events travel on
// the bus whole, so the node holding the stream delivers them without
// reading the log (before, each one cost that node a read); a commit too
// large to carry still arrives, through a head and a read.
func TestSmallCommitsCrossWithoutLogReads(t *testing.T) {
	nodes := startNodes(t, 2, "memory://"+unique("carry"), nil)
	a, b := nodes[0], nodes[1]
	u := a.Register(t, "carry", "client")
	d := openDevice(t, "carry@b", b.URL, u.Token)
	var last int64
	for i := range 20 {
		last = mustPublish(t, a.URL, "app.small", map[string]int{"i": i}, u.ID)[u.ID]
	}
	d.waitFor(t, last, 3*time.Second)
	d.check(t)
	if n := gauge(b.URL, "parley_events_replayed_total"); n != 0 {
		t.Fatalf("node b read %v events from the log for 20 small publishes on node a, want 0", n)
	}

	big := strings.Repeat("x", 200<<10) // over what the bus carries whole
	last = mustPublish(t, a.URL, "app.big", map[string]string{"blob": big}, u.ID)[u.ID]
	d.waitFor(t, last, 3*time.Second)
	d.check(t)
	if n := gauge(b.URL, "parley_events_replayed_total"); n != 1 {
		t.Fatalf("node b read %v events from the log for one large publish, want 1", n)
	}
}

// TestPresenceAcrossNodes: presence counts streams over all nodes. A user
// with streams on two nodes who closes one stays online (the node whose
// stream closed sees the other's through the bus), and goes offline once
// the last one closes, on whichever node it was.
func TestPresenceAcrossNodes(t *testing.T) {
	nodes := startNodes(t, 2, withPrefix(testenv.Redis(t)), func(c *config.Config) {
		c.PresenceGrace = 300 * time.Millisecond
	})
	alice := nodes[0].Register(t, "alice", "client")
	bob := nodes[0].Register(t, "bob", "professional")
	if res := nodes[0].Do(t, "POST", "/api/conversations", alice.Token, map[string]any{
		"professional_id": bob.ID, "message": map[string]any{"body": "hello"},
	}, nil); res.StatusCode != http.StatusCreated {
		t.Fatalf("open conversation: %d %s", res.StatusCode, res.Body)
	}
	watcher := openDevice(t, "bob@node1", nodes[1].URL, bob.Token)
	online := func(via *servertest.Node) bool {
		var u struct {
			Online bool `json:"online"`
		}
		if res := via.Do(t, "GET", "/api/users/"+alice.ID, bob.Token, nil, &u); res.StatusCode != http.StatusOK {
			t.Fatalf("get user: %d", res.StatusCode)
		}
		return u.Online
	}

	onNode0 := nodes[0].OpenStream(t, alice.Token, -1)
	watcher.waitEphemeral(t, "presence", 5*time.Second, alice.ID, `"online":true`)
	onNode1 := nodes[1].OpenStream(t, alice.Token, -1)
	onNode1.NextOf(t, "ready", 5*time.Second)
	// Let the counts cross: each node writes within 0.5 s and reads the
	// others every 2 s.
	time.Sleep(3 * time.Second)

	onNode0.Close()
	time.Sleep(2 * time.Second) // well past the grace period
	if watcher.hasEphemeral("presence", alice.ID, `"online":false`) {
		t.Fatal("alice announced offline while she holds a stream on node 1")
	}
	if !online(nodes[0]) || !online(nodes[1]) {
		t.Fatal("alice shown offline while she holds a stream on node 1")
	}

	onNode1.Close()
	closed := time.Now()
	watcher.waitEphemeral(t, "presence", 8*time.Second, alice.ID, `"online":false`)
	t.Logf("offline announced %v after the last stream closed", time.Since(closed))
	deadline := time.Now().Add(5 * time.Second)
	for online(nodes[0]) || online(nodes[1]) {
		if time.Now().After(deadline) {
			t.Fatal("alice still shown online with no stream left")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
