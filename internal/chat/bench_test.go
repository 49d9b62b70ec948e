package chat_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/postgres"
	"github.com/parley-chat/parley/internal/store/sqlite"
	"github.com/parley-chat/parley/internal/testenv"
)

// benchStore opens the store the benchmarks run on: PostgreSQL with
// PARLEY_TEST_DATABASE_URL, else SQLite in a temp dir.
func benchStore(b *testing.B) store.Store {
	b.Helper()
	ctx := context.Background()
	var st store.Store
	var err error
	if u := os.Getenv("PARLEY_TEST_DATABASE_URL"); strings.HasPrefix(u, "postgres") {
		st, err = postgres.Open(ctx, testenv.FreshDatabase(b, u), nil)
	} else {
		st, err = sqlite.Open(ctx, filepath.Join(b.TempDir(), "b.db"), nil)
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	return st
}

// benchConversations makes n conversations, each between its own client
// and one of 10 professionals, and returns [conversation, client] pairs.
func benchConversations(b *testing.B, st store.Store, n int) [][2]string {
	b.Helper()
	out := make([][2]string, n)
	err := st.Update(context.Background(), func(tx *store.Tx) error {
		pros := make([]string, 10)
		for i := range pros {
			pros[i] = parley.NewID("u")
			u := &parley.User{ID: pros[i], Username: ptr(fmt.Sprintf("pro%d", i)), Role: parley.RoleProfessional, PasswordHash: []byte("x"), CreatedAt: time.Now()}
			if err := tx.CreateUser(u); err != nil {
				return err
			}
		}
		for i := range out {
			c := parley.NewID("u")
			u := &parley.User{ID: c, Username: ptr(fmt.Sprintf("client%d", i)), Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: time.Now()}
			if err := tx.CreateUser(u); err != nil {
				return err
			}
			out[i] = [2]string{parley.NewID("conv"), c}
			if err := tx.CreateConversation(&store.ConversationRow{ID: out[i][0], ClientID: c, ProfessionalID: pros[i%10], CreatedAt: store.Now()}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// BenchmarkSend measures sends (message row, seq, two events, and the
// search index) from 64 concurrent senders: the cost a send pays for what
// it writes, under group commit.
func BenchmarkSend(b *testing.B) {
	st := benchStore(b)
	svc := chat.New(st, nil, nil, chat.Options{}, nil)
	convs := benchConversations(b, st, 200)
	body := "Hello, I have a question about the lease renewal and the deposit refund."
	b.ReportAllocs()
	b.SetParallelism(32)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := convs[rand.IntN(len(convs))]
			if _, _, err := svc.Send(context.Background(), c[1], c[0], chat.Message{Body: body}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sends/s")
}

func ptr(s string) *string { return &s }
