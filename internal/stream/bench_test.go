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

// BenchmarkHubFanOut delivers one event to each of N users with one stream
// each (publish API with N user_ids): the hub's part of a fan-out.
func BenchmarkHubFanOut(b *testing.B) {
	for _, users := range []int{100, 10000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			h := stream.NewHub(stream.Limits{Buffer: 256}, nil)
			events := make([]parley.Event, users)
			sinks := make([]*countSink, users)
			for i := range users {
				id := fmt.Sprintf("u_%d", i)
				sinks[i] = &countSink{}
				if _, err := h.Subscribe(id, "s", sinks[i]); err != nil {
					b.Fatal(err)
				}
				events[i] = parley.Event{UserID: id, ID: 1, Type: "app.x", Data: benchData, Time: parley.T(time.Now())}
			}
			b.ReportAllocs()
			for b.Loop() {
				h.Publish(events)
			}
			b.ReportMetric(float64(b.N*users)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
