package bus

import (
	"context"
	"sync"
	"time"
)

// Memory is an in-process bus. The nodes that Join one Memory hear each
// other; a node alone on its Memory (the default, single-node set-up) has
// nobody to tell, so its Publish costs nothing.
type Memory struct {
	mu    sync.RWMutex
	nodes map[*memoryNode]bool
	board *memoryBoard
}

// NewMemory returns an empty in-process bus.
func NewMemory() *Memory { return &Memory{nodes: make(map[*memoryNode]bool)} }

var (
	namedMu sync.Mutex
	named   = map[string]*Memory{}
)

// Named returns the process-wide Memory of that name, created on first use:
// PARLEY_BUS=memory://name lets nodes started in one process (tests) form a
// cluster without an outside bus.
func Named(name string) *Memory {
	namedMu.Lock()
	defer namedMu.Unlock()
	m := named[name]
	if m == nil {
		m = NewMemory()
		named[name] = m
	}
	return m
}

// Join returns the bus of one node named id.
func (m *Memory) Join(id string) Bus { return &memoryNode{m: m, id: id} }

type memoryNode struct {
	m       *Memory
	id      string
	mu      sync.Mutex // receive is called one message at a time
	receive func(Message)
}

// Publish hands m to every other subscribed node, synchronously, cut as
// the network buses cut it so that receivers see the same messages.
func (n *memoryNode) Publish(ctx context.Context, msg Message) error {
	msg.Node = n.id
	n.m.mu.RLock()
	defer n.m.mu.RUnlock()
	for _, part := range Split(msg) {
		for o := range n.m.nodes {
			if o != n {
				o.mu.Lock()
				o.receive(part)
				o.mu.Unlock()
			}
		}
	}
	return nil
}

func (n *memoryNode) Subscribe(receive func(Message), resumed func()) error {
	n.receive = receive
	n.m.mu.Lock()
	n.m.nodes[n] = true
	n.m.mu.Unlock()
	return nil
}

func (n *memoryNode) Close() error {
	n.m.mu.Lock()
	delete(n.m.nodes, n)
	n.m.mu.Unlock()
	return nil
}

func (n *memoryNode) Ping(context.Context) error { return nil }

// Board returns the Memory's presence board, shared by its nodes, whose
// entries expire ttl after their last write.
func (n *memoryNode) Board(_ context.Context, ttl time.Duration) (Board, error) {
	n.m.mu.Lock()
	defer n.m.mu.Unlock()
	if n.m.board == nil {
		n.m.board = &memoryBoard{entries: make(map[string]memoryEntry), ttl: ttl}
	}
	return n.m.board, nil
}

type memoryBoard struct {
	mu      sync.Mutex
	entries map[string]memoryEntry
	ttl     time.Duration
}

type memoryEntry struct {
	value   []byte
	expires time.Time
}

func (b *memoryBoard) Put(_ context.Context, node string, value []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.entries[node] = memoryEntry{value: value, expires: time.Now().Add(b.ttl)}
	return nil
}

func (b *memoryBoard) All(context.Context) (map[string][]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	out := make(map[string][]byte, len(b.entries))
	for n, e := range b.entries {
		if now.Before(e.expires) {
			out[n] = e.value
		} else {
			delete(b.entries, n)
		}
	}
	return out, nil
}

func (b *memoryBoard) Remove(_ context.Context, node string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.entries, node)
	return nil
}
