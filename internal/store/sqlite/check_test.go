package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/sqlite"
)

// A run that does not decode fails every read of its user's log through it,
// with an error that names the user and the row. Check finds it without
// changing anything; Check with repair drops it and the user's older
// events, so that the log starts after it (a resume from before gets a
// reset), keeps its head (no id is handed out twice), and then reads whole.
func TestCheckRepairsCorruptRun(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "parley.db")
	db := openAt(t, path)
	users := mustCreateUsers(t, db, 2)
	a, b := users[0], users[1]
	backlog := make([]parley.NewEvent, 150)
	for i := range backlog {
		backlog[i] = ev(a, fmt.Sprintf("m%d", i+1))
	}
	if err := db.Update(ctx, func(tx *store.Tx) error { _, err := tx.Append(backlog...); return err }); err != nil {
		t.Fatal(err)
	}
	fanOut(t, db, []string{b}, "m1")
	if err := db.Update(ctx, func(tx *store.Tx) error { _, err := tx.PruneEvents(time.Unix(0, 0), 0); return err }); err != nil {
		t.Fatal(err) // merges the tail: a's 150 events are runs of 64, 64 and 22
	}

	raw, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var first, last int64
	if err := raw.QueryRow(`SELECT first_id, last_id FROM event_runs WHERE user_id = ? ORDER BY last_id LIMIT 1 OFFSET 1`, a).Scan(&first, &last); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`UPDATE event_runs SET events = X'02ff' WHERE user_id = ? AND last_id = ?`, a, last); err != nil {
		t.Fatal(err)
	}
	err = db.View(ctx, func(tx *store.Tx) error { _, err := tx.EventsAfter(a, 0, 500); return err })
	var bad *store.CorruptRunError
	if !errors.As(err, &bad) || bad.UserID != a || bad.FirstID != first || bad.LastID != last {
		t.Fatalf("reading through the corrupt run: %v, want a CorruptRunError for %s %d-%d", err, a, first, last)
	}
	if _, err := sqlite.Check(ctx, path, false); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("check of an open database: %v, want it refused", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	r, err := sqlite.Check(ctx, path, false)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || len(r.CorruptRuns) != 1 || r.CorruptRuns[0].LastID != last || r.Repaired != 0 || len(r.Integrity) != 0 || len(r.CorruptBatches) != 0 {
		t.Fatalf("check: %+v, want one corrupt run (%d-%d) and nothing repaired", r, first, last)
	}
	r, err = sqlite.Check(ctx, path, true)
	if err != nil {
		t.Fatal(err)
	}
	if !r.OK() || r.Repaired != 1 || r.DroppedEvents != last {
		t.Fatalf("repair: %+v, want the run and the %d events up to it dropped", r, last)
	}
	if r, err = sqlite.Check(ctx, path, false); err != nil || !r.OK() || len(r.CorruptRuns) != 0 {
		t.Fatalf("check after the repair: %+v %v", r, err)
	}

	db = openAt(t, path)
	defer db.Close()
	if err := db.Update(ctx, func(tx *store.Tx) error { _, err := tx.Append(ev(a, "m151")); return err }); err != nil {
		t.Fatal(err)
	}
	err = db.View(ctx, func(tx *store.Tx) error {
		lo, hi, err := tx.LogBounds(a)
		if err != nil {
			return err
		}
		if lo != last+1 || hi != 151 {
			return fmt.Errorf("a's log bounds %d-%d, want %d-151", lo, hi, last+1)
		}
		evs, err := tx.EventsAfter(a, 0, 500)
		if err != nil {
			return err
		}
		if len(evs) != int(151-last) || evs[0].ID != last+1 || evs[len(evs)-1].ID != 151 || marker(evs[len(evs)-1]) != "m151" {
			return fmt.Errorf("a's log reads %d events from %d", len(evs), evs[0].ID)
		}
		if evs, err := tx.EventsAfter(b, 0, 10); err != nil || len(evs) != 1 {
			return fmt.Errorf("b's log: %d events, %v", len(evs), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
