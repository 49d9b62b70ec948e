package sqlite

import (
	"context"
	"database/sql"
)

// maxStmts bounds a connection's prepared statements. Queries with IN lists
// come in many shapes; when the cache is full it starts over rather than
// track use, since the shapes that matter (full fan-out chunks, the chat
// statements) come back at once.
const maxStmts = 512

// stmtCache runs a connection's statements prepared once. Parsing a
// fan-out's 200-row INSERT and 500-user UPDATE again for every chunk cost
// ~8 % of a fan-out's CPU profile, and the log reads a fifth of a reconnect
// storm's. Not safe for concurrent use: the writer goroutine owns its cache,
// and a reader's belongs to the one View holding that connection.
type stmtCache struct {
	conn  *sql.Conn
	stmts map[string]*sql.Stmt
}

func newStmtCache(conn *sql.Conn) *stmtCache {
	return &stmtCache{conn: conn, stmts: make(map[string]*sql.Stmt)}
}

func (c *stmtCache) prepare(ctx context.Context, query string) (*sql.Stmt, error) {
	if s, ok := c.stmts[query]; ok {
		return s, nil
	}
	if len(c.stmts) >= maxStmts {
		c.reset()
	}
	s, err := c.conn.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	c.stmts[query] = s
	return s, nil
}

// reset closes the prepared statements.
func (c *stmtCache) reset() {
	for q, s := range c.stmts {
		s.Close()
		delete(c.stmts, q)
	}
}

// close closes the statements and then the connection.
func (c *stmtCache) close() error {
	c.reset()
	return c.conn.Close()
}

func (c *stmtCache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, err := c.prepare(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, args...)
}

func (c *stmtCache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	s, err := c.prepare(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

func (c *stmtCache) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	s, err := c.prepare(ctx, query)
	if err != nil {
		// A Row cannot be made to carry err; running the query unprepared
		// reports the same error through Scan.
		return c.conn.QueryRowContext(ctx, query, args...)
	}
	return s.QueryRowContext(ctx, args...)
}
