// Package bus is how Parley nodes tell each other what happened: a user's log
// grew, an ephemeral event (typing, presence) is for a user, a session ended.
//
// The bus carries hints, never the events themselves: the durable log in the
// shared database is the truth. A node that receives "user U's log grew to
// N" pokes U's local streams, which read the log; a lost message costs
// latency (streams re-read the log at every heartbeat), never an event.
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
	// Ephemeral is an event without an id for the users' open streams.
	Ephemeral *Ephemeral `json:"eph,omitempty"`
	// Kick ends the streams of a session (logout, expiry).
	Kick *Kick `json:"kick,omitempty"`
	// Resync asks every node to have all its streams read their logs: the
	// sender lost its connection and may have failed to publish heads.
	Resync bool `json:"resync,omitempty"`
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

// Split returns m as one or more messages of at most MaxHeads heads each.
func Split(m Message) []Message {
	if len(m.Heads) <= MaxHeads {
		return []Message{m}
	}
	var out []Message
	for i := 0; i < len(m.Heads); i += MaxHeads {
		part := m
		part.Heads = m.Heads[i:min(i+MaxHeads, len(m.Heads))]
		if i > 0 {
			part.Ephemeral, part.Kick, part.Resync = nil, nil, false
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
