// Package sqlite is the embedded store: SQLite in WAL mode with one writer
// connection that folds concurrent transactions into group commits.
//
// Driver: modernc.org/sqlite (pure Go). BENCHMARKS.md compares it with the cgo
// driver; with group commit the fsync, not the driver, bounds write
// throughput, and a pure-Go build keeps `go build` free of a C toolchain.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pressly/goose/v3"
	sqlite3 "modernc.org/sqlite"
	sqlite3lib "modernc.org/sqlite/lib"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// maxBatch bounds how many transactions share one commit, so one commit's
// latency stays short while a burst is absorbed.
const maxBatch = 256

// checkpointEvery is the pace of the background WAL checkpoint. SQLite's own
// auto-checkpoint runs inside the commit that crosses 1,000 WAL pages, so that
// one commit (and every send waiting on it) pays for copying and fsyncing the
// database file; in the background, most of the copy overlaps the next
// commits. The writer keeps its auto-checkpoint all the same: only a
// checkpoint that completes between two write transactions lets the next
// one start the WAL over, and a background one racing a busy writer rarely
// does (without it the WAL grew past 1 GiB in 90 s at 2,000 events/s, over
// a 21 MiB database). What the writer finds left to copy is small.
const checkpointEvery = 250 * time.Millisecond

// walLimit is what the WAL file is cut back to when it starts over, so a
// burst does not leave it at its peak size on disk.
const walLimit = 64 << 20

// readConns is how many read transactions run at once. Each keeps its own
// connection, so that its statements stay prepared (parsing was a fifth of
// the CPU of a reconnect storm, where every stream reads its log).
const readConns = 8

// DB is the SQLite store.
type DB struct {
	write    *sql.DB // exactly one connection: SQLite has one writer anyway
	read     *sql.DB
	readers  chan *stmtCache // readConns connections, nil until first used
	ckpt     *sql.DB         // one connection for the background checkpoint
	hook     store.CommitHook
	reqs     chan *request
	done     chan struct{}
	closed   chan struct{}
	ckptDone chan struct{}
	commits  atomic.Uint64 // commits so far: the checkpointer skips idle ticks; a metric

	// Of the writer's own: when its last commit of requests began.
	lastCommit     time.Time
	recent         [demandCommits]recentCommit // noteDemand, newest first
	queuedAtFinish int
	pacedWaits     atomic.Uint64 // gathers that waited, for tests
	pacedFull      atomic.Uint64 // gathers that waited the whole pace
	committed      atomic.Uint64 // requests the commits counted in commits held

	tail *store.Tail // the newest events, not yet merged into the tables
	lock *os.File    // held while open: one process per database file
	full store.Space // whether the disk (or the database's size limit) is full

	logger        atomic.Pointer[slog.Logger]
	onChange      atomic.Pointer[store.ChangeHook]
	timer         atomic.Pointer[WriteTimer]
	mergeFailures atomic.Uint64 // merge steps that failed, for a metric

	// Writer only:
	heads         *store.HeadCache // log heads: appends write no head rows
	savepointsFor int              // batches left to run with savepoints from the start
	failing       int              // merge steps failed in a row
	failLogged    time.Time        // when the last of them was logged
	refusing      bool             // the tail was full at the last look (ErrTailFull)
	commitAt      time.Time        // the time of the events of the commit running (store.NewWriteTx)
}

type request struct {
	ctx     context.Context
	fn      func(*store.Tx) error
	raw     func(*stmtCache) error // in place of fn: tests' PRAGMAs on the writer's connection
	err     error
	events  []parley.Event
	batches []store.Batch         // its appends, for the commit's event_batches row
	merges  []*store.MergeStep    // for the tail, once committed
	fts     []store.FullTextWrite // made at the end of the batch
	changes store.Changes         // for the change hook, once committed
	created []string              // users created, for the head cache once committed
	queued  time.Time             // when Update queued it, for the WriteTimer
	done    chan struct{}
}

// Open opens (creating if needed) the database file at path, migrates it and
// starts the writer. hook, if not nil, receives each commit's events.
func Open(ctx context.Context, path string, hook store.CommitHook) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	// The lock and the database are the real file's, whatever links lead
	// to it: two processes reaching one file by two names would otherwise
	// take two different locks and hand out the same event ids.
	path, err := realPath(path)
	if err != nil {
		return nil, err
	}
	lock, err := lockFile(path)
	if err != nil {
		return nil, err
	}
	if err := private(path); err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, err
	}
	if err := quickCheck(ctx, path); err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, err
	}
	db, err := open(ctx, path, hook)
	if err != nil {
		if lock != nil {
			lock.Close()
		}
		return nil, err
	}
	db.lock = lock
	return db, nil
}

