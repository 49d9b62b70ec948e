package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/sqlite"
)

// BenchmarkAppend measures durable appends through the store, one event per
// transaction, from many concurrent writers (parallelism × GOMAXPROCS
// goroutines): what group commit buys over one fsync per send.
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			ctx := context.Background()
			db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "b.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			const users = 100
			ids := make([]string, users)
			err = db.Update(ctx, func(tx *store.Tx) error {
				for i := range ids {
					ids[i] = parley.NewID("u")
					u := &parley.User{ID: ids[i], Username: parley.Ptr(fmt.Sprintf("user%d", i)), DisplayName: "x", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: time.Now()}
					if err := tx.CreateUser(u); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			data := []byte(`{"conversation_id":"c_abcdefghijklmnopqrst","body":"hello there, how are you doing today?"}`)
			b.ReportAllocs()
			b.SetParallelism(max(1, writers/2))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					u := ids[i%users]
					err := db.Update(ctx, func(tx *store.Tx) error {
						_, err := tx.Append(parley.NewEvent{UserID: u, Type: "app.bench", Data: data})
						return err
					})
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkEventsAfter measures the replay read of a reconnecting stream: the
// 500 events after a Last-Event-ID, from a log of 1,000 events.
func BenchmarkEventsAfter(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "b.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	uid := parley.NewID("u")
	data := []byte(`{"conversation_id":"c_abcdefghijklmnopqrst","body":"hello there, how are you doing today?"}`)
	err = db.Update(ctx, func(tx *store.Tx) error {
		u := &parley.User{ID: uid, Username: parley.Ptr("replay"), DisplayName: "x", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: time.Now()}
		if err := tx.CreateUser(u); err != nil {
			return err
		}
		evs := make([]parley.NewEvent, 1000)
		for i := range evs {
			evs[i] = parley.NewEvent{UserID: uid, Type: "app.bench", Data: data}
		}
		_, err := tx.Append(evs...)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var got []parley.Event
		err := db.View(ctx, func(tx *store.Tx) error {
			var err error
			got, err = tx.EventsAfter(uid, 500, 500)
			return err
		})
		if err != nil || len(got) != 500 {
			b.Fatalf("got %d events, %v", len(got), err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendFanOut appends one event to each of 10,000 users in one
// transaction: the store's part of a publish with 10,000 user_ids, merges
// into the events table included.
func BenchmarkAppendFanOut(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "f.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	const users = 10000
	evs := make([]parley.NewEvent, users)
	data := []byte(`{"t":1795309394000000000,"kind":"broadcast"}`)
	err = db.Update(ctx, func(tx *store.Tx) error {
		for i := range evs {
			u := &parley.User{ID: parley.NewID("u"), Username: parley.Ptr(fmt.Sprintf("user%d", i)), DisplayName: "x", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: time.Now()}
			if err := tx.CreateUser(u); err != nil {
				return err
			}
			evs[i] = parley.NewEvent{UserID: u.ID, Type: "app.broadcast", Data: data}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		err := db.Update(ctx, func(tx *store.Tx) error {
			_, err := tx.Append(evs...)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	// The appends leave events in the tail that a merge writes later:
	// that work is part of their cost. Pruning merges the whole tail
	// (and, with nothing old enough, deletes nothing).
	err = db.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.PruneEvents(time.Unix(0, 0), 0)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*users)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkMergeTail measures the merge alone: the tail holds 20 fan-outs to
// 10,000 users (what a busy minute leaves), and one op merges them into the
// events table.
func BenchmarkMergeTail(b *testing.B) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "m.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	users := mustCreateUsers(b, db, 10000)
	evs := make([]parley.NewEvent, len(users))
	for i, u := range users {
		evs[i] = parley.NewEvent{UserID: u, Type: "app.broadcast", Data: []byte(`{"t":1795309394000000000,"kind":"broadcast"}`)}
	}
	const rounds = 20
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for range rounds {
			if err := db.Update(ctx, func(tx *store.Tx) error { _, err := tx.Append(evs...); return err }); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := db.Update(ctx, func(tx *store.Tx) error { _, err := tx.PruneEvents(time.Unix(0, 0), 0); return err }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*rounds*len(users)), "µs/event")
}
