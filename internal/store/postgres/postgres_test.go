package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/postgres"
	"github.com/parley-chat/parley/internal/store/storetest"
	"github.com/parley-chat/parley/internal/testenv"
)

// openForTest opens the store on a fresh database of the test server
// (PARLEY_TEST_POSTGRES), skipping when there is none.
func openForTest(t *testing.T, hook store.CommitHook) store.Store {
	t.Helper()
	url := testenv.FreshDatabase(t, testenv.Postgres(t))
	db, err := postgres.Open(context.Background(), url, hook)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestStore(t *testing.T) {
	testenv.Postgres(t) // without a server, skip the suite once, not case by case
	storetest.Run(t, openForTest)
}

// TestNodesShareLogs runs two stores on one database, as two nodes would,
// appending to the same users at once: ids stay contiguous across them.
func TestNodesShareLogs(t *testing.T) {
	url := testenv.FreshDatabase(t, testenv.Postgres(t))
	ctx := context.Background()
	// Both open at once: the migration lock makes them take turns.
	nodes := make([]*postgres.DB, 3)
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i := range nodes {
		wg.Go(func() { nodes[i], errs[i] = postgres.Open(ctx, url, nil) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open node %d: %v", i, err)
		}
		t.Cleanup(func() { nodes[i].Close() })
	}
	u := &parley.User{ID: parley.NewID("usr"), Username: parley.Ptr("shared"), DisplayName: "s", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: store.Now()}
	if err := nodes[0].Update(ctx, func(tx *store.Tx) error { return tx.CreateUser(u) }); err != nil {
		t.Fatal(err)
	}
	const each = 60
	for _, n := range nodes {
		for range 2 {
			wg.Go(func() {
				for range each / 2 {
					if err := n.Update(ctx, func(tx *store.Tx) error {
						return tx.AppendJSON("app.x", map[string]int{}, u.ID)
					}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	var evs []parley.Event
	if err := nodes[2].View(ctx, func(tx *store.Tx) (err error) { evs, err = tx.EventsAfter(u.ID, 0, 1000); return err }); err != nil {
		t.Fatal(err)
	}
	if len(evs) != each*len(nodes) {
		t.Fatalf("%d events, want %d", len(evs), each*len(nodes))
	}
	for i, e := range evs {
		if e.ID != int64(i+1) {
			t.Fatalf("event %d has id %d", i, e.ID)
		}
	}
}

// TestDeadlockRetried makes two transactions lock two rows in opposite
// orders. PostgreSQL aborts one of them; Update runs it again and both
// succeed.
func TestDeadlockRetried(t *testing.T) {
	st := openForTest(t, nil).(*postgres.DB)
	ctx := context.Background()
	users := make([]string, 2)
	for i := range users {
		u := &parley.User{ID: parley.NewID("usr"), Username: parley.Ptr(fmt.Sprintf("dl%d", i)), DisplayName: "d", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: store.Now()}
		if err := st.Update(ctx, func(tx *store.Tx) error { return tx.CreateUser(u) }); err != nil {
			t.Fatal(err)
		}
		users[i] = u.ID
	}
	var barrier sync.WaitGroup
	barrier.Add(2)
	var attempts [2]atomic.Int32
	run := func(i int) error {
		first, second := users[i], users[1-i]
		return st.Update(ctx, func(tx *store.Tx) error {
			n := attempts[i].Add(1)
			if err := tx.SetLastSeen(first, time.Now()); err != nil {
				return err
			}
			if n == 1 {
				// Both hold their first row before either asks for its second.
				barrier.Done()
				barrier.Wait()
			}
			return tx.SetLastSeen(second, time.Now())
		})
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { errs[i] = run(i) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("transaction %d: %v", i, err)
		}
	}
	if total := attempts[0].Load() + attempts[1].Load(); total < 3 {
		t.Fatalf("%d attempts in all: no deadlock happened, the test proves nothing", total)
	}
}

// TestSwallowedErrorRetried: fn goes on after a failed statement, which
// PostgreSQL turns into a rollback at commit. Update runs fn again.
func TestSwallowedErrorRetried(t *testing.T) {
	st := openForTest(t, nil)
	ctx := context.Background()
	u := &parley.User{ID: parley.NewID("usr"), Username: parley.Ptr("dup"), DisplayName: "d", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: store.Now()}
	if err := st.Update(ctx, func(tx *store.Tx) error { return tx.CreateUser(u) }); err != nil {
		t.Fatal(err)
	}
	var calls int
	err := st.Update(ctx, func(tx *store.Tx) error {
		calls++
		if calls == 1 {
			dup := *u
			dup.ID = parley.NewID("usr")
			_ = tx.CreateUser(&dup) // conflict, ignored: the transaction is now aborted
		}
		return tx.AppendJSON("app.x", map[string]int{}, u.ID)
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if calls != 2 {
		t.Fatalf("fn ran %d times, want 2", calls)
	}
}

func TestPoolSizeInURL(t *testing.T) {
	url := testenv.FreshDatabase(t, testenv.Postgres(t)) // carries pool_max_conns=8
	db, err := postgres.Open(context.Background(), url, nil)
	if err != nil {
		t.Fatalf("open with pool_max_conns: %v", err)
	}
	db.Close()
	if _, err := postgres.Open(context.Background(), strings.Replace(url, "pool_max_conns=8", "pool_max_conns=zero", 1), nil); err == nil {
		t.Fatal("bad pool_max_conns accepted")
	}
}

// statements counts the statements a connection runs, BEGIN and COMMIT
// aside, and the round trips: on PostgreSQL each round trip is paid on the
// path of every message while the row locks it took are held. A batch
// is one round trip for all its statements.
type statements struct{ n, trips atomic.Int64 }

func control(sql string) bool {
	switch strings.ToLower(strings.TrimSpace(sql)) {
	case "begin", "commit", "rollback":
		return true
	}
	return strings.HasPrefix(strings.ToLower(sql), "begin ")
}

func (s *statements) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	s.trips.Add(1)
	if !control(d.SQL) {
		s.n.Add(1)
	}
	return ctx
}

func (s *statements) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (s *statements) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	s.trips.Add(1)
	return ctx
}

func (s *statements) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	if !control(d.SQL) {
		s.n.Add(1)
	}
}

func (s *statements) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TestOneStatementPerStep: an append for any number of users and a
// receipt flush of any number of markers are one statement each (before:
// an append to two users was six, as the statement sizes kept for SQLite
// split it into single rows, and a flush one per marker).
func TestOneStatementPerStep(t *testing.T) {
	url := testenv.FreshDatabase(t, testenv.Postgres(t))
	ctx := context.Background()
	var count statements
	var committed []parley.Event // the hook's, from the last commit
	db, err := postgres.OpenTraced(ctx, url, func(evs []parley.Event) { committed = evs }, &count)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })

	users := make([]string, 1200)
	err = db.Update(ctx, func(tx *store.Tx) error {
		for i := range users {
			users[i] = fmt.Sprintf("usr_%04d", i)
			u := &parley.User{ID: users[i], Username: parley.Ptr(users[i]), DisplayName: "u", Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: store.Now()}
			if err := tx.CreateUser(u); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Round trips: the BEGIN goes with the first statement, and the
	// COMMIT with a last write held back; a transaction of one held
	// write needs neither.
	steps := func(what string, stmts, trips int64, fn func(tx *store.Tx) error) {
		t.Helper()
		count.n.Store(0)
		count.trips.Store(0)
		if err := db.Update(ctx, fn); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if n := count.n.Load(); n != stmts {
			t.Errorf("%s ran %d statements, want %d", what, n, stmts)
		}
		if n := count.trips.Load(); n != trips {
			t.Errorf("%s took %d round trips, want %d", what, n, trips)
		}
	}
	step := func(what string, trips int64, fn func(tx *store.Tx) error) {
		t.Helper()
		steps(what, 1, trips, fn)
	}
	step("an append to two users", 2, func(tx *store.Tx) error {
		_, err := tx.Append(parley.NewEvent{UserID: users[1], Type: "app.x", Data: []byte(`{}`)},
			parley.NewEvent{UserID: users[0], Type: "app.x", Data: []byte(`{}`)})
		return err
	})
	payload := []byte(`{"blob":"` + strings.Repeat("x", 64<<10) + `"}`)
	step("a fan-out to 1,200 users", 2, func(tx *store.Tx) error {
		evs := make([]parley.NewEvent, len(users))
		for i, u := range users {
			evs[i] = parley.NewEvent{UserID: u, Type: "app.fan", Data: payload}
		}
		_, err := tx.Append(evs...)
		return err
	})
	err = db.View(ctx, func(tx *store.Tx) error {
		for _, u := range []string{users[0], users[1], users[999]} {
			evs, err := tx.EventsAfter(u, 0, 10)
			if err != nil {
				return err
			}
			want := 2
			if u == users[999] {
				want = 1
			}
			if len(evs) != want || evs[len(evs)-1].ID != int64(want) || string(evs[len(evs)-1].Data) != string(payload) {
				return fmt.Errorf("log of %s: %d events, want %d ending with the fan-out", u, len(evs), want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	convs := []string{"cnv_1", "cnv_2"}
	err = db.Update(ctx, func(tx *store.Tx) error {
		for i, c := range convs {
			row := &store.ConversationRow{ID: c, ClientID: users[2*i], ProfessionalID: users[2*i+1], CreatedAt: store.Now()}
			if err := tx.CreateConversation(row); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	msg := &parley.Message{ID: "msg_1", ConversationID: "cnv_1", Seq: 1, Kind: parley.MessageUser, SenderID: &users[0],
		Body: "hello there", ClientID: parley.Ptr("c-1"), CreatedAt: parley.T(store.Now())}
	step("a message with its search words and its two events", 1, func(tx *store.Tx) error {
		if err := tx.InsertMessage(msg); err != nil {
			return err
		}
		return tx.AppendJSON(parley.EventMessageCreated, msg, users[0], users[1])
	})
	// A send as chat makes it: the membership check with the seq, then
	// the message with its events (and its webhook, when webhooks are
	// on) and the COMMIT. The webhook costs no round trip: it rides with
	// the message and its events.
	send := func(id, sender, peer string, webhook bool) func(tx *store.Tx) error {
		return func(tx *store.Tx) error {
			m := &parley.Message{ID: id, ConversationID: "cnv_2", Kind: parley.MessageUser, SenderID: &sender,
				Body: "and again", CreatedAt: parley.T(store.Now())}
			var err error
			if _, m.Seq, err = tx.MemberNextSeq("cnv_2", sender, store.Now()); err != nil {
				return err
			}
			if err := tx.InsertMessage(m); err != nil {
				return err
			}
			if err := tx.AppendJSON(parley.EventMessageCreated, m, sender, peer); err != nil {
				return err
			}
			if !webhook {
				return nil
			}
			return tx.InsertWebhook("message.created", "cnv_2", m.ID, m)
		}
	}
	steps("a send", 2, 2, send("msg_3", users[2], users[3], false))
	steps("a send with its webhook", 2, 2, send("msg_4", users[3], users[2], true))
	if len(committed) != 2 || committed[0].Type != parley.EventMessageCreated {
		t.Errorf("the send with its webhook committed %d events, want its two", len(committed))
	}
	err = db.View(ctx, func(tx *store.Tx) error {
		pending, _, err := tx.WebhookCounts()
		if err == nil && pending != 1 {
			err = fmt.Errorf("%d webhooks pending, want the send's one", pending)
		}
		return err
	})
	if err != nil {
		t.Error(err)
	}
	// Two appends held back in a row: the first goes out on its own when
	// the second is held, the second with the COMMIT, and both reach the
	// hook with their ids (each log holds the fan-out above).
	steps("two appends held back", 2, 2, func(tx *store.Tx) error {
		if err := tx.AppendJSON("app.a", map[string]int{"n": 1}, users[10], users[11]); err != nil {
			return err
		}
		return tx.AppendJSON("app.b", map[string]int{"n": 2}, users[10])
	})
	var got []string
	for _, e := range committed {
		got = append(got, fmt.Sprintf("%s/%d/%s", e.UserID, e.ID, e.Type))
	}
	if want := []string{users[10] + "/2/app.a", users[11] + "/2/app.a", users[10] + "/3/app.b"}; !slices.Equal(got, want) {
		t.Errorf("committed %q, want %q", got, want)
	}
	err = db.Update(ctx, func(tx *store.Tx) error {
		again := *msg
		again.ID = "msg_2"
		if err := tx.InsertMessage(&again); err != nil {
			return err
		}
		return tx.AppendJSON(parley.EventMessageCreated, &again, users[0], users[1])
	})
	if !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("a second message with the sender's client_id: %v, want ErrDuplicate", err)
	}
	err = db.View(ctx, func(tx *store.Tx) error {
		found, more, err := tx.SearchMessages(store.SearchQuery{UserID: users[1], Words: []string{"hello"}, Limit: 10})
		if err != nil {
			return err
		}
		if len(found) != 1 || found[0].ID != "msg_1" || more {
			return fmt.Errorf("search found %d messages, want msg_1", len(found))
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	count.n.Store(0)
	var spans map[string][]parley.Event
	err = db.Read(ctx, func(tx *store.Tx) (err error) {
		spans, err = tx.EventsIn([]store.LogRange{{UserID: users[0], After: 0, UpTo: 3}, {UserID: users[1], After: 2, UpTo: 3}, {UserID: users[999], After: 0, UpTo: 1}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// One statement for the spans, one for the message they refer to.
	if n := count.n.Load(); n != 2 || len(spans[users[0]]) != 3 || len(spans[users[1]]) != 1 || len(spans[users[999]]) != 1 {
		t.Errorf("three users' spans: %d statements, %d/%d/%d events; want 2 statements, 3/1/1 events",
			n, len(spans[users[0]]), len(spans[users[1]]), len(spans[users[999]]))
	}
	if m := spans[users[1]][0]; m.Type != parley.EventMessageCreated || !strings.Contains(string(m.Data), `"hello there"`) {
		t.Errorf("the message event was not rendered: %s %s", m.Type, m.Data)
	}

	var peers []string
	step("a flush of three delivered markers", 2, func(tx *store.Tx) (err error) {
		peers, err = tx.AdvanceDeliveredAll([]store.Delivery{
			{ConversationID: "cnv_1", UserID: users[0], UpTo: 3},
			{ConversationID: "cnv_2", UserID: users[3], UpTo: 5},
			{ConversationID: "cnv_1", UserID: users[1], UpTo: 2},
		})
		return err
	})
	if want := []string{users[1], users[2], users[0]}; !slices.Equal(peers, want) {
		t.Errorf("peers = %q, want %q", peers, want)
	}
	step("the same markers again, and one moved back", 2, func(tx *store.Tx) (err error) {
		peers, err = tx.AdvanceDeliveredAll([]store.Delivery{
			{ConversationID: "cnv_1", UserID: users[0], UpTo: 3},
			{ConversationID: "cnv_2", UserID: users[3], UpTo: 4},
		})
		return err
	})
	if want := []string{"", ""}; !slices.Equal(peers, want) {
		t.Errorf("peers = %q, want none moved", peers)
	}
}
