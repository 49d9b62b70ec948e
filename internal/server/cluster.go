package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/bus"
	"github.com/parley-chat/parley/internal/bus/natsbus"
	"github.com/parley-chat/parley/internal/bus/redisbus"
	"github.com/parley-chat/parley/internal/presence"
	"github.com/parley-chat/parley/internal/stream"
)

// openBus connects to the bus named by url: redis://, rediss://, nats://,
// or memory://name (nodes of one process, for tests). An empty url is a
// single node: no bus at all.
func openBus(ctx context.Context, url, node string, logger *slog.Logger) (bus.Bus, error) {
	switch {
	case url == "":
		return nil, nil
	case strings.HasPrefix(url, "redis://"), strings.HasPrefix(url, "rediss://"):
		return redisbus.Open(ctx, url, node, logger)
	case strings.HasPrefix(url, "nats://"), strings.HasPrefix(url, "tls://"):
		return natsbus.Open(ctx, url, node, logger)
	case strings.HasPrefix(url, "memory://"):
		return bus.Named(strings.TrimPrefix(url, "memory://")).Join(node), nil
	}
	return nil, fmt.Errorf("bus: unsupported scheme in %q", redact(url))
}

// outboxSize bounds the messages waiting for the bus. When the bus is slow
// or down the oldest are dropped: they are hints, and the streams' heartbeat
// re-read of the log covers what they would have said.
const outboxSize = 4096

// cluster is this node's side of the bus: it publishes what happened here
// without ever making a commit wait, and applies what other nodes publish
// to the local hub.
type cluster struct {
	bus bus.Bus
	hub *stream.Hub
	log *slog.Logger
	// counter shares presence counts with the other nodes; nil when the
	// bus offers no board.
	counter *bus.Counter
	// typingSeen is told of the typing events other nodes forward, for
	// the chat service's throttle; set before start.
	typingSeen func(data []byte)

	mu     sync.Mutex
	outbox []bus.Message
	// lost is set when a message was dropped or failed to go out: once the
	// bus takes messages again, the others are asked to resync. losses
	// counts such events, so a resync only clears lost if nothing was lost
	// while it was being sent.
	lost   bool
	losses int

	// down is set while the bus does not answer its ping (watch).
	down atomic.Bool

	wake chan struct{} // the outbox has messages
	poke chan struct{} // a PokeAll is wanted; coalesces bursts of them
	stop chan struct{}
	wg   sync.WaitGroup
}

// openCluster connects this node, under a new id, to the bus named by url.
// It returns nil for a single node (url empty); the methods below accept
// a nil cluster.
func openCluster(ctx context.Context, url string, lease time.Duration, logger *slog.Logger) (*cluster, error) {
	node := parley.NewID("node")
	b, err := openBus(ctx, url, node, logger)
	if err != nil || b == nil {
		return nil, err
	}
	return &cluster{
		bus: b, log: logger, counter: presenceCounter(ctx, b, node, bus.LeaseTiming(lease), logger),
		wake: make(chan struct{}, 1), poke: make(chan struct{}, 1), stop: make(chan struct{}),
	}, nil
}

// presenceCounter is the stream counter for presence: shared by all nodes
// when the bus allows, else this node's own.
func (c *cluster) presenceCounter() presence.Counter {
	if c == nil || c.counter == nil {
		return presence.NewLocal()
	}
	return c.counter
}

// attach makes hub the one the cluster delivers other nodes' messages to,
// relays the hub's ephemeral events and kicks, and tells the presence
// tracker of users whose streams elsewhere are gone. Before start.
func (c *cluster) attach(hub *stream.Hub, tracker *presence.Tracker) {
	if c == nil {
		return
	}
	c.hub = hub
	hub.SetRelay(c)
	if c.counter != nil {
		c.counter.OnGone(tracker.Recheck)
	}
}

// observeTyping hands the typing events other nodes forward to fn too, so
// that the typing throttle counts what went through them. Before start.
func (c *cluster) observeTyping(fn func(data []byte)) {
	if c != nil {
		c.typingSeen = fn
	}
}

// start subscribes and runs the sender and the poker. Once it returns, the
// node hears every message published by the others.
func (c *cluster) start() error {
	if err := c.bus.Subscribe(c.receive, c.resumed); err != nil {
		return err
	}
	c.wg.Add(3)
	go c.sender()
	go c.poker()
	go c.watch()
	return nil
}

// busCheckEvery is the pace of the bus health check behind parley_bus_up.
const busCheckEvery = 2 * time.Second