// realPath resolves the symbolic links of path, or of its directory when
// the file does not exist yet.
func realPath(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err == nil {
		return real, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("database path: %w", err)
	}
	if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&os.ModeSymlink != 0 {
		// A link to a file not there yet: create it where the link points.
		target, err := os.Readlink(path)
		if err != nil {
			return "", fmt.Errorf("database path: %w", err)
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		return realPath(target)
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(path))
	if err != nil {
		return "", fmt.Errorf("database path: %w", err)
	}
	return filepath.Join(dir, filepath.Base(path)), nil
}

// private creates the database file readable by its owner only (it holds
// messages and password hashes) before SQLite opens it: SQLite gives the
// -wal and -shm files the mode of the database. Files an older version left
// readable by others are narrowed the same way.
func private(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	f.Close()
	for _, p := range []string{path, path + "-wal", path + "-shm", path + ".lock"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, fi.Mode().Perm()&0o700); err != nil {
				return fmt.Errorf("make %s private: %w", p, err)
			}
		}
	}
	return nil
}

// ErrCorrupt is returned by Open for a database that fails SQLite's
// integrity check: starting on it would fail later, at some read, in ways
// that say nothing of the cause.
var ErrCorrupt = errors.New("database is corrupt")

// quickCheck runs PRAGMA quick_check on the database before anything else
// touches it. It reads every page once (about a second per GiB), the price
// of finding damage at start instead of in the middle of serving.
func quickCheck(ctx context.Context, path string) error {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() == 0 {
		return nil // new: nothing to check
	}
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	corrupt := func(detail string) error {
		return fmt.Errorf("%w: %s: %s (restore it from a backup; `parley check` reports what it finds)", ErrCorrupt, path, detail)
	}
	rows, err := db.QueryContext(ctx, "PRAGMA quick_check(10)")
	if err != nil {
		return corrupt(err.Error())
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return corrupt(err.Error())
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return corrupt(err.Error())
	}
	if len(problems) > 0 {
		return corrupt(strings.Join(problems, "; "))
	}
	return nil
}

