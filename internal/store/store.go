// Package store is Parley's persistence: the Store interface that the SQLite
// and PostgreSQL back ends satisfy, and Tx, the one set of SQL queries both run.
//
// Every change and the events it causes are written in one transaction, so an
// event exists if and only if its change does. The back ends differ only in how
// they open the database, run transactions (SQLite batches them into group
// commits, keeps log heads in memory and the newest events in a Tail that it
// merges into event_runs in bulk; PostgreSQL retries deadlocks) and
// recognise a unique violation.
package store

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pressly/goose/v3"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store/migrations"
)

// Store runs transactions. fn may run more than once (a back end may retry it
// after a deadlock), so it must only change the database through tx.
type Store interface {
	// Update runs fn in a write transaction. The events fn appends are handed
	// to the commit hook after the transaction commits, in log order per user.
	Update(ctx context.Context, fn func(tx *Tx) error) error
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(tx *Tx) error) error
	// Read runs fn outside a transaction where the back end can: each
	// statement sees what is committed when it runs, so fn must need no
	// agreement between its statements (one statement agrees with itself).
	// On PostgreSQL the BEGIN and ROLLBACK of a View are two more round
	// trips, on paths every request (its session) or replay takes.
	// Elsewhere it is View.
	Read(ctx context.Context, fn func(tx *Tx) error) error
	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
	Close() error
}

// CommitHook receives the events of each committed transaction.
type CommitHook func(events []parley.Event)

// Dialect is what differs between the SQL back ends.
type Dialect interface {
	// Rebind turns the '?' placeholders the queries are written with into the
	// back end's own.
	Rebind(query string) string
	// IsUniqueViolation reports whether err is a unique-constraint failure.
	IsUniqueViolation(err error) bool
}

// RowLocker is the optional capability of back ends with concurrent writers:
// the clauses that lock the rows a SELECT reads (" FOR UPDATE", and the
// weaker " FOR NO KEY UPDATE" an UPDATE that leaves the keys alone takes,
// which does not hold up the inserts of rows that refer to them). A back
// end with a single writer (SQLite) needs no row locks and does not
// implement it.
type RowLocker interface {
	ForUpdate() string
	ForNoKeyUpdate() string
}

// ArrayBinder is the optional capability of back ends whose driver binds Go
// slices as SQL arrays (PostgreSQL through pgx). An append or a receipt
// flush over any number of users is then one statement of one shape: there
// every statement is a round trip, paid while the row locks it took are
// held, where SQLite's run in process.
type ArrayBinder interface {
	BindsArrays()
}

// Querier is a database/sql handle a Tx may run statements on: a *sql.Tx,
// *sql.Conn or *sql.DB, or a back end's cache of prepared statements.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// Conn is what a Tx runs statements on: a Querier (NewTx wraps it), or a
// back end's own driver where database/sql would cost round trips
// (PostgreSQL: pgx's batches send BEGIN with the first statement, and the
// last with COMMIT).
type Conn interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) Row
}

// Rows is the result of a query, as *sql.Rows has it.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// Row is the result of a query for one row, as *sql.Row has it: Scan
// returns sql.ErrNoRows (or an error that wraps it) for none.
type Row interface {
	Scan(dest ...any) error
}

// sqlConn is the Conn of a database/sql Querier.
type sqlConn struct{ Querier }

