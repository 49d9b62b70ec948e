package stream_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/stream"
)

var benchData = []byte(`{"id":"m_abcdefghijklmnopqrst","conversation_id":"c_abcdefghijklmnopqrst","seq":42,"sender_id":"u_abcdefghijklmnopqrst","body":"hello there, how are you doing today?","client_id":null,"reply_to":null,"created_at":"2026-11-22T01:00:00.000000Z","edited_at":null,"deleted":false}`)

// BenchmarkNewFrame is the per-event encoding cost; it is paid once per
// event, whatever the number of streams of its user.
func BenchmarkNewFrame(b *testing.B) {
	e := parley.Event{UserID: "u_x", ID: 123456, Type: parley.EventMessageCreated, Data: benchData}
	b.ReportAllocs()
	for b.Loop() {
		_ = stream.NewFrame(e)
	}
}

// countSink counts offers; it stands for a stream that keeps up.
type countSink struct{ n int }

func (c *countSink) Offer(fs []*stream.Frame) bool { c.n += len(fs); return true }
func (c *countSink) Kick(string, *stream.Frame)    {}

// BenchmarkHubFanOut delivers a commit of P publishes, each one event to
// each of N users with one stream each (publish API with N user_ids): the
// hub's part of a fan-out. A group commit hands the hub one sorted run of
// events per publish.
func BenchmarkHubFanOut(b *testing.B) {
	for _, c := range []struct{ users, publishes int }{{100, 1}, {10000, 1}, {10000, 3}} {
		b.Run(fmt.Sprintf("users=%d/publishes=%d", c.users, c.publishes), func(b *testing.B) {
			h := stream.NewHub(stream.Limits{Buffer: 256}, nil)
			events := make([]parley.Event, 0, c.users*c.publishes)
			for i := range c.users {
				if _, err := h.Subscribe(fmt.Sprintf("u_%d", i), "s", &countSink{}); err != nil {
					b.Fatal(err)
				}
			}
			for p := range c.publishes {
				for i := range c.users {
					id := fmt.Sprintf("u_%d", i)
					events = append(events, parley.Event{UserID: id, ID: int64(p + 1), Type: "app.x", Data: benchData, Time: parley.T(time.Now())})
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				h.Publish(events)
			}
			b.ReportMetric(float64(b.N*len(events))/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