func open(ctx context.Context, path string, hook store.CommitHook) (*DB, error) {
	// synchronous=FULL: a commit is on disk when Update returns, so an
	// acknowledged send survives a power cut, not only a crash. Group commit is
	// what makes that affordable.
	pragmas := "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + pragmas
	// The writer's savepoints journal every page they touch first: in memory
	// rather than a temp file. Its page cache is 2 MiB: one of 8 MiB was
	// still filling for minutes under steady traffic (RSS +5 % from the
	// first minute to the fourth of a soak; +0.6 % with 2 MiB) and bought
	// nothing, since the pages a commit touches are spread over a log far
	// larger than either (BENCHMARKS.md, fifth sitting). With cache_spill
	// off, a transaction that dirties more (a merge of the tail touches
	// pages all over the events index) grows the cache for as long as it
	// runs instead of spilling pages to the WAL mid-transaction. The pages
	// are freed when it commits, but SQLite's allocator keeps its peak, so
	// merges run in bounded steps (stepEvents; the prune loop drains the
	// tail the same way before it prunes).
	//
	// secure_delete: a deleted or edited message's old text, and an erased
	// user's, is overwritten with zeros in the file rather than left in
	// free space where anyone with the file could read it.
	write, err := sql.Open("sqlite", dsn+"&_pragma=temp_store(MEMORY)&_pragma=cache_size(-2048)&_pragma=cache_spill(0)&_pragma=secure_delete(1)"+
		fmt.Sprintf("&_pragma=journal_size_limit(%d)", walLimit))
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	if err := store.Migrate(ctx, write, goose.DialectSQLite3); err != nil {
		write.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	tail := store.NewTail()
	if err := store.NewTx(ctx, write, dialect{}).LoadTail(tail); err != nil {
		write.Close()
		return nil, err
	}
	// A reader's page cache is emptied whenever another connection has
	// committed since its last read, which under any write traffic is at
	// each read; the default 2 MB each, never reused, only held memory
	// (chat at 2,000 messages/s: about 23 MB more RSS; 256 KB costs no CPU).
	read, err := sql.Open("sqlite", dsn+"&_pragma=query_only(1)&_pragma=cache_size(-256)")
	if err != nil {
		write.Close()
		return nil, err
	}
	// Room for Ping and for connections being replaced; the readers
	// channel is what bounds concurrent reads.
	read.SetMaxOpenConns(2*readConns + 1)
	read.SetMaxIdleConns(1)
	ckpt, err := sql.Open("sqlite", dsn)
	if err != nil {
		write.Close()
		read.Close()
		return nil, err
	}
	ckpt.SetMaxOpenConns(1)
	db := &DB{
		write:    write,
		read:     read,
		readers:  make(chan *stmtCache, readConns),
		ckpt:     ckpt,
		hook:     hook,
		heads:    store.NewHeadCache(),
		tail:     tail,
		reqs:     make(chan *request, maxBatch),
		done:     make(chan struct{}),
		closed:   make(chan struct{}),
		ckptDone: make(chan struct{}),
	}
	for range readConns {
		db.readers <- nil
	}
	tail.SetLimit(tailLimit)
	go db.writer()
	go db.checkpointer()
	return db, nil
}

// checkpointer copies committed WAL frames into the database file while the
// writer goes on (a PASSIVE checkpoint never blocks it), so that the
// writer's own auto-checkpoint finds little left to copy.
func (db *DB) checkpointer() {
	defer close(db.ckptDone)
	t := time.NewTicker(checkpointEvery)
	defer t.Stop()
	var seen uint64
	done := true // the last checkpoint copied the whole WAL
	for {
		select {
		case <-db.closed:
			return
		case <-t.C:
		}
		n := db.commits.Load()
		if n == seen && done {
			continue // nothing new: an idle server does no work here
		}
		seen = n
		// A failure or a partial copy (a reader holding old frames)
		// leaves the rest for the next tick.
		var busy, logged, copied int
		err := db.ckpt.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logged, &copied)
		done = err == nil && copied >= logged
	}
}

// Update queues fn for the writer and waits for its commit. It waits even if
// ctx ends first: by then fn may already be committed, and the caller must
// not report a failure for a change that happened.
func (db *DB) Update(ctx context.Context, fn func(*store.Tx) error) error {
	return db.full.Seen(db.update(ctx, &request{ctx: context.WithoutCancel(ctx), fn: fn, done: make(chan struct{})}), dialect{}.IsFull, db.log())
}

func (db *DB) update(ctx context.Context, req *request) error {
	req.queued = time.Now()
	select {
	case db.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	case <-db.closed:
		return parley.Errorf(parley.EUnavailable, "store is closed")
	}
	select {
	case <-req.done:
	case <-db.done:
		// The writer stopped; a request it did not take was never run.
		select {
		case <-req.done:
		default:
			return parley.Errorf(parley.EUnavailable, "store is closed")
		}
	}
	return req.err
}

// View runs fn in a read transaction on one of the reader connections.
//
// ctx bounds the wait for a connection, not the statements: with a context
// that can end, each statement starts two goroutines to watch it (database/sql's
// and the driver's), and a reconnect storm's 10,000 streams, a few reads each,
// started over 100,000. Every one of them went through the scheduler's run
// queue, where requests such as /healthz waited behind them (storm p99 73-81
// ms with them, 47-63 ms without). A read here takes microseconds to a few
// milliseconds, so it runs to the end.
func (db *DB) View(ctx context.Context, fn func(*store.Tx) error) (err error) {
	var rc *stmtCache
	select {
	case rc = <-db.readers:
	case <-ctx.Done():
		return ctx.Err()
	case <-db.closed:
		return parley.Errorf(parley.EUnavailable, "store is closed")
	}
	defer func() { db.readers <- rc }()
	ctx = context.WithoutCancel(ctx)
	if rc == nil {
		conn, err := db.read.Conn(ctx)
		if err != nil {
			return fmt.Errorf("read connection: %w", err)
		}
		rc = newStmtCache(conn)
	}
	// Before the snapshot (SQLite takes it at the first statement):
	// merged events stay in the tail until this read ends.
	gen := db.tail.BeginRead()
	defer db.tail.EndRead(gen)
	if _, err := rc.ExecContext(ctx, "BEGIN"); err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer func() {
		// A read transaction that cannot end (fn left rows open, say)
		// would pin its snapshot: drop the connection instead.
		if _, rerr := rc.ExecContext(context.Background(), "ROLLBACK"); rerr != nil {
			// Closing waits for fn's open rows: not on this
			// goroutine. The next View opens another.
			go rc.close()
			rc = nil
		}
	}()
	return fn(store.NewReadTx(ctx, rc, dialect{}, db.tail))
}