func (c sqlConn) QueryContext(ctx context.Context, query string, args ...any) (Rows, error) {
	rows, err := c.Querier.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

func (c sqlConn) QueryRowContext(ctx context.Context, query string, args ...any) Row {
	return c.Querier.QueryRowContext(ctx, query, args...)
}

// Tx is one transaction. It is not safe for concurrent use.
type Tx struct {
	ctx      context.Context
	q        Conn
	d        Dialect
	heads    *HeadCache
	tail     *Tail
	appended []parley.Event
	batches  []Batch
	merges   []*MergeStep
	// held is a write held back to ride in front of the next append
	// (hold); heldErr is how it failed when it went out on its own in front
	// of a statement that could not report it.
	held    *heldWrite
	heldErr error
	// FTS5 writes held back to the end of a group commit (DeferFullText).
	deferFTS  bool
	ftsWrites []FullTextWrite
	at        time.Time // of the events appended (NewWriteTx); zero: Now()
	changes   Changes   // sessions and users written (ChangeHook)
	created   []string  // users created, when the back end keeps heads
	// Conversations whose row this transaction has locked, on a back end
	// with concurrent writers (InsertWebhook).
	convLocks []string
}

// NewTx wraps a transaction for the queries of this package. Back ends call it.
func NewTx(ctx context.Context, q Querier, d Dialect) *Tx {
	return &Tx{ctx: ctx, q: sqlConn{q}, d: d}
}

// NewConnTx is NewTx on a back end's own Conn.
func NewConnTx(ctx context.Context, c Conn, d Dialect) *Tx {
	return &Tx{ctx: ctx, q: c, d: d}
}

// NewReadTx is NewTx for a back end that keeps the newest events in t.
func NewReadTx(ctx context.Context, q Querier, d Dialect, t *Tail) *Tx {
	return &Tx{ctx: ctx, q: sqlConn{q}, d: d, tail: t}
}

// NewWriteTx is NewTx for the single writer of a back end that keeps its log
// heads in h instead of moving head rows on each append, and appends to the
// tail t instead of the events table. The appends are kept (Batches) for
// the writer to store with the rest of its commit as one event_batches
// row (WriteBatch), and since a row's events share one time, at is the
// time of every event the transaction appends: the commit's.
func NewWriteTx(ctx context.Context, q Querier, d Dialect, h *HeadCache, t *Tail, at time.Time) *Tx {
	return &Tx{ctx: ctx, q: sqlConn{q}, d: d, heads: h, tail: t, at: at}
}

// Appended returns the events appended in this transaction, in order.
func (tx *Tx) Appended() []parley.Event { return tx.appended }

// CreatedUsers returns the users this transaction created, on a back end
// that keeps log heads (NewWriteTx): once it commits, HeadCache.Created.
func (tx *Tx) CreatedUsers() []string { return tx.created }

// Context returns the context the transaction runs under.
func (tx *Tx) Context() context.Context { return tx.ctx }

func (tx *Tx) exec(query string, args ...any) (sql.Result, error) {
	if err := tx.sendHeld(); err != nil {
		return nil, err
	}
	return tx.q.ExecContext(tx.ctx, tx.d.Rebind(query), args...)
}

func (tx *Tx) query(query string, args ...any) (Rows, error) {
	if err := tx.sendHeld(); err != nil {
		return nil, err
	}
	return tx.q.QueryContext(tx.ctx, tx.d.Rebind(query), args...)
}

// queryStrings runs a query of one text column and returns its values.
func (tx *Tx) queryStrings(query string, args ...any) ([]string, error) {
	rows, err := tx.query(query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// queryRow cannot return the error of a held write that fails in front of
// it: the query then fails too (the transaction is aborted), and End
// reports the held write's error in its place.
func (tx *Tx) queryRow(query string, args ...any) Row {
	_ = tx.sendHeld()
	return tx.q.QueryRowContext(tx.ctx, tx.d.Rebind(query), args...)
}

// heldWrite is a write held back to go out with a later statement, as
// common table expressions ("name AS (statement)") that run wherever they
// are put, then a SELECT over them.
type heldWrite struct {
	ctes []string
	args []any
	// last is the SELECT that ends the statement ("SELECT 1" if empty);
	// scan reads its rows, if the write has an outcome beyond success, and
	// then works with what scan read once the statement has succeeded.
	// A write held past the call that made it must have a then that
	// cannot fail: a back end may run it after the COMMIT.
	last string
	scan func(Rows) error
	then func() error
	// fail turns the error of a statement that carried the write into
	// the write's own (say, a unique violation into ErrDuplicate).
	fail func(error) error
}

// statement is the write as one statement.
func (w *heldWrite) statement() (string, []any) {
	last := w.last
	if last == "" {
		last = "SELECT 1"
	}
	return "WITH " + strings.Join(w.ctes, ", ") + " " + last, w.args
}

// outcome reports whether the write returns more than success.
func (w *heldWrite) outcome() bool { return w.scan != nil || w.then != nil }

// joins reports whether w and next can be one statement: at most one of
// them has an outcome, and their CTEs' names differ (two messages, or two
// appends, cannot share one).
func (w *heldWrite) joins(next *heldWrite) bool {
	if w.outcome() && next.outcome() {
		return false
	}
	for _, a := range w.ctes {
		for _, b := range next.ctes {
			if cteName(a) == cteName(b) {
				return false
			}
		}
	}
	return true
}

func cteName(cte string) string {
	name, _, _ := strings.Cut(cte, " ")
	return name
}

// after is w and then next in one statement: w's CTEs first, and the
// outcome of whichever has one (joins). An error is w's, as w is what the
// caller asked for first.
func (w *heldWrite) after(next *heldWrite) *heldWrite {
	out := next
	if w.outcome() {
		out = w
	}
	return &heldWrite{
		ctes: append(w.ctes[:len(w.ctes):len(w.ctes)], next.ctes...),
		args: append(w.args[:len(w.args):len(w.args)], next.args...),
		last: out.last, scan: out.scan, then: out.then, fail: w.fail,
	}
}

// hold holds w back, on a back end where each statement is a round trip
// (ArrayBinder), for the next append to carry in the same statement, or
// the next other statement (or the commit) to send first: a message's
// insert then rides with its events and its webhook, and those with the
// COMMIT. A write already held goes first: in w's statement where the two
// join (an append carrying a message), on its own otherwise.
func (tx *Tx) hold(w *heldWrite) error {
	if prev := tx.held; prev != nil && prev.joins(w) {
		tx.held = prev.after(w)
		return nil
	}
	if err := tx.sendHeld(); err != nil {
		return err
	}
	tx.held = w
	return nil
}

// takeHeld returns the held write, if any, for a statement to carry, and
// lets go of it.
func (tx *Tx) takeHeld() *heldWrite {
	w := tx.held
	tx.held = nil
	return w
}

// carried is the error of a statement that carried w (nil: none did).
func (tx *Tx) carried(w *heldWrite, err error) error {
	if w == nil || err == nil {
		return err
	}
	tx.heldErr = w.fail(err)
	return tx.heldErr
}

// sendHeld runs the held write on its own, if there is one.
func (tx *Tx) sendHeld() error {
	w := tx.takeHeld()
	if w == nil {
		return nil
	}
	q, args := w.statement()
	rows, err := tx.q.QueryContext(tx.ctx, tx.d.Rebind(q), args...)
	return tx.finishHeld(w, rows, err)
}

// finishHeld reads the outcome of the statement that ran w.
func (tx *Tx) finishHeld(w *heldWrite, rows Rows, err error) error {
	if err := tx.scanHeld(w, rows, err); err != nil {
		return err
	}
	if w.then != nil {
		return w.then()
	}
	return nil
}

// scanHeld reads the rows of the statement that ran w, and closes them.
func (tx *Tx) scanHeld(w *heldWrite, rows Rows, err error) error {
	if err == nil {
		if w.scan != nil {
			err = w.scan(rows)
		} else {
			for rows.Next() {
			}
			err = rows.Err()
		}
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
	}
	return tx.carried(w, err)
}

// End sends what the transaction holds back; a back end calls it before
// committing. An error from a write held back is returned in place of
// errors it caused later statements (fnErr, fn's own), which would name
// the aborted transaction rather than the cause.
func (tx *Tx) End(fnErr error) error {
	if fnErr == nil {
		fnErr = tx.sendHeld()
	}
	if tx.heldErr != nil {
		return tx.heldErr
	}
	return fnErr
}

// Held is the write a transaction held back to its end, for a back end
// that sends it in the round trip of the COMMIT.
type Held struct {
	tx *Tx
	w  *heldWrite
}

// Statement is the write's statement, with the back end's placeholders.
func (h *Held) Statement() (string, []any) {
	q, args := h.w.statement()
	return h.tx.d.Rebind(q), args
}

// Scan reads what the statement returned (or its error, err) and closes
// rows; it returns the write's own error.
func (h *Held) Scan(rows Rows, err error) error { return h.tx.scanHeld(h.w, rows, err) }

// Committed finishes the write's work in the transaction (its events'
// ids) once the statement and the COMMIT have succeeded.
func (h *Held) Committed() {
	if h.w.then != nil {
		_ = h.w.then() // cannot fail for a held write (heldWrite.then)
	}
}

// EndHeld is End for a back end that commits with the last write: it
// returns that write unsent (nil if there is none).
func (tx *Tx) EndHeld(fnErr error) (*Held, error) {
	if fnErr == nil && tx.heldErr == nil {
		if w := tx.takeHeld(); w != nil {
			return &Held{tx: tx, w: w}, nil
		}
	}
	return nil, tx.End(fnErr)
}

// Migrate applies the shared migrations with goose. opts are passed to the
// provider, e.g. a session locker so that nodes starting together take turns.
func Migrate(ctx context.Context, db *sql.DB, dialect goose.Dialect, opts ...goose.ProviderOption) error {
	sub, err := fs.Sub(migrations.FS, ".")
	if err != nil {
		return err
	}
	gos, err := migrations.Go(dialect, func(ctx context.Context, sqlTx *sql.Tx) error {
		return NewTx(ctx, sqlTx, migrationDialect{dialect}).reindexMessages()
	})
	if err != nil {
		return err
	}
	// Out of order: a migration number kept free for a branch that merged
	// later (00013, the webhooks) is applied to databases already past it.
	opts = append(opts, goose.WithGoMigrations(gos...), goose.WithAllowOutofOrder(true))
	p, err := goose.NewProvider(dialect, db, sub, opts...)
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// Micros and FromMicros convert times to the stored form: Unix microseconds UTC.
// A time past year 9999 is stored as its last microsecond: an app token's
// exp may be any number, and beyond some 292,000 years int64 microseconds
// wrap negative (a session expired before it began), while past 9999 a
// time shown in the API would have a five-digit year, which RFC 3339
// parsers refuse.
func Micros(t time.Time) int64 {
	if t.After(lastTime) {
		t = lastTime
	}
	return t.UnixMicro()
}

// lastTime is the latest time Micros stores.
var lastTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)

// FromMicros is the inverse of Micros.
func FromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func nullTime(v sql.NullInt64) *parley.Time {
	if !v.Valid {
		return nil
	}
	return parley.TP(FromMicros(v.Int64))
}

// Now is the clock of the store, truncated to what it keeps.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// DollarRebind is the Rebind of back ends with $1, $2… placeholders. It caches
// the rewritten queries since the set of queries is small and fixed.
func DollarRebind(query string) string {
	if v, ok := rebound.Load(query); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	s := b.String()
	rebound.Store(query, s)
	return s
}

var rebound sync.Map

var errNoRows = sql.ErrNoRows

// impossibleKey reports whether s cannot be a stored key: PostgreSQL refuses
// NUL and invalid UTF-8 in TEXT parameters (an error, so a 500), while no id
// or username ever holds them. Lookups answer parley.NotFound instead.
func impossibleKey(s string) bool { return strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) }

func isNoRows(err error) bool { return errors.Is(err, errNoRows) }
