// Package postgres is the store for several nodes: PostgreSQL through
// jackc/pgx and its pool. The shared store.Tx queries run on pgx's own
// interface rather than its database/sql driver, for its batches: a
// transaction's BEGIN goes out with its first statement, and its COMMIT
// with its last write where that was held back (a message with its
// events): up to two round trips fewer per transaction (see txConn).
//
// Each Update is one transaction at READ COMMITTED. A user's ids stay
// contiguous across nodes because Tx.Append advances the user's log head
// with UPDATE … RETURNING, which locks the head row until commit: a second
// writer for the same user waits, then sees the advanced head. Transactions
// that lose a deadlock or a serialization check are run again.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

const (
	// maxAttempts bounds how often a transaction is run when it keeps losing
	// deadlocks or serialization checks.
	maxAttempts = 5
	// txTimeout bounds one attempt. Updates do not end with the caller's
	// context (see Update), so this is what stops a transaction stuck behind
	// a lock for good.
	txTimeout = 30 * time.Second
)

// defaultPoolSize is the connections one node keeps at most, unless the
// URL's pool_max_conns says otherwise: four per core. A connection is busy
// only for its round trips, so a few per core keep the node's cores fed;
// more only make PostgreSQL run more backends than it has cores, which
// then wait on each other's row locks and switch in and out. Measured on
// three nodes sharing two cores with PostgreSQL: 16 each gave 469 chat
// messages/s at 2.21 CPU-s of PostgreSQL per 1,000; 8 each, 654/s at 1.48.
func defaultPoolSize() int32 { return int32(max(4, 4*runtime.GOMAXPROCS(0))) }

// DB is the PostgreSQL store.
type DB struct {
	pool *pgxpool.Pool
	hook store.CommitHook
	full store.Space // whether the server's disk was full at the last write
	log  *slog.Logger
}

// Open connects to the database at rawURL (postgres://…), applies the
// migrations and returns the store. The URL may carry pool_max_conns (default
// defaultPoolSize). hook, if not nil, receives each commit's events; it may be called from
// several goroutines at once, and two transactions' events may reach it in
// either order (a stream that sees a gap reads the log, which is the truth).
//
// Several nodes may open the same database at once: a PostgreSQL advisory
// lock makes their migrations take turns.
func Open(ctx context.Context, rawURL string, hook store.CommitHook) (*DB, error) {
	return open(ctx, rawURL, hook, nil)
}

// open is Open with a tracer on every connection (tests count statements).
func open(ctx context.Context, rawURL string, hook store.CommitHook, tracer pgx.QueryTracer) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, fmt.Errorf("database-url: %w", err)
	}
	if !strings.Contains(rawURL, "pool_max_conns=") {
		cfg.MaxConns = defaultPoolSize()
	}
	if !strings.Contains(rawURL, "pool_max_conn_idle_time=") {
		cfg.MaxConnIdleTime = 5 * time.Minute
	}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("database-url: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		pool.Close()
		return nil, err
	}
	// goose speaks database/sql: a handle on the same pool, for the
	// migrations only.
	sqlDB := stdlib.OpenDBFromPool(pool)
	err = store.Migrate(ctx, sqlDB, goose.DialectPostgres, goose.WithSessionLocker(locker))
	sqlDB.Close()
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return &DB{pool: pool, hook: hook}, nil
}

// Update runs fn in one transaction and hands its events to the hook after
// the commit. fn is run again, up to a few times, when the transaction loses
// a deadlock or a serialization check.
//
// Once started, the transaction does not end with ctx (only with a timeout
// of its own): as with the SQLite store, a caller that went away must not
// leave a change committed that was reported as failed, or the reverse.
func (db *DB) Update(ctx context.Context, fn func(*store.Tx) error) error {
	log := db.log
	if log == nil {
		log = slog.Default()
	}
	return db.full.Seen(db.update(ctx, fn), dialect{}.IsFull, log)
}

func (db *DB) update(ctx context.Context, fn func(*store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	for attempt := 1; ; attempt++ {
		events, err := db.try(ctx, fn)
		if err == nil {
			if db.hook != nil && len(events) > 0 {
				db.hook(events)
			}
			return nil
		}
		if attempt == maxAttempts || !retryable(err) {
			return err
		}
		// Back off a little, with jitter, so the transactions that collided
		// do not collide again.
		time.Sleep(time.Duration(attempt) * time.Duration(1+rand.IntN(5)) * time.Millisecond)
	}
}

func (db *DB) try(ctx context.Context, fn func(*store.Tx) error) ([]parley.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, txTimeout)
	defer cancel()
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	// A connection left busy or inside a transaction (a panic, a timeout)
	// is closed by Release rather than reused.
	defer pc.Release()
	c := &txConn{conn: pc.Conn()}
	tx := store.NewConnTx(ctx, c, dialect{})
	err = func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic in transaction: %v", p)
			}
		}()
		return fn(tx)
	}()
	held, err := tx.EndHeld(err)
	if err != nil {
		c.rollback(ctx)
		return nil, err
	}
	if err := c.commit(ctx, held); err != nil {
		return nil, err
	}
	return tx.Appended(), nil
}

// retryable reports whether running the transaction again may succeed:
// PostgreSQL chose it as a deadlock victim (40P01) or it failed a
// serialization check (40001). A statement refused because the transaction
// already failed (25P02), or a commit that turned into a rollback, means fn
// went on after a failed statement (say, an insert that lost a race on a
// unique key, which SQLite would have let it ignore); run again, fn sees the
// winner's row.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40P01", "40001", "25P02":
			return true
		}
		return false
	}
	return errors.Is(err, pgx.ErrTxCommitRollback)
}

// View runs fn in a read-only transaction. It is REPEATABLE READ so that the
// statements of one View (a log's head and its oldest event) agree with each
// other; read-only transactions never fail serialization checks.
func (db *DB) View(ctx context.Context, fn func(*store.Tx) error) error {
	pc, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer pc.Release()
	c := &txConn{conn: pc.Conn(), opts: pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}}
	defer c.rollback(ctx)
	return fn(store.NewConnTx(ctx, c, dialect{}))
}

// Read runs fn's statements on the pool, with no transaction around them:
// each sees what is committed when it runs.
func (db *DB) Read(ctx context.Context, fn func(*store.Tx) error) error {
	return fn(store.NewConnTx(ctx, poolConn{db.pool}, dialect{}))
}

// Ping reports whether the database answers, and after a write failed for
// lack of disk space, whether a small write succeeds again.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return err
	}
	if db.full.Full() {
		return db.Update(ctx, func(tx *store.Tx) error { return tx.ProbeSpace() })
	}
	return nil
}

// Close refuses new transactions, waits for the connections in use to be
// released and closes them all.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

type dialect struct{}

func (dialect) Rebind(q string) string { return store.DollarRebind(q) }

func (dialect) ForUpdate() string { return " FOR UPDATE" }

func (dialect) ForNoKeyUpdate() string { return " FOR NO KEY UPDATE" }

func (dialect) BindsArrays() {}

// IsFull recognises disk_full (53100) and the other "insufficient
// resources" errors of a server out of room (53000, out of disk for temp
// files or WAL).
func (dialect) IsFull(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "53100" || pgErr.Code == "53000")
}

func (dialect) IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

// FullText implements store.Searcher: PostgreSQL's tsvector under a GIN index.
func (dialect) FullText() store.FullText { return store.TSVector }