// Read is View: a SQLite read costs no round trips.
func (db *DB) Read(ctx context.Context, fn func(*store.Tx) error) error { return db.View(ctx, fn) }

// Unmerged returns how many events the tail holds that are not yet merged
// into the tables.
func (db *DB) Unmerged() int { return db.tail.Unmerged() }

// TailFull reports whether appends are being refused because the tail
// reached its limit (tailLimit) while merges fail.
func (db *DB) TailFull() bool { return db.tail.Full() }

// MergeFailures returns how many merges of the tail have failed since the
// store opened.
func (db *DB) MergeFailures() uint64 { return db.mergeFailures.Load() }

// Commits returns how many group commits of requests the writer made, and
// how many requests (transactions) they committed, since the store opened.
func (db *DB) Commits() (commits, requests uint64) {
	return db.commits.Load(), db.committed.Load()
}

// OnChange has fn hear of the sessions and users each committed request
// changed, before its Update returns (one hook: a later call replaces it).
// This process is meant to be the database's only writer (the lock, on
// Unix), so fn hears of every change: a cache of them stays exact.
func (db *DB) OnChange(fn store.ChangeHook) { db.onChange.Store(&fn) }

// WriteTimer hears where a write transaction's time goes: waiting for the
// writer (the commit before it, and the pace), then its group commit.
// Together they are the store's share of a request's latency.
type WriteTimer interface {
	// Waited is the time from a transaction's queueing to the start of
	// the commit that holds it, once per transaction.
	Waited(time.Duration)
	// Committed is the time from a commit's start to its callers' answers
	// (running the transactions, the COMMIT with its fsync, and a
	// checkpoint when the WAL is due one), once per commit.
	Committed(time.Duration)
}

// TimeWrites has t hear the writer's timings (one timer: a later call
// replaces it).
func (db *DB) TimeWrites(t WriteTimer) { db.timer.Store(&t) }

// timeCommit tells the WriteTimer of the commit of batch that just ended.
func (db *DB) timeCommit(batch []*request) {
	t := db.timer.Load()
	if t == nil {
		return
	}
	for _, req := range batch {
		(*t).Waited(db.lastCommit.Sub(req.queued))
	}
	(*t).Committed(time.Since(db.lastCommit))
}

// tellChanges hands the batch's changes to the OnChange hook.
func (db *DB) tellChanges(batch []*request) {
	fn := db.onChange.Load()
	if fn == nil {
		return
	}
	for _, req := range batch {
		if req.err == nil && !req.changes.Empty() {
			(*fn)(req.changes)
		}
	}
}

// SetLogger sets where the store logs what goes wrong in the background
// (failed merges, refused appends); slog's default until then.
func (db *DB) SetLogger(l *slog.Logger) { db.logger.Store(l) }

func (db *DB) log() *slog.Logger {
	if l := db.logger.Load(); l != nil {
		return l
	}
	return slog.Default()
}

// Ping reports whether the database answers, and whether it has room: after
// a write failed for lack of space, it tries a small write (store.Tx.ProbeSpace)
// and reports the store full until one succeeds.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.read.PingContext(ctx); err != nil {
		return err
	}
	if db.full.Full() {
		return db.Update(ctx, func(tx *store.Tx) error { return tx.ProbeSpace() })
	}
	return nil
}

// Close stops the writer after the queued transactions and closes the files.
func (db *DB) Close() error {
	select {
	case <-db.closed:
		return nil
	default:
	}
	close(db.closed)
	<-db.done
	<-db.ckptDone
	for range readConns {
		if rc := <-db.readers; rc != nil {
			rc.close()
		}
	}
	err := errors.Join(db.read.Close(), db.ckpt.Close(), db.write.Close())
	if db.lock != nil {
		err = errors.Join(err, db.lock.Close())
	}
	return err
}

