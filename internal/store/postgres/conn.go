package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-chat/parley/internal/store"
)

// txConn is a store.Conn for one transaction on one connection, begun
// lazily: the first statement goes out in a batch behind the BEGIN, and
// commit sends the transaction's held-back last write (store.Held) in a
// batch in front of the COMMIT. Every statement here is a round trip, and
// the PostgreSQL backend's CPU per round trip (a wakeup, a read and a
// write on a socket) is most of what a chat message costs it: a send is
// two round trips where BEGIN and COMMIT of their own made four.
type txConn struct {
	conn *pgx.Conn
	opts pgx.TxOptions
	tx   pgx.Tx // nil until the first statement
}

// begin sends the BEGIN and query in one batch and reads the BEGIN's
// result; the caller reads query's and closes the batch.
func (c *txConn) begin(ctx context.Context, query string, args []any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	b.BeginTx(c.opts)
	b.Queue(query, args...)
	br := c.conn.SendBatch(ctx, b)
	c.tx = br.Tx()
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, fmt.Errorf("begin: %w", err)
	}
	return br, nil
}

func (c *txConn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if c.tx != nil {
		tag, err := c.tx.Exec(ctx, query, args...)
		return result(tag), err
	}
	br, err := c.begin(ctx, query, args)
	if err != nil {
		return nil, err
	}
	tag, err := br.Exec()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return result(tag), err
}

func (c *txConn) QueryContext(ctx context.Context, query string, args ...any) (store.Rows, error) {
	if c.tx != nil {
		rows, err := c.tx.Query(ctx, query, args...)
		if err != nil {
			return nil, err
		}
		return pgxRows{rows}, nil
	}
	br, err := c.begin(ctx, query, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, err
	}
	return batchRows{pgxRows{rows}, br}, nil
}

func (c *txConn) QueryRowContext(ctx context.Context, query string, args ...any) store.Row {
	if c.tx != nil {
		return c.tx.QueryRow(ctx, query, args...)
	}
	br, err := c.begin(ctx, query, args)
	if err != nil {
		return errRow{err}
	}
	return batchRow{br}
}

// commit commits the transaction, sending held (if not nil) with the
// COMMIT. A transaction whose one statement is held is sent without BEGIN
// and COMMIT: one statement is a transaction of its own.
func (c *txConn) commit(ctx context.Context, held *store.Held) error {
	if c.tx != nil && c.conn.PgConn().TxStatus() == 'I' {
		// The BEGIN failed and fn went on: a held write sent now would
		// commit on its own, without what came before it.
		return fmt.Errorf("commit: %w", pgx.ErrTxClosed)
	}
	if held == nil {
		if c.tx == nil {
			return nil
		}
		if err := c.tx.Commit(ctx); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}
	query, args := held.Statement()
	b := &pgx.Batch{}
	b.Queue(query, args...)
	if c.tx != nil {
		b.Queue("COMMIT")
	}
	br := c.conn.SendBatch(ctx, b)
	rows, err := br.Query()
	// A failed statement stops the batch before the COMMIT, which leaves
	// the transaction aborted for the ROLLBACK below. (The COMMIT is on
	// its way with the statement: were the rows of a statement that
	// succeeded unreadable here, it would commit all the same.)
	if err = held.Scan(pgxRows{rows}, err); err == nil && c.tx != nil {
		var tag pgconn.CommandTag
		if tag, err = br.Exec(); err != nil {
			err = fmt.Errorf("commit: %w", err)
		} else if tag.String() == "ROLLBACK" {
			err = pgx.ErrTxCommitRollback
		}
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("commit: %w", cerr)
	}
	if err != nil {
		c.rollback(ctx)
		return err
	}
	held.Committed()
	return nil
}

// rollback ends the transaction if it began and is still open. It runs
// when the caller may have gone (a View's request cancelled), so not
// under the caller's context; a connection left inside a transaction is
// closed by the pool on Release instead of reused.
func (c *txConn) rollback(ctx context.Context) {
	if c.tx == nil || c.conn.PgConn().TxStatus() == 'I' {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = c.conn.Exec(ctx, "ROLLBACK")
}

// poolConn is a store.Conn on the pool: each statement on any connection,
// outside a transaction.
type poolConn struct{ pool *pgxpool.Pool }

func (c poolConn) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	tag, err := c.pool.Exec(ctx, query, args...)
	return result(tag), err
}

func (c poolConn) QueryContext(ctx context.Context, query string, args ...any) (store.Rows, error) {
	rows, err := c.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return pgxRows{rows}, nil
}

func (c poolConn) QueryRowContext(ctx context.Context, query string, args ...any) store.Row {
	return c.pool.QueryRow(ctx, query, args...)
}

// pgxRows is pgx.Rows as store.Rows: Close reports the query's error, as
// database/sql's does, since pgx may learn of it only once the rows are read.
type pgxRows struct{ pgx.Rows }

func (r pgxRows) Close() error {
	r.Rows.Close()
	return r.Rows.Err()
}

// batchRows are a batch's last rows: closing them closes the batch, which
// frees the connection.
type batchRows struct {
	pgxRows
	br pgx.BatchResults
}

func (r batchRows) Close() error {
	err := r.pgxRows.Close()
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

// batchRow is a batch's last row, read as a QueryRow's.
type batchRow struct{ br pgx.BatchResults }

func (r batchRow) Scan(dest ...any) error {
	err := r.br.QueryRow().Scan(dest...)
	if cerr := r.br.Close(); err == nil {
		err = cerr
	}
	return err
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// result is a command tag as a sql.Result.
type result pgconn.CommandTag

func (r result) RowsAffected() (int64, error) { return pgconn.CommandTag(r).RowsAffected(), nil }

func (result) LastInsertId() (int64, error) {
	return 0, errors.New("postgres: no LastInsertId; use RETURNING")
}