// watch pings the bus every busCheckEvery and logs when it stops and
// starts answering: /readyz leaves the bus out, so this is where an outage
// shows.
func (c *cluster) watch() {
	defer c.wg.Done()
	t := time.NewTicker(busCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), busCheckEvery)
		err := c.ping(ctx)
		cancel()
		switch {
		case err != nil && !c.down.Swap(true):
			c.log.Error("bus: unreachable; serving on, streams read their logs at each heartbeat", "err", err)
		case err == nil && c.down.Swap(false):
			c.log.Info("bus: reachable again")
		}
	}
}

// upGauge is parley_bus_up.
func (c *cluster) upGauge() float64 {
	if c.down.Load() {
		return 0
	}
	return 1
}

// carryEvents and carryBytes bound the commits whose events travel whole
// on the bus. A message, a receipt flush (two events per conversation
// whose marker moved, up to a few hundred) does, and the nodes holding the
// users' streams deliver it as it arrives; without it each of them read the
// log, a database transaction per user and node, which on PostgreSQL cost
// more than the send itself. A fan-out to thousands of users travels as
// heads: every node would decode all of it, while a node reads the log only
// for the users it holds streams of.
const (
	carryEvents = 1000
	carryBytes  = 128 << 10
)

// committed queues the events of one commit for the other nodes: whole if
// the commit is small, else "these users' logs grew". It is called on the
// commit path and only appends to a slice.
func (c *cluster) committed(events []parley.Event) {
	size := 0
	for i := range events {
		size += len(events[i].Data)
	}
	if len(events) <= carryEvents && size <= carryBytes {
		carried := make([]bus.Event, len(events))
		for i, e := range events {
			carried[i] = bus.Event{UserID: e.UserID, ID: e.ID, Type: e.Type, Data: e.Data, Time: e.Time.UnixMicro()}
		}
		c.enqueue(bus.Message{Events: carried})
		return
	}
	c.enqueue(bus.Message{Heads: headsOf(events)})
}

// headsOf returns the highest id per user of events, users in the order
// they first appear.
func headsOf(events []parley.Event) []bus.Head {
	heads := make([]bus.Head, 0, 4)
	// A commit's events are in log order per user, so a user's last event
	// carries its head; a transaction usually touches a few users.
	last := make(map[string]int, 4)
	for _, e := range events {
		if i, ok := last[e.UserID]; ok {
			heads[i].LastID = max(heads[i].LastID, e.ID)
			continue
		}
		last[e.UserID] = len(heads)
		heads = append(heads, bus.Head{UserID: e.UserID, LastID: e.ID})
	}
	return heads
}

// Ephemeral implements stream.Relay.
func (c *cluster) Ephemeral(typ string, data []byte, userIDs []string) {
	c.enqueue(bus.Message{Ephemeral: &bus.Ephemeral{
		Type: typ, Data: json.RawMessage(append([]byte(nil), data...)), UserIDs: append([]string(nil), userIDs...),
	}})
}

// KickSession implements stream.Relay.
func (c *cluster) KickSession(userID, sessionID string) {
	c.enqueue(bus.Message{Kick: &bus.Kick{UserID: userID, SessionID: sessionID}})
}