// commitPace is the least time between the starts of two commits while
// several callers write at once. Each commit is an fsync and SQLite's WAL
// bookkeeping, about 200 µs of CPU on the development machine (a virtual
// disk, where each write and flush exits to the host), and a steady 1,000
// private events a second paid it once per event: the writer was free when
// each arrived. So when recent commits show concurrent callers, a request
// that finds the last commit started less than commitPace ago waits for the
// rest of it, gathering those that arrive meanwhile into its commit. A lone caller
// writing back to back never waits (nothing could join it), nor does the
// first request after a quiet spell. Steady traffic pays at most the pace
// more, half on average, for a fraction of the commits (BENCHMARKS.md,
// "Commit pacing"); the pace is commitPace, or up to slowPace at moderate
// rates (below).
const commitPace = 4 * time.Millisecond

// At a moderate rate commitPace gathers too few requests to pay for their
// commit: at 1,000 private events a second it gathers four, and the commit
// (the fsync, the WAL's pages, and the runtime's wake-ups around a thread
// blocked in fsync: Go's monitor thread polls every 20 µs while one is)
// was a quarter of the server's CPU. So the pace stretches to the time
// paceBatch requests take to arrive at the recent rate, up to slowPace.
// From paceBatch/commitPace (2,000 requests a second) on it is commitPace,
// so busy servers (chat at 2,000 messages a second is more requests than
// that) keep their latency; at 1,000 a second a commit carries eight, and
// delivery p99 goes from about 7 ms to about 11 (BENCHMARKS.md, "A pace
// for moderate rates"). paceBatch 16 stretched chat's pace too: p50 from
// 10 to 14-19 ms.
const (
	slowPace  = 8 * time.Millisecond
	paceBatch = 8
)

// demandCommits is how many recent commits the writer remembers to judge
// whether callers write concurrently, and at what rate.
const demandCommits = 8

// recentCommit is what the writer remembers of a commit of requests.
type recentCommit struct {
	start  time.Time
	held   int // requests it committed
	demand int // and those that queued while it ran
}

// pace returns how long after the last commit's start the next may start:
// the time paceBatch requests took to arrive over the recent commits,
// between commitPace and slowPace.
func (db *DB) pace() time.Duration {
	oldest := db.recent[demandCommits-1].start
	span := db.lastCommit.Sub(oldest)
	if oldest.IsZero() || span <= 0 {
		return commitPace
	}
	// The requests of every commit but the oldest arrived after the
	// oldest began.
	n := 0
	for _, c := range db.recent[:demandCommits-1] {
		n += c.held
	}
	if n == 0 {
		return commitPace
	}
	return min(max(span*paceBatch/time.Duration(n), commitPace), slowPace)
}

// gather adds to batch the requests that are queued and, when the recent
// commits saw concurrent callers, those that arrive before the pace has
// passed since the last commit began, or until it holds as many as the
// busiest recent commit could have: a fixed set of callers, each waiting
// for its answer, is then all in, and nobody else is coming. (Steady
// traffic from many callers rarely fills that many before the pace is up.)
func (db *DB) gather(batch []*request, pace *time.Timer) []*request {
	most := 0
	for _, c := range db.recent {
		most = max(most, c.demand)
	}
	var wait <-chan time.Time
	if d := time.Until(db.lastCommit.Add(db.pace())); d > 0 && most > 1 {
		db.pacedWaits.Add(1)
		pace.Reset(d)
		wait = pace.C
		defer pace.Stop()
	}
	for len(batch) < maxBatch {
		select {
		case req := <-db.reqs:
			batch = append(batch, req)
			continue
		default:
		}
		if wait == nil || len(batch) >= most {
			break
		}
		select {
		case req := <-db.reqs:
			batch = append(batch, req)
		case <-wait:
			wait = nil
			db.pacedFull.Add(1)
		case <-db.closed:
			wait = nil
		}
	}
	return batch
}

// noteDemand records the commit that began at db.lastCommit: the requests
// it held, and how many it could have held: its own and those that queued
// while it ran (counted before its callers were answered, so a caller
// writing again at once does not count).
func (db *DB) noteDemand(held int) {
	copy(db.recent[1:], db.recent[:demandCommits-1])
	db.recent[0] = recentCommit{start: db.lastCommit, held: held, demand: held + db.queuedAtFinish}
}

