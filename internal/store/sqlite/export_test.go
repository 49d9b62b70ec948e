package sqlite

import "context"

// SetTailLimit lowers the tail's limit for a test, so that reaching it
// takes a few appends rather than half a million events.
func SetTailLimit(db *DB, n int) { db.tail.SetLimit(n) }

// WriterPragma runs a PRAGMA on the writer's own connection (max_page_count
// is per connection) and returns the number it answers.
func WriterPragma(db *DB, q string) (n int64, err error) {
	req := &request{ctx: context.Background(), done: make(chan struct{}), raw: func(c *stmtCache) error {
		return c.QueryRowContext(context.Background(), q).Scan(&n)
	}}
	err = db.update(context.Background(), req)
	return n, err
}
