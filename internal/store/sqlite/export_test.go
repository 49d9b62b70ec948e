package sqlite

// SetTailLimit lowers the tail's limit for a test, so that reaching it
// takes a few appends rather than half a million events.
func SetTailLimit(db *DB, n int) { db.tail.SetLimit(n) }
