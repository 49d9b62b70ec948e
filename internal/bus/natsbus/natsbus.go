// Package natsbus is the bus over NATS core subjects (PARLEY_BUS=nats://…),
// and a presence board over a JetStream key-value bucket.
//
// Core NATS keeps nothing for a disconnected subscriber, which is fine for
// hints (see package bus). nats.go reconnects by itself, resubscribes, and
// holds what is published while disconnected in a buffer that it sends on
// reconnecting; after a reconnect the node is told (resumed) and has its
// streams read the log for what it may have missed.
package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parley-chat/parley/internal/bus"
)

// DefaultPrefix starts the subject (prefix.bus) and the presence bucket's
// name (prefix_presence); the URL's prefix parameter changes it.
const DefaultPrefix = "parley"

// Bus is a node's connection to the NATS bus.
type Bus struct {
	nc      *nats.Conn
	node    string
	prefix  string
	subject string
	log     *slog.Logger

	mu      sync.Mutex
	sub     *nats.Subscription
	resumed func()
	kv      jetstream.KeyValue
}

// Open connects to the NATS server(s) at rawURL (nats://host:port, several
// separated by commas, plus an optional prefix parameter) as the node named
// node. It fails if no server answers now; later outages are ridden out.
func Open(ctx context.Context, rawURL, node string, logger *slog.Logger) (*Bus, error) {
	prefix, servers, err := splitPrefix(rawURL)
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	b := &Bus{node: node, prefix: prefix, subject: prefix + ".bus", log: logger}
	b.nc, err = nats.Connect(servers,
		nats.Name("parley "+node),
		nats.Timeout(2*time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		// Pings find a connection that died silently within seconds.
		nats.PingInterval(2*time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("bus: nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { go b.onReconnect() }),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	return b, nil
}

// splitPrefix takes the query (prefix=…) off the server list, which may
// name several servers separated by commas.
func splitPrefix(rawURL string) (prefix, servers string, err error) {
	servers, query, _ := strings.Cut(rawURL, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", "", fmt.Errorf("bus url: %w", err)
	}
	prefix = DefaultPrefix
	if v := q.Get("prefix"); v != "" {
		prefix = v
	}
	return prefix, servers, nil
}

// onReconnect runs after nats.go has reconnected and sent the subscription
// again. The flush waits until the server has it, so the streams poked by
// resumed cannot miss a message published after the poke.
func (b *Bus) onReconnect() {
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		b.log.Warn("bus: nats flush after reconnect", "err", err)
	}
	b.log.Info("bus: nats subscription resumed")
	b.mu.Lock()
	resumed := b.resumed
	b.mu.Unlock()
	if resumed != nil {
		resumed()
	}
}

// Publish sends m on the subject. While disconnected, nats.go buffers it.
func (b *Bus) Publish(ctx context.Context, m bus.Message) error {
	m.Node = b.node
	for _, part := range bus.Split(m) {
		payload, err := bus.Encode(part)
		if err != nil {
			return err
		}
		if err := b.nc.Publish(b.subject, payload); err != nil {
			return fmt.Errorf("nats publish: %w", err)
		}
	}
	return nil
}

// Subscribe implements bus.Bus. It returns once the server has the
// subscription, so nothing published after it returns is missed.
func (b *Bus) Subscribe(receive func(bus.Message), resumed func()) error {
	sub, err := b.nc.Subscribe(b.subject, func(msg *nats.Msg) {
		m, err := bus.Decode(msg.Data)
		if err != nil {
			b.log.Warn("bus: bad message", "err", err)
			return
		}
		if m.Node != b.node {
			receive(m)
		}
	})
	if err != nil {
		return fmt.Errorf("nats subscribe: %w", err)
	}
	// A burst larger than this is dropped by nats.go as a slow consumer;
	// the streams' heartbeat re-read covers it.
	_ = sub.SetPendingLimits(65536, 64<<20)
	b.mu.Lock()
	b.sub, b.resumed = sub, resumed
	b.mu.Unlock()
	if err := b.nc.FlushTimeout(5 * time.Second); err != nil {
		return fmt.Errorf("nats subscribe: %w", err)
	}
	return nil
}

// Ping reports whether the connection is up and the server answers.
func (b *Bus) Ping(ctx context.Context) error {
	if s := b.nc.Status(); s != nats.CONNECTED {
		return fmt.Errorf("nats: %s", s)
	}
	if _, ok := ctx.Deadline(); !ok { // FlushWithContext insists on one
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
	}
	return b.nc.FlushWithContext(ctx)
}

// Close unsubscribes and disconnects, sending what is buffered first.
func (b *Bus) Close() error {
	b.mu.Lock()
	sub := b.sub
	b.sub, b.resumed = nil, nil
	b.mu.Unlock()
	var err error
	if sub != nil {
		err = sub.Unsubscribe()
	}
	if errors.Is(err, nats.ErrConnectionClosed) {
		err = nil
	}
	b.nc.Close()
	return err
}

// Board returns a presence board in the JetStream key-value bucket
// prefix_presence, in memory, whose entries expire ttl after their last
// write. The bucket is created if missing, and its TTL updated if it
// differs, so all nodes must use the same ttl. It fails when the server has
// no JetStream.
func (b *Bus) Board(ctx context.Context, ttl time.Duration) (bus.Board, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.kv != nil {
		return &board{kv: b.kv}, nil
	}
	js, err := jetstream.New(b.nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      b.prefix + "_presence",
		Description: "Parley: open streams per node, for presence",
		History:     1,
		TTL:         ttl,
		Storage:     jetstream.MemoryStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("nats presence bucket: %w", err)
	}
	b.kv = kv
	return &board{kv: kv}, nil
}

type board struct{ kv jetstream.KeyValue }

func (bd *board) Put(ctx context.Context, node string, value []byte) error {
	_, err := bd.kv.Put(ctx, node, value)
	return err
}

// All reads every live entry with one watcher: it sends the current values
// and then nil.
func (bd *board) All(ctx context.Context) (map[string][]byte, error) {
	w, err := bd.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	out := make(map[string][]byte)
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				return out, nil
			}
			out[e.Key()] = e.Value()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (bd *board) Remove(ctx context.Context, node string) error {
	return bd.kv.Purge(ctx, node)
}
