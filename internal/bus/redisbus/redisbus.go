// Package redisbus is the bus over Redis pub/sub (PARLEY_BUS=redis://…), and
// a presence board over Redis keys with a TTL.
//
// Pub/sub keeps nothing: a node that is disconnected misses what is
// published meanwhile. That is fine for hints (see package bus); when the
// subscription comes back, the node is told (resumed) and has its streams
// read the log. go-redis reconnects and resubscribes by itself.
package redisbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/parley-chat/parley/internal/bus"
)

// DefaultPrefix namespaces the channel and keys; the URL's prefix parameter
// changes it, so that several clusters can share one Redis (pub/sub channels
// ignore the database number).
const DefaultPrefix = "parley"

// Bus is a node's connection to the Redis bus.
type Bus struct {
	rdb     *redis.Client
	node    string
	channel string
	prefix  string
	log     *slog.Logger

	mu   sync.Mutex
	ps   *redis.PubSub
	done chan struct{}
}

// Open connects to the Redis at rawURL as the node named node. The URL is
// go-redis's (redis://[user:password@]host:port/db, rediss:// for TLS) plus
// an optional prefix parameter. It fails if Redis does not answer now;
// later outages are ridden out.
func Open(ctx context.Context, rawURL, node string, logger *slog.Logger) (*Bus, error) {
	prefix, rest, err := splitPrefix(rawURL)
	if err != nil {
		return nil, err
	}
	opt, err := redis.ParseURL(rest)
	if err != nil {
		return nil, fmt.Errorf("bus url: %w", err)
	}
	// Fail fast while Redis is down: publishing is best effort and the
	// caller's queue would rather drop than wait.
	opt.DialTimeout = 2 * time.Second
	opt.ReadTimeout = 2 * time.Second
	opt.WriteTimeout = 2 * time.Second
	opt.MaxRetries = 3
	if logger == nil {
		logger = slog.Default()
	}
	quietOnce.Do(func() { redis.SetLogger(debugLogger{logger}) })
	b := &Bus{rdb: redis.NewClient(opt), node: node, prefix: prefix, channel: prefix + ":bus", log: logger}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.rdb.Ping(pctx).Err(); err != nil {
		b.rdb.Close()
		return nil, fmt.Errorf("connect to redis: %w", err)
	}
	return b, nil
}

// quietOnce routes go-redis's own log lines (one per failed dial while
// Redis is down, several a second) to debug level; the bus logs the
// outage and the recovery once each. go-redis has one logger per process.
var quietOnce sync.Once

type debugLogger struct{ log *slog.Logger }

func (l debugLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

func splitPrefix(rawURL string) (prefix, rest string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", "", fmt.Errorf("bus url: %w", err)
	}
	q := u.Query()
	prefix = DefaultPrefix
	if v := q.Get("prefix"); v != "" {
		prefix = v
	}
	q.Del("prefix")
	u.RawQuery = q.Encode()
	return prefix, u.String(), nil
}

// Publish sends m on the channel.
func (b *Bus) Publish(ctx context.Context, m bus.Message) error {
	m.Node = b.node
	for _, part := range bus.Split(m) {
		payload, err := bus.Encode(part)
		if err != nil {
			return err
		}
		if err := b.rdb.Publish(ctx, b.channel, payload).Err(); err != nil {
			return fmt.Errorf("redis publish: %w", err)
		}
	}
	return nil
}

// Subscribe implements bus.Bus. It returns once Redis has confirmed the
// subscription, so nothing published after it returns is missed.
func (b *Bus) Subscribe(receive func(bus.Message), resumed func()) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps := b.rdb.Subscribe(ctx, b.channel)
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return fmt.Errorf("redis subscribe: %w", err)
	}
	// The health check pings an idle subscription, so a connection that
	// died silently is replaced within a few seconds.
	ch := ps.ChannelWithSubscriptions(
		redis.WithChannelSize(1024),
		redis.WithChannelHealthCheckInterval(2*time.Second),
		redis.WithChannelPingTimeout(2*time.Second),
	)
	done := make(chan struct{})
	b.mu.Lock()
	b.ps, b.done = ps, done
	b.mu.Unlock()
	go func() {
		defer close(done)
		for v := range ch {
			switch v := v.(type) {
			case *redis.Subscription:
				// The first confirmation was taken above: any other one is
				// a resubscription after a reconnect.
				if v.Kind == "subscribe" {
					b.log.Info("bus: redis subscription resumed")
					resumed()
				}
			case *redis.Message:
				m, err := bus.Decode([]byte(v.Payload))
				if err != nil {
					b.log.Warn("bus: bad message", "err", err)
					continue
				}
				if m.Node != b.node {
					receive(m)
				}
			}
		}
	}()
	return nil
}

// Ping reports whether Redis answers.
func (b *Bus) Ping(ctx context.Context) error { return b.rdb.Ping(ctx).Err() }

// Close unsubscribes and disconnects.
func (b *Bus) Close() error {
	b.mu.Lock()
	ps, done := b.ps, b.done
	b.ps = nil
	b.mu.Unlock()
	var err error
	if ps != nil {
		err = ps.Close()
		<-done
	}
	return errors.Join(err, b.rdb.Close())
}

// Board returns a presence board on the same Redis: one key per node,
// prefix:presence:<node>, that expires ttl after its last write, and a
// sorted set prefix:presence:nodes that indexes them by expiry.
func (b *Bus) Board(_ context.Context, ttl time.Duration) (bus.Board, error) {
	return &board{rdb: b.rdb, prefix: b.prefix + ":presence:", ttl: ttl}, nil
}

type board struct {
	rdb    *redis.Client
	prefix string
	ttl    time.Duration
}

func (bd *board) index() string { return bd.prefix + "nodes" }

func (bd *board) Put(ctx context.Context, node string, value []byte) error {
	now := time.Now()
	_, err := bd.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, bd.prefix+node, value, bd.ttl)
		p.ZAdd(ctx, bd.index(), redis.Z{Score: float64(now.Add(bd.ttl).UnixMilli()), Member: node})
		p.ZRemRangeByScore(ctx, bd.index(), "-inf", strconv.FormatInt(now.UnixMilli(), 10))
		// The index goes too once no node renews it.
		p.PExpire(ctx, bd.index(), 2*bd.ttl)
		return nil
	})
	return err
}

func (bd *board) All(ctx context.Context) (map[string][]byte, error) {
	// The index may lag a key's own TTL by clock skew between nodes; a key
	// that expired reads as nil and is skipped.
	nodes, err := bd.rdb.ZRange(ctx, bd.index(), 0, -1).Result()
	if err != nil || len(nodes) == 0 {
		return nil, err
	}
	keys := make([]string, len(nodes))
	for i, n := range nodes {
		keys[i] = bd.prefix + n
	}
	vals, err := bd.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(nodes))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[nodes[i]] = []byte(s)
		}
	}
	return out, nil
}

func (bd *board) Remove(ctx context.Context, node string) error {
	_, err := bd.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, bd.prefix+node)
		p.ZRem(ctx, bd.index(), node)
		return nil
	})
	return err
}