// writer runs every write transaction. Requests that arrive while a commit is
// in flight (or, paced, within commitPace of the last) are taken together
// into the next one; commit says how a failing request is rolled back alone.
func (db *DB) writer() {
	defer close(db.done)
	ctx := context.Background()
	conn, err := db.write.Conn(ctx)
	if err != nil {
		err = fmt.Errorf("writer connection: %w", err)
		for {
			select {
			case req := <-db.reqs:
				req.err = err
				close(req.done)
			case <-db.closed:
				return
			}
		}
	}
	wc := newStmtCache(conn)
	defer wc.close()
	batch := make([]*request, 0, maxBatch)
	idle := time.NewTimer(mergeIdle)
	pace := time.NewTimer(time.Hour)
	pace.Stop()
	for {
		var first *request
		var idleMerge <-chan time.Time
		if db.tail.Held() > 0 {
			idle.Reset(mergeIdle)
			idleMerge = idle.C
		}
		select {
		case first = <-db.reqs:
		case <-idleMerge:
			for len(db.reqs) == 0 && db.mergeStep(ctx, wc, stepEvents) {
			}
			db.tail.Drop()
			db.watchFull()
			continue
		case <-db.closed:
			// Finish what was queued before Close; later Updates see db.done.
			select {
			case first = <-db.reqs:
			default:
				return
			}
		}
		batch = db.gather(append(batch[:0], first), pace)
		before := db.tail.Unmerged()
		db.lastCommit = time.Now()
		db.commit(ctx, wc, batch)
		db.timeCommit(batch)
		db.noteDemand(len(batch))
		db.keepUp(ctx, wc, db.tail.Unmerged()-before)
		db.tail.Drop()
		db.watchFull()
	}
}

// tailLimit bounds the tail's unmerged events (store.Tail.SetLimit): twice
// mergeHard, which a tail whose merges succeed never stays above, since
// the writer merges back under mergeHard after every commit. Only merges
// that keep failing let it grow this far. At a few hundred bytes an event
// (its share of a payload, its entry in memory), that is some 100-250 MB
// held for the events not yet in the tables: the store then refuses
// appends (503) rather than grow until the process runs out of memory.
var tailLimit = 2 * mergeHard

// watchFull logs when the tail fills (appends refused) and when it is under
// its limit again.
func (db *DB) watchFull() {
	full := db.tail.Full()
	if full == db.refusing {
		return
	}
	db.refusing = full
	if full {
		db.log().Error("store: refusing new events (503): the event tail holds its limit of unmerged events because merging it keeps failing; they are kept (in memory and in event_batches) and merged once a merge succeeds",
			"unmerged", db.tail.Unmerged(), "limit", tailLimit, "merge_failures", db.mergeFailures.Load())
	} else {
		db.log().Info("store: taking new events again: the event tail is under its limit", "unmerged", db.tail.Unmerged())
	}
}

// When the writer merges the tail into event_runs (store.Tail says
// why there is a tail). The more events per user a merge takes, the fewer
// rows and pages it writes per event, so it lets mergeAt events gather (~13 per
// user in a 10,000-user fan-out; ~3 MB) and from then on merges, after each
// commit, twice what the commit appended, unless requests are waiting;
// past mergeHard it merges whether or not they are, until the tail is back
// under it, so the tail cannot outgrow its bound however fast appends come.
// Events older than mergeAge count as if mergeAt were reached, so that
// traffic too thin to reach it (private events to many users) still keeps a
// tail of bounded size, reached in the first minute. A writer idle for
// mergeIdle merges everything, so a quiet server holds no tail.
const (
	mergeAt   = 1 << 17
	mergeHard = 1 << 18
	mergeAge  = 30 * time.Second
	mergeIdle = time.Second
	// stepEvents bounds one merge transaction, so that the requests
	// arriving meanwhile wait a few milliseconds, not the whole tail.
	stepEvents = 4096
)

// keepUp merges after a commit that added appended events to the tail.
func (db *DB) keepUp(ctx context.Context, conn *stmtCache, appended int) {
	budget := 2 * appended
	for {
		n := db.tail.Unmerged()
		due := n >= mergeAt
		if !due && n > 0 {
			oldest := db.tail.Oldest()
			due = !oldest.IsZero() && time.Since(oldest) > mergeAge
		}
		size := stepEvents
		switch {
		case n >= mergeHard:
		case due && budget > 0 && len(db.reqs) == 0:
			// Small commits (private events) merge in small steps,
			// so that the requests arriving meanwhile wait little.
			size = min(stepEvents, max(budget, stepEvents/8))
		default:
			return
		}
		if !db.mergeStep(ctx, conn, size) {
			return
		}
		budget -= n - db.tail.Unmerged()
	}
}

