// Package bus is how Parley nodes tell each other what happened: a user's log
// grew, an ephemeral event (typing, presence) is for a user, a session ended.
//
// The bus is never the only copy of an event: the durable log in the shared
// database is the truth, and the bus carries copies and hints. A small
// commit's events travel whole, so that the nodes holding their users'
// streams deliver them without reading the log; a large one (a fan-out)
// travels as "user U's log grew to N", and the node pokes U's local streams,
// which read the log. A lost message costs latency (streams re-read the log
// at every heartbeat), never an event, and a stream that sees a gap reads
// the log whatever the bus said.
//
// Implementations: Memory (in-process; a single node alone on it has nobody
// to tell), redisbus (Redis pub/sub) and natsbus (NATS core subjects).
package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Message is what one node publishes to the others. Exactly one of its
// parts is usually set; a receiver handles all that are.
type Message struct {
	// Node is the sender's id; a node ignores its own messages.
	Node string `json:"node"`
	// Heads says that these users' logs grew to these ids.
	Heads []Head `json:"heads,omitempty"`
	// Events are committed events, carried whole.
	Events []Event `json:"events,omitempty"`
	// Ephemeral is an event without an id for the users' open streams.
	Ephemeral *Ephemeral `json:"eph,omitempty"`
	// Kick ends the streams of a session (logout, expiry).
	Kick *Kick `json:"kick,omitempty"`
	// Resync asks every node to have all its streams read their logs: the
	// sender lost its connection and may have failed to publish heads.
	Resync bool `json:"resync,omitempty"`
}

// Event is a committed event of a user's log: what the user's streams
// would read from the log, as the node that committed it sent it live.
type Event struct {
	UserID string          `json:"u"`
	ID     int64           `json:"n"`
	Type   string          `json:"t"`
	Data   json.RawMessage `json:"d"`
	// Time is the event's time in Unix microseconds.
	Time int64 `json:"at"`
}

// Head is "the user's log grew to LastID".
type Head struct {
	UserID string `json:"u"`
	LastID int64  `json:"n"`
}

// Ephemeral is an event without an id for every open stream of the users.
type Ephemeral struct {
	Type    string          `json:"type"`
	Data    json.RawMessage `json:"data"`
	UserIDs []string        `json:"users"`
}

// Kick ends the streams opened with a session.
type Kick struct {
	UserID    string `json:"u"`
	SessionID string `json:"s"`
}

// Bus connects this node to the others.
type Bus interface {
	// Publish sends m to the other nodes. It may fail while the bus is
	// unreachable; callers treat delivery as best effort.
	Publish(ctx context.Context, m Message) error
	// Subscribe starts handing the other nodes' messages to receive, one at
	// a time, and calls resumed each time the subscription is back after a
	// loss of connection, when messages may have been missed. It is called
	// once, before Publish, and neither function may block for long.
	Subscribe(receive func(Message), resumed func()) error
	// Close unsubscribes and disconnects.
	Close() error
}

// Pinger is a bus that can tell whether it is connected, for the node's
// bus health check (parley_bus_up; /readyz leaves the bus out).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Boarder is a bus that also offers a presence Board on the same
// connection, for Counter.
type Boarder interface {
	Board(ctx context.Context, ttl time.Duration) (Board, error)
}

// MaxHeads is the most heads one message carries; Split cuts larger ones so
// that a publish to thousands of users stays under the transports' message
// limits (NATS: 1 MiB by default).
const MaxHeads = 2000

// MaxCarried is the most event data, in bytes, that one message carries
// whole; a sender turns the events past it into heads.
const MaxCarried = 256 << 10

// Split returns m as one or more messages of at most MaxHeads heads each.
// Events are not split: the sender bounds them (MaxCarried), and they go
// with the first part.
func Split(m Message) []Message {
	if len(m.Heads) <= MaxHeads {
		return []Message{m}
	}
	var out []Message
	for i := 0; i < len(m.Heads); i += MaxHeads {
		part := m
		part.Heads = m.Heads[i:min(i+MaxHeads, len(m.Heads))]
		if i > 0 {
			part.Ephemeral, part.Kick, part.Resync, part.Events = nil, nil, false, nil
		}
		out = append(out, part)
	}
	return out
}

// Encode is the wire form of a message, shared by the transports.
func Encode(m Message) ([]byte, error) { return json.Marshal(m) }

// Decode parses a message from the wire.
func Decode(b []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("decode bus message: %w", err)
	}
	return m, nil
}
