package bus_test

import (
	"context"
	"sync"
	"testing"

	"github.com/parley-chat/parley/internal/bus"
	"github.com/parley-chat/parley/internal/bus/bustest"
)

func TestMemory(t *testing.T) {
	var mu sync.Mutex
	buses := map[*testing.T]*bus.Memory{}
	bustest.Run(t, func(t *testing.T, node string) bus.Bus {
		mu.Lock()
		m := buses[t]
		if m == nil {
			m = bus.NewMemory()
			buses[t] = m
		}
		mu.Unlock()
		b := m.Join(node)
		t.Cleanup(func() { b.Close() })
		return b
	})
}

func TestCounterOnMemoryBoard(t *testing.T) {
	var mu sync.Mutex
	buses := map[*testing.T]*bus.Memory{}
	bustest.RunCounter(t, func(t *testing.T, node string) bus.Board {
		mu.Lock()
		m := buses[t]
		if m == nil {
			m = bus.NewMemory()
			buses[t] = m
		}
		mu.Unlock()
		b, err := m.Join(node).(bus.Boarder).Board(context.Background(), bustest.FastTiming.TTL)
		if err != nil {
			t.Fatal(err)
		}
		return b
	})
}

func TestSplit(t *testing.T) {
	m := bus.Message{Node: "n", Resync: true}
	for i := range 2*bus.MaxHeads + 1 {
		m.Heads = append(m.Heads, bus.Head{UserID: "u", LastID: int64(i)})
	}
	parts := bus.Split(m)
	if len(parts) != 3 || len(parts[0].Heads) != bus.MaxHeads || len(parts[2].Heads) != 1 {
		t.Fatalf("split into %d parts", len(parts))
	}
	if !parts[0].Resync || parts[1].Resync {
		t.Fatal("the other parts of a message must be sent once")
	}
}