// mergeStep merges the next step of the tail into event_runs in a
// transaction of its own, run as any request is (commit applies the step
// to the tail, or gives it back on a rollback), and reports whether it did.
func (db *DB) mergeStep(ctx context.Context, conn *stmtCache, size int) bool {
	if db.tail.Unmerged() == 0 {
		return false
	}
	var merged bool
	req := &request{ctx: ctx, done: make(chan struct{}), fn: func(tx *store.Tx) (err error) {
		merged, err = tx.MergeTailStep(size)
		return err
	}}
	db.commit(ctx, conn, []*request{req})
	if req.err != nil {
		// The events stay in the tail and their batch rows in the
		// table; a later step tries again (after every commit while the
		// tail is over mergeHard): log the first failure and then one a
		// minute, not each.
		db.mergeFailures.Add(1)
		db.failing++
		if db.failing == 1 || time.Since(db.failLogged) > time.Minute {
			db.failLogged = time.Now()
			db.log().Error("store: merging the event tail failed; the events stay in memory and in event_batches until a merge succeeds",
				"err", req.err, "failed_in_a_row", db.failing, "unmerged", db.tail.Unmerged())
		}
		return false
	}
	if db.failing > 0 {
		db.log().Info("store: merging the event tail again", "after_failures", db.failing)
		db.failing = 0
	}
	return merged
}

// rollback ends the open transaction without committing it.
func (db *DB) rollback(ctx context.Context, conn *stmtCache) {
	_, _ = conn.ExecContext(ctx, "ROLLBACK")
	db.heads.EndTransaction(false)
	db.tail.Rollback()
}

func (db *DB) commit(ctx context.Context, conn *stmtCache, batch []*request) {
	finish := func(err error) {
		db.queuedAtFinish = len(db.reqs)
		for _, req := range batch {
			if err != nil && req.err == nil {
				req.err, req.events, req.batches, req.merges, req.fts = err, nil, nil, nil, nil
			}
			close(req.done)
		}
	}
	db.commitAt = store.Now()
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		finish(fmt.Errorf("begin: %w", err))
		return
	}
	// Savepoints copy every page a request touches (a fifth of the writer's
	// CPU in a 10,000-user fan-out), and are only needed to undo a request
	// that fails. So a batch first runs without them; if a request fails,
	// the transaction is rolled back and the batch runs again with one
	// savepoint per request (fns may run more than once: Store says so).
	// After such a failure the next batches start with savepoints, so a
	// stream of failing requests does not make every batch run twice.
	if len(batch) == 1 || db.savepointsFor == 0 {
		if db.runAll(conn, batch) {
			db.finishCommit(ctx, conn, batch, finish)
			return
		}
		db.rollback(ctx, conn)
		if len(batch) == 1 {
			// Alone, the failed request was the whole transaction.
			finish(nil)
			return
		}
		db.savepointsFor = savepointBatches
		for _, req := range batch {
			req.err, req.events, req.batches, req.merges, req.fts = nil, nil, nil, nil, nil
		}
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			finish(fmt.Errorf("begin: %w", err))
			return
		}
	} else {
		db.savepointsFor--
	}
	for _, req := range batch {
		if err := db.runInSavepoint(conn, req); err != nil {
			// The savepoint could not be rolled back: the transaction
			// is in an unknown state, so none of the batch may commit.
			db.rollback(ctx, conn)
			finish(err)
			return
		}
	}
	db.finishCommit(ctx, conn, batch, finish)
}

// savepointBatches is how many batches run with savepoints from the start
// after one whose optimistic run failed.
const savepointBatches = 32

// runAll runs every request of the batch in the open transaction, with no
// savepoint, and reports whether all succeeded. It stops at the first
// failure.
func (db *DB) runAll(conn *stmtCache, batch []*request) bool {
	for _, req := range batch {
		if !db.run(conn, req) {
			return false
		}
	}
	return true
}

