package sqlite_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/search"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/sqlite"
)

// TestFullTextAtEndOfBatch: the writer makes a batch's full-text writes after
// all of its transactions, so they must come out as if each had been made
// in place: in order within a transaction (a message indexed, edited and
// deleted in one), and not at all for a transaction that failed, however
// the batch was cut.
func TestFullTextAtEndOfBatch(t *testing.T) {
	db, users, send := oneConversation(t)
	ctx := context.Background()
	find := func(word string) []string { return searchIDs(t, db, users[1], word) }

	// One transaction: indexed, edited, another indexed and deleted.
	if err := db.Update(ctx, func(tx *store.Tx) error {
		if err := send(tx, "msg_a", "alpha first"); err != nil {
			return err
		}
		if err := tx.EditMessage("msg_a", "beta second", store.Now()); err != nil {
			return err
		}
		if err := send(tx, "msg_b", "gamma third"); err != nil {
			return err
		}
		return tx.DeleteMessage("msg_b")
	}); err != nil {
		t.Fatal(err)
	}
	for word, want := range map[string][]string{"alpha": nil, "beta": {"msg_a"}, "second": {"msg_a"}, "gamma": nil} {
		if got := find(word); !slices.Equal(got, want) {
			t.Fatalf("search %q found %v, want %v", word, got, want)
		}
	}

	// Concurrent sends, every third failing after its insert: batches run
	// again with savepoints, and only the failed ones' words must be gone.
	const n = 60
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := db.Update(ctx, func(tx *store.Tx) error {
				if err := send(tx, fmt.Sprintf("msg_%02d", i), fmt.Sprintf("word%02d shared", i)); err != nil {
					return err
				}
				if i%3 == 0 {
					return errBoom
				}
				return nil
			})
			if (err != nil) != (i%3 == 0) {
				t.Errorf("send %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	var want []string
	for i := range n {
		got := find(fmt.Sprintf("word%02d", i))
		if i%3 == 0 {
			if len(got) != 0 {
				t.Fatalf("the failed send %d is found: %v", i, got)
			}
			continue
		}
		id := fmt.Sprintf("msg_%02d", i)
		if !slices.Equal(got, []string{id}) {
			t.Fatalf("send %d: search found %v, want [%s]", i, got, id)
		}
		want = append(want, id)
	}
	if got := find("shared"); !slices.Equal(got, want) {
		t.Fatalf("search for the shared word found %d messages, want %d", len(got), len(want))
	}
}

// TestFullTextAcrossOneCommit: the FTS5 writes of several transactions of one
// commit go out together at its end, still in the order they were made: a message indexed by one and edited by the next, one deleted by
// another transaction than its own, and a rowid that delete freed taken
// again by a third.
func TestFullTextAcrossOneCommit(t *testing.T) {
	db, users, sendTx := oneConversation(t)
	ctx := context.Background()
	send := func(id, body string) func(tx *store.Tx) error {
		return func(tx *store.Tx) error { return sendTx(tx, id, body) }
	}
	steps := []func(tx *store.Tx) error{
		send("msg_a", "alpha one"),
		func(tx *store.Tx) error { return tx.EditMessage("msg_a", "beta two", store.Now()) },
		send("msg_b", "gamma three"),
		send("msg_c", "gamma four"),
		func(tx *store.Tx) error { return tx.DeleteMessage("msg_c") }, // the newest rowid, freed
		send("msg_d", "alpha five"),                                   // and taken again
	}
	c0, _ := db.Commits()
	release := sqlite.HoldWriter(db)
	errs := make(chan error, len(steps))
	for i, fn := range steps {
		go func() { errs <- db.Update(ctx, fn) }()
		for sqlite.Queued(db) != i+1 {
			time.Sleep(time.Millisecond) // queued in this order
		}
	}
	release()
	for range steps {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if c1, _ := db.Commits(); c1-c0 != 2 {
		t.Fatalf("%d commits: the held one and %d for the steps, want 1", c1-c0, c1-c0-1)
	}
	find := func(word string) []string { return searchIDs(t, db, users[1], word) }
	for word, want := range map[string][]string{"alpha": {"msg_d"}, "beta": {"msg_a"}, "one": nil,
		"gamma": {"msg_b"}, "four": nil, "five": {"msg_d"}} {
		if got := find(word); !slices.Equal(got, want) {
			t.Errorf("search %q found %v, want %v", word, got, want)
		}
	}
}

// searchIDs returns the ids of the messages userID finds with word, sorted.
func searchIDs(t *testing.T, db *sqlite.DB, userID, word string) []string {
	t.Helper()
	var ids []string
	err := db.View(context.Background(), func(tx *store.Tx) error {
		ms, _, err := tx.SearchMessages(store.SearchQuery{UserID: userID, Words: search.Words(word), Limit: 100})
		for _, m := range ms {
			ids = append(ids, m.ID)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

// oneConversation opens a store with two users and their conversation
// cnv_1, and returns a send of the first user's within a transaction.
func oneConversation(t *testing.T) (*sqlite.DB, []string, func(tx *store.Tx, id, body string) error) {
	db := mustOpenDB(t, nil)
	users := mustCreateUsers(t, db, 2)
	if err := db.Update(context.Background(), func(tx *store.Tx) error {
		return tx.CreateConversation(&store.ConversationRow{ID: "cnv_1", ClientID: users[0], ProfessionalID: users[1], CreatedAt: store.Now()})
	}); err != nil {
		t.Fatal(err)
	}
	send := func(tx *store.Tx, id, body string) error {
		seq, err := tx.NextSeq("cnv_1", store.Now())
		if err != nil {
			return err
		}
		return tx.InsertMessage(&parley.Message{ID: id, ConversationID: "cnv_1", Seq: seq, Kind: parley.MessageUser,
			SenderID: &users[0], Body: body, CreatedAt: parley.T(store.Now())})
	}
	return db, users, send
}