func (c *cluster) enqueue(m bus.Message) {
	c.mu.Lock()
	if len(c.outbox) >= outboxSize {
		n := copy(c.outbox, c.outbox[outboxSize/4:])
		c.outbox = c.outbox[:n]
		if !c.lost {
			c.log.Warn("bus: outbox full, dropping the oldest notifications; streams re-read their logs at each heartbeat")
		}
		c.setLost()
	}
	c.outbox = append(c.outbox, m)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// resyncEvery is how often a node that owes the others a resync (it lost
// messages) tries to send it while the bus is down.
const resyncEvery = 500 * time.Millisecond

// sender publishes the outbox in order. The heads of all queued commits go
// out together, one entry per user, so a burst of commits costs a few
// messages rather than one each. While a resync is owed it retries every
// resyncEvery, so the others catch up as soon as the bus is back even if
// this node commits nothing more.
func (c *cluster) sender() {
	defer c.wg.Done()
	retry := time.NewTimer(resyncEvery)
	retry.Stop()
	for {
		select {
		case <-c.stop:
			c.send() // what is queued at shutdown, once
			return
		case <-c.wake:
		case <-retry.C:
		}
		if !c.send() {
			retry.Reset(resyncEvery)
		}
	}
}

// send publishes what is queued, preceded by a resync if one is owed. It
// reports whether the others are owed nothing.
func (c *cluster) send() bool {
	c.mu.Lock()
	batch := c.outbox
	c.outbox = nil
	resync, losses := c.lost, c.losses
	c.mu.Unlock()
	if len(batch) == 0 && !resync {
		return true
	}
	var msgs []bus.Message
	if resync {
		msgs = append(msgs, bus.Message{Resync: true})
	}
	heads := map[string]int{} // user → index in merged.Heads
	var merged bus.Message
	addHead := func(h bus.Head) {
		if i, ok := heads[h.UserID]; ok {
			merged.Heads[i].LastID = max(merged.Heads[i].LastID, h.LastID)
			return
		}
		heads[h.UserID] = len(merged.Heads)
		merged.Heads = append(merged.Heads, h)
	}
	carried := 0
	for _, m := range batch {
		for _, h := range m.Heads {
			addHead(h)
		}
		for _, e := range m.Events {
			// Past the message's bound the rest go as heads: a burst
			// then costs the receivers reads, not an oversized message.
			if carried += len(e.Data); carried > bus.MaxCarried {
				addHead(bus.Head{UserID: e.UserID, LastID: e.ID})
				continue
			}
			merged.Events = append(merged.Events, e)
		}
		if m.Ephemeral != nil || m.Kick != nil {
			msgs = append(msgs, bus.Message{Ephemeral: m.Ephemeral, Kick: m.Kick})
		}
	}
	if len(merged.Heads) > 0 || len(merged.Events) > 0 {
		msgs = append(msgs, merged)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for i, m := range msgs {
		if err := c.bus.Publish(ctx, m); err != nil {
			c.mu.Lock()
			if !c.lost {
				c.log.Warn("bus: publish failed; other nodes' streams fall back to reading their logs", "err", err, "dropped", len(msgs)-i)
			}
			c.setLost()
			c.mu.Unlock()
			return false
		}
	}
	if resync {
		c.mu.Lock()
		// Unless something else was lost meanwhile, the others have all.
		if c.losses == losses {
			c.lost = false
			c.log.Info("bus: publishing again")
		}
		c.mu.Unlock()
	}
	return true
}

// setLost records that the others missed messages; c.mu is held.
func (c *cluster) setLost() {
	c.lost = true
	c.losses++
}

// receive applies another node's message to the local hub. The hub ignores
// users without streams here at the cost of a map lookup.
func (c *cluster) receive(m bus.Message) {
	// Events before heads: a head that a carried event reaches is then
	// already delivered, not a gap to read the log for.
	if len(m.Events) > 0 {
		events := make([]parley.Event, len(m.Events))
		for i, e := range m.Events {
			events[i] = parley.Event{UserID: e.UserID, ID: e.ID, Type: e.Type, Data: e.Data, Time: parley.T(time.UnixMicro(e.Time))}
		}
		c.hub.Publish(events)
	}
	for _, h := range m.Heads {
		c.hub.Notify(h.UserID, h.LastID)
	}
	if e := m.Ephemeral; e != nil {
		// The throttle first: once a stream here has the event, this
		// node's throttle knows of it.
		if e.Type == parley.EventTyping && c.typingSeen != nil {
			c.typingSeen(e.Data)
		}
		c.hub.EphemeralLocal(e.Type, e.Data, e.UserIDs...)
	}
	if k := m.Kick; k != nil {
		c.hub.KickSessionLocal(k.UserID, k.SessionID)
	}
	if m.Resync {
		c.pokeAll()
	}
}

// resumed runs when the subscription is back after an outage: what the
// others published meanwhile is lost, so every local stream reads its log,
// and the others are asked to do the same for what this node could not
// publish.
func (c *cluster) resumed() {
	c.pokeAll()
	c.mu.Lock()
	c.setLost()
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *cluster) pokeAll() {
	select {
	case c.poke <- struct{}{}:
	default: // one is pending already and will cover this one
	}
}

func (c *cluster) poker() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.poke:
			c.hub.PokeAll()
		}
	}
}

// presenceCounter returns a stream counter shared by all nodes when the bus
// offers a presence board, and nil (count locally) otherwise. A bus whose
// board cannot be had (NATS without JetStream) degrades to local counting.
// Each node renews its entry every few seconds; a dead node's expires.
func presenceCounter(ctx context.Context, b bus.Bus, node string, timing bus.Timing, logger *slog.Logger) *bus.Counter {
	bb, ok := b.(bus.Boarder)
	if !ok {
		return nil
	}
	board, err := bb.Board(ctx, timing.TTL)
	if err != nil {
		logger.Warn("bus: no presence board; presence counts this node's streams only", "err", err)
		return nil
	}
	c := bus.NewCounter(board, node, timing, logger)
	c.Start()
	return c
}

func (c *cluster) ping(ctx context.Context) error {
	if p, ok := c.bus.(bus.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// close sends what is queued, withdraws this node's presence counts, then
// disconnects. It also undoes an openCluster that was never started.
func (c *cluster) close() error {
	if c == nil {
		return nil
	}
	close(c.stop)
	c.wg.Wait()
	if c.counter != nil {
		c.counter.Close()
	}
	return c.bus.Close()
}
