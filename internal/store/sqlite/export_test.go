package sqlite

import "context"

// SetTailLimit lowers the tail's limit for a test, so that reaching it
// takes a few appends rather than half a million events.
func SetTailLimit(db *DB, n int) { db.tail.SetLimit(n) }

// WriterPragma runs a PRAGMA on the writer's own connection (max_page_count
// is per connection) and returns the number it answers.
func WriterPragma(db *DB, q string) (n int64, err error) {
	err = onWriter(db, func(c *stmtCache) error { return c.QueryRowContext(context.Background(), q).Scan(&n) })
	return n, err
}

// onWriter runs fn as a request of its own on the writer's connection.
func onWriter(db *DB, fn func(*stmtCache) error) error {
	return db.update(context.Background(), &request{ctx: context.Background(), done: make(chan struct{}), raw: fn})
}

// PacedWaits returns how many times the writer waited to gather a commit.
func PacedWaits(db *DB) uint64 { return db.pacedWaits.Load() }

// PacedFull returns how many of those waits lasted the whole pace.
func PacedFull(db *DB) uint64 { return db.pacedFull.Load() }

// CommitPace is commitPace, for tests.
const CommitPace = commitPace

// WriterExec runs a statement on the writer's own connection, behind the
// store's back (the head cache does not hear of it).
func WriterExec(db *DB, q string, args ...any) error {
	return onWriter(db, func(c *stmtCache) error {
		_, err := c.ExecContext(context.Background(), q, args...)
		return err
	})
}

// Queued returns how many requests wait for the writer.
func Queued(db *DB) int { return len(db.reqs) }

// HoldWriter occupies the writer until release is called, so that the
// requests queued meanwhile share its next commit.
func HoldWriter(db *DB) (release func()) {
	started, done := make(chan struct{}), make(chan struct{})
	go onWriter(db, func(*stmtCache) error {
		close(started)
		<-done
		return nil
	})
	<-started
	return func() { close(done) }
}
