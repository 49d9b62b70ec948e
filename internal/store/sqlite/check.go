package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"

	"github.com/parley-chat/parley/internal/store"
)

// CheckReport is what Check found in a database file, and what it repaired.
type CheckReport struct {
	// Integrity holds SQLite's own complaints (PRAGMA quick_check); none
	// when the file is sound. Check cannot repair those.
	Integrity []string
	// Runs and Batches are the event_runs and event_batches rows read.
	Runs, Batches int
	// CorruptRuns are the event_runs rows that do not decode: every replay
	// of their user's log through them fails.
	CorruptRuns []*store.CorruptRunError
	// CorruptBatches are the seqs of event_batches rows that do not decode:
	// the store does not open with them. Check does not repair them (their
	// events cannot even be attributed to users).
	CorruptBatches []int64
	// Repaired is how many corrupt runs a repair dropped, and DroppedEvents
	// how many events their users' logs lost with them (store.Tx.DropRun).
	Repaired      int
	DroppedEvents int64
}

// OK reports whether the database has no problem left.
func (r *CheckReport) OK() bool {
	return len(r.Integrity) == 0 && len(r.CorruptBatches) == 0 && len(r.CorruptRuns) == r.Repaired
}

// Check examines the embedded database at path, which no parley process may
// have open (it takes the same lock a node takes), and with repair drops
// the corrupt event_runs rows it finds (store.Tx.DropRun says how, and what
// clients see). It changes nothing else and never creates the file.
func Check(ctx context.Context, path string, repair bool) (*CheckReport, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	// The lock a node takes is on the real file (Open).
	path, err := realPath(path)
	if err != nil {
		return nil, err
	}
	lock, err := lockFile(path)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	if !repair {
		dsn += "&_pragma=query_only(1)"
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)

	r := &CheckReport{}
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return nil, fmt.Errorf("quick_check: %w", err)
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return nil, fmt.Errorf("quick_check: %w", err)
		}
		if line != "ok" {
			r.Integrity = append(r.Integrity, line)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("quick_check: %w", err)
	}

	var tables int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('event_runs', 'event_batches')`).Scan(&tables); err != nil {
		return nil, err
	}
	if tables < 2 {
		return r, nil // a database from before the tail (migrations 4 and 5): nothing of it to check
	}
	read := store.NewTx(ctx, db, dialect{})
	if r.Batches, err = read.CheckBatches(func(seq int64, _ error) { r.CorruptBatches = append(r.CorruptBatches, seq) }); err != nil {
		return nil, err
	}
	if r.Runs, err = read.CheckRuns(func(e *store.CorruptRunError) { r.CorruptRuns = append(r.CorruptRuns, e) }); err != nil {
		return nil, err
	}
	if !repair || len(r.CorruptRuns) == 0 {
		return r, nil
	}

	// Per user, the newest corrupt run: dropping it drops the older ones.
	upTo := map[string]int64{}
	var users []string
	for _, e := range r.CorruptRuns {
		if _, ok := upTo[e.UserID]; !ok {
			users = append(users, e.UserID)
		}
		upTo[e.UserID] = max(upTo[e.UserID], e.LastID)
	}
	sqlTx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	tx := store.NewTx(ctx, sqlTx, dialect{})
	var dropped int64
	for _, u := range users {
		n, err := tx.DropRun(u, upTo[u])
		if err != nil {
			return nil, errors.Join(err, sqlTx.Rollback())
		}
		dropped += n
	}
	if err := sqlTx.Commit(); err != nil {
		return nil, fmt.Errorf("commit repair: %w", err)
	}
	r.Repaired, r.DroppedEvents = len(r.CorruptRuns), dropped
	return r, nil
}