// finishCommit commits the open transaction and hands its events to the
// hook before answering the batch.
func (db *DB) finishCommit(ctx context.Context, conn *stmtCache, batch []*request, finish func(error)) {
	// The batch's appends as one event_batches row, and its full-text
	// writes, last, after every statement that could take a savepoint
	// (store.Tx.WriteBatch and DeferFullText say why); a request that
	// failed holds none (run).
	tx := store.NewWriteTx(ctx, conn, dialect{}, db.heads, db.tail, db.commitAt)
	var row store.Batch
	var err error
	if events := appended(batch); len(events) > 0 {
		row, err = tx.WriteBatch(events)
	}
	for _, req := range batch {
		if err != nil || len(req.fts) == 0 {
			continue
		}
		err = tx.WriteFullText(req.fts...)
	}
	if err != nil {
		db.rollback(ctx, conn)
		finish(err)
		return
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		db.rollback(ctx, conn)
		// Whether it took effect or not, forgetting costs only a read.
		db.tellChanges(batch)
		finish(fmt.Errorf("commit: %w", err))
		return
	}
	db.heads.EndTransaction(true)
	db.commits.Add(1)
	// Into the tail before the hook: a stream woken by an event must find
	// it in the log.
	if row.Events != nil {
		db.tail.Add(row)
	}
	for _, req := range batch {
		if req.err == nil {
			db.committed.Add(1)
			db.heads.Created(req.created)
		}
		for _, m := range req.merges {
			db.tail.Merged(m)
		}
	}
	db.tellChanges(batch)
	if db.hook != nil {
		var all []parley.Event
		for _, req := range batch {
			all = append(all, req.events...)
		}
		if len(all) > 0 {
			db.hook(all)
		}
	}
	finish(nil)
}

// appended returns the events the batch's requests appended, in the order
// they ran, which keeps each user's in log order: one event_batches row.
func appended(batch []*request) []parley.Event {
	n, last := 0, []parley.Event(nil)
	for _, req := range batch {
		for _, b := range req.batches {
			n += len(b.Events)
			last = b.Events
		}
	}
	if n == len(last) {
		return last // one append: no copy
	}
	events := make([]parley.Event, 0, n)
	for _, req := range batch {
		for _, b := range req.batches {
			events = append(events, b.Events...)
		}
	}
	return events
}

// run runs the request's function on conn, keeping its error in req.err and,
// on success, its events in req.events. It reports success.
func (db *DB) run(conn *stmtCache, req *request) bool {
	tx := store.NewWriteTx(req.ctx, conn, dialect{}, db.heads, db.tail, db.commitAt)
	tx.DeferFullText()
	req.err = func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic in transaction: %v", p)
			}
		}()
		if req.raw != nil {
			return req.raw(conn)
		}
		return req.fn(tx)
	}()
	db.heads.EndRequest(req.err == nil)
	if req.err != nil {
		db.tail.Abandon(tx.Merges()...)
		return false
	}
	req.events, req.batches, req.merges, req.fts = tx.Appended(), tx.Batches(), tx.Merges(), tx.FullTextWrites()
	req.changes, req.created = tx.Changes(), tx.CreatedUsers()
	return true
}

// runInSavepoint runs one request of a shared commit inside a savepoint. The
// returned error is only for a failure that spoils the whole transaction; the
// request's own error is kept in req.err.
func (db *DB) runInSavepoint(conn *stmtCache, req *request) error {
	if _, err := conn.ExecContext(req.ctx, "SAVEPOINT req"); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	if !db.run(conn, req) {
		if _, err := conn.ExecContext(req.ctx, "ROLLBACK TO req"); err != nil {
			return fmt.Errorf("rollback to savepoint: %w", err)
		}
	}
	if _, err := conn.ExecContext(req.ctx, "RELEASE req"); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return nil
}

type dialect struct{}

func (dialect) Rebind(q string) string { return q }

func (dialect) IsFull(err error) bool {
	var e *sqlite3.Error
	if errors.As(err, &e) && e.Code()&0xff == sqlite3lib.SQLITE_FULL {
		return true
	}
	return errors.Is(err, syscall.ENOSPC)
}

func (dialect) IsUniqueViolation(err error) bool {
	var e *sqlite3.Error
	if !errors.As(err, &e) {
		return false
	}
	return e.Code() == sqlite3lib.SQLITE_CONSTRAINT_UNIQUE || e.Code() == sqlite3lib.SQLITE_CONSTRAINT_PRIMARYKEY
}

// FullText implements store.Searcher: SQLite's FTS5.
func (dialect) FullText() store.FullText { return store.FTS5 }
