package chat_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/store"
)

// BenchmarkSearch measures GET /api/search's work (without HTTP) over
// 20,000 messages of 200 conversations, for a professional in 20 of them (a
// rare whole word, a common word, a short prefix, two words, one
// conversation) and for a client in one (a common word, a rare one).
func BenchmarkSearch(b *testing.B) {
	st := benchStore(b)
	svc := chat.New(st, nil, nil, chat.Options{}, nil)
	convs := benchConversations(b, st, 200)
	vocab := strings.Fields(`lease deposit refund appointment results doctor prescription invoice payment contract
		renewal question answer thanks please tomorrow monday meeting report letter tenant landlord repair heating
		water leak window kitchen bathroom café crème résumé naïve straße`)
	rng := rand.New(rand.NewPCG(1, 2))
	const perConv = 100
	ctx := context.Background()
	for i := 0; i < perConv; i++ {
		err := st.Update(ctx, func(tx *store.Tx) error {
			for _, c := range convs {
				words := make([]string, 12)
				for j := range words {
					words[j] = vocab[rng.IntN(len(vocab))]
				}
				if rng.IntN(1000) == 0 {
					words[0] = "zanzibar"
				}
				now := store.Now()
				seq, err := tx.NextSeq(c[0], now)
				if err != nil {
					return err
				}
				m := &parley.Message{ID: parley.NewID("msg"), ConversationID: c[0], Seq: seq, SenderID: ptr(c[1]),
					Body: strings.Join(words, " "), CreatedAt: parley.T(now)}
				if err := tx.InsertMessage(m); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	// The professional of convs[0] is in every tenth conversation.
	var pro string
	_ = st.View(ctx, func(tx *store.Tx) error {
		m, err := tx.Member(convs[0][0], convs[0][1])
		if err == nil {
			pro = m.PeerID
		}
		return err
	})
	for _, q := range []struct{ name, q, conv string }{
		{"rare", "zanzibar", ""},
		{"common", "lease", ""},
		{"prefix2", "re", ""},
		{"two-words", "water leak", ""},
		{"one-conversation", "lease", convs[0][0]},
		{"client-common", "lease", ""},
		{"client-rare", "zanzibar", ""},
	} {
		who := pro
		if strings.HasPrefix(q.name, "client") {
			who = convs[0][1] // in one conversation of the 200
		}
		b.Run(q.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := svc.Search(ctx, who, chat.SearchRequest{Query: q.q, ConversationID: q.conv, Limit: 20}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
