//go:build linux

package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/parley-chat/parley"
)

// The event loop serves hijacked HTTP/1.1 streams without a goroutine each:
// an idle stream is a socket, a small struct and a slot in a heartbeat wheel.
// net/http would hold two goroutines and about 10 KiB of buffers per stream
// for as long as it is open (BENCHMARKS.md: 44 KiB of RSS per idle stream).
//
// Why not an event-loop library (gnet, nbio): those replace net/http for
// every request. Streams need only two things once net/http has parsed and
// authenticated the request: writes that never block, with a bounded queue,
// and notice of the peer hanging up. That is one epoll set watching for
// EPOLLRDHUP (and EPOLLOUT only while a reader is behind), and a few workers
// that write.
//
// The socket is taken out of Go's own poller (duplicated, then the net.Conn
// closed): otherwise every ACK of every heartbeat would wake the runtime's
// poller for a descriptor nobody waits on.
type loop struct {
	s       *Server
	epfd    int
	ep      *os.File // epfd, for waiting on it in Go's poller
	queue   chan *econn
	mu      sync.Mutex
	conns   map[int32]*econn
	wheel   [wheelSlots]map[*econn]struct{}
	next    int    // the wheel slot new streams join
	gen     uint32 // tells a reused descriptor number from its previous owner
	done    chan struct{}
	wg      sync.WaitGroup
	bufPool sync.Pool

	rechecking atomic.Bool  // a slot's head check is running
	lag        atomic.Int64 // ns the last flush's frames waited for a worker; 0 once the queue is empty
}

// wheelSlots spreads heartbeats over the interval, so 19k streams do not all
// wake in the same instant.
const wheelSlots = 16

// drainAt is how far the replay runs ahead of the socket before it waits.
const drainAt = 64 << 10

// queueBytes bounds the bytes a stream holds for its socket: a client that
// reads nothing is cut (and resumes from the log when it comes back) once
// its queue is this large, whatever the count of frames in it: 256 frames
// of 64 KiB were 16 MB a stream. It is above pageBytes, the most a replay
// batch adds at once.
const queueBytes = 512 << 10

func newLoop(s *Server) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// The loop waits for its epoll set in Go's own poller rather than in a
	// blocking epoll_wait: a thread in a system call keeps its P until sysmon
	// takes it back (up to 10 ms later when sysmon has been idle), and with
	// two Ps that is half the process.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	ep := os.NewFile(uintptr(epfd), "epoll")
	if err := ep.SetReadDeadline(time.Time{}); err != nil {
		ep.Close()
		return nil, fmt.Errorf("epoll set is not pollable: %w", err)
	}
	size := 1 << 16
	if t := s.Hub.limits.Total; t+1024 > size {
		size = t + 1024
	}
	// Each stream is in the queue at most once (econn.queued), so a queue
	// longer than the stream limit never blocks the hub.
	l := &loop{s: s, epfd: epfd, ep: ep, queue: make(chan *econn, size), conns: make(map[int32]*econn), done: make(chan struct{})}
	for i := range l.wheel {
		l.wheel[i] = make(map[*econn]struct{})
	}
	l.bufPool.New = func() any { b := make([]byte, 0, 4096); return &b }
	l.wg.Add(2)
	go l.poll()
	go l.heartbeats()
	for range runtime.GOMAXPROCS(0) {
		l.wg.Add(1)
		go l.worker()
	}
	return l, nil
}

func (l *loop) stop() {
	// Kicked streams close in the workers; give them a moment to finish.
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		l.mu.Lock()
		n := len(l.conns)
		l.mu.Unlock()
		if n == 0 {
			break
		}
	}
	close(l.done)
	_ = l.ep.SetReadDeadline(time.Now()) // wakes poll
	l.wg.Wait()
	l.mu.Lock()
	rest := make([]*econn, 0, len(l.conns))
	for _, e := range l.conns {
		rest = append(rest, e)
	}
	l.mu.Unlock()
	for _, e := range rest {
		e.close(ReasonShutdown)
	}
	l.ep.Close()
}

const (
	evIdle    = unix.EPOLLRDHUP
	evBlocked = unix.EPOLLRDHUP | unix.EPOLLOUT | unix.EPOLLET
)

func (l *loop) add(e *econn) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.gen++
	e.gen = l.gen
	ev := unix.EpollEvent{Events: evIdle, Fd: e.fd, Pad: int32(e.gen)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, int(e.fd), &ev); err != nil {
		return err
	}
	l.conns[e.fd] = e
	e.slot = l.next
	l.wheel[e.slot][e] = struct{}{}
	l.next = (l.next + 1) % wheelSlots
	return nil
}

func (l *loop) remove(e *econn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns[e.fd] == e {
		delete(l.conns, e.fd)
	}
	delete(l.wheel[e.slot], e)
}

// poll turns epoll readiness into work: a hang-up closes the stream, room in
// the socket buffer schedules a flush of what is queued.
func (l *loop) poll() {
	defer l.wg.Done()
	events := make([]unix.EpollEvent, 512)
	rc, err := l.ep.SyscallConn()
	if err != nil {
		l.s.Logger.Error("epoll set", "err", err)
		return
	}
	for {
		var n int
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			n, werr = unix.EpollWait(int(fd), events, 0)
			return n > 0 || (werr != nil && !errors.Is(werr, unix.EINTR))
		})
		select {
		case <-l.done:
			return
		default:
		}
		if err == nil {
			err = werr
		}
		if err != nil {
			l.s.Logger.Error("epoll wait", "err", err)
			return
		}
		for i := 0; i < n; i++ {
			ev := events[i]
			l.mu.Lock()
			e := l.conns[ev.Fd]
			if e != nil && int32(e.gen) != ev.Pad {
				e = nil // closed, and its number reused, since epoll_wait
			}
			l.mu.Unlock()
			if e == nil {
				continue
			}
			if ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				e.close(ReasonClient)
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				e.mu.Lock()
				if !e.queued && e.on {
					e.queued = true
					l.queue <- e
				}
				e.mu.Unlock()
			}
		}
	}
}

func (l *loop) worker() {
	defer l.wg.Done()
	for n := 1; ; n++ {
		select {
		case <-l.done:
			return
		case e := <-l.queue:
			e.flush()
			if len(l.queue) == 0 {
				l.lag.Store(0)
			}
		}
		if n%yieldEvery == 0 {
			runtime.Gosched()
		}
	}
}

// yieldEvery is how many flushes a worker makes before it lets other
// goroutines run. A fan-out queues 10,000 flushes at once; without yields
// the workers hold every P for their whole time slice, and the requests
// and the writer's next commit wait for a P at each step. At 10 fan-outs a
// second to 10,000 streams, delivery p99 went from 528-676 ms to 293-362
// (every 32: 330-371; every flush: 330 and 457; BENCHMARKS.md, seventh
// sitting).
const yieldEvery = 4

// heartbeats visits one wheel slot per tick: each stream gets its ": ping"
// once per heartbeat interval, a stream whose queue has not moved for the
// write timeout is cut as too slow, and with Recheck each stream reads the
// log once per interval.
func (l *loop) heartbeats() {
	defer l.wg.Done()
	t := time.NewTicker(max(l.s.Heartbeat/wheelSlots, time.Millisecond))
	defer t.Stop()
	slot := 0
	var batch []*econn
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		l.mu.Lock()
		batch = batch[:0]
		for e := range l.wheel[slot] {
			batch = append(batch, e)
		}
		l.mu.Unlock()
		now := time.Now()
		for _, e := range batch {
			e.heartbeat(now)
		}
		if l.s.Recheck && len(batch) > 0 && l.rechecking.CompareAndSwap(false, true) {
			go l.recheck(slices.Clone(batch))
		}
		slot = (slot + 1) % wheelSlots
	}
}

// recheck reads the heads of one wheel slot's users in one query and sends
// the streams that are behind to catch up. One read per slot rather than
// one per stream: at ~17,500 streams a node, per-stream reads at every
// heartbeat made PostgreSQL time out. A slot whose check is still running
// when the next comes is skipped; it is checked on its next turn.
func (l *loop) recheck(batch []*econn) {
	defer l.rechecking.Store(false)
	users := make([]string, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	for _, e := range batch {
		if u := e.sub.UserID; !seen[u] {
			seen[u] = true
			users = append(users, u)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(l.s.Heartbeat, time.Second))
	defer cancel()
	heads, err := l.s.Log.Heads(ctx, users)
	if err != nil {
		if l.s.Logger != nil {
			l.s.Logger.Warn("stream: log heads for the heartbeat check", "users", len(users), "err", err)
		}
		return
	}
	for _, e := range batch {
		e.mu.Lock()
		if !e.closed && e.closing == "" && e.on && heads[e.sub.UserID] > e.cursor {
			e.wantCatchUp()
		}
		e.mu.Unlock()
	}
}

// behind reports how long frames wait for a worker right now.
func (l *loop) behind() time.Duration { return time.Duration(l.lag.Load()) }

// getBuf returns an empty buffer and the box it goes back to the pool in:
// putting a new &b each time would allocate a box per flush.
func (l *loop) getBuf() *[]byte {
	p := l.bufPool.Get().(*[]byte)
	*p = (*p)[:0]
	return p
}

// putBuf gives b, which grew from the buffer of box, back to the pool.
func (l *loop) putBuf(box *[]byte, b []byte) {
	if cap(b) <= 64<<10 {
		*box = b[:0]
		l.bufPool.Put(box)
	}
}

// econn is one stream on the event loop. It is the hub's Sink for the
// stream: Offer and Kick only queue work, under e.mu, and never block.
type econn struct {
	l    *loop
	sub  *Sub
	fd   int32 // owned: closed by close, under mu, so it is never reused under a write
	gen  uint32
	slot int
	on   bool // on the loop: fd is open and registered

	mu       sync.Mutex
	blocked  bool           // the socket was full; waiting for EPOLLOUT
	out      []byte         // bytes not yet taken by the socket
	outBox   *[]byte        // the pool's box of out (getBuf)
	live     int            // live frames in out, for the slow-reader bound
	since    time.Time      // when out last went from empty to not empty
	cursor   int64          // the last durable id queued
	catching bool           // a log read is running; it owns durable frames
	dirty    bool           // a durable frame arrived during that read
	queued   bool           // in the worker queue
	closing  string         // close after one last flush, for this reason
	closed   bool           //
	sent     []parley.Event // durable events in out, for the delivery hook
	flushing []parley.Event // durable events handed to the socket by the last write
}

// serveLoop admits the stream, answers the request on the hijacked
// connection, replays the log on this goroutine, and leaves the live part to
// the loop.
func (s *Server) serveLoop(w http.ResponseWriter, r *http.Request, userID, sessionID string, turn *Turn) error {
	e := &econn{l: s.loop, catching: true}
	sub, err := s.Hub.Subscribe(userID, sessionID, e)
	if err != nil {
		return err
	}
	e.sub = sub
	head, cursor, err := s.opening(r.Context(), r, userID)
	if err != nil {
		s.Hub.Unsubscribe(sub)
		return err
	}
	setStreamHeaders(w.Header())
	w.Header().Set("Connection", "close") // the body ends when the connection does
	nc, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.Hub.Unsubscribe(sub)
		return err
	}
	// What the client sent after its request (nothing, for a well-behaved
	// EventSource) is dropped with net/http's buffers.
	fd, err := detach(nc)
	if err != nil {
		// Out of descriptors (the duplicate needs one more for a moment):
		// nothing is written yet, so the client can still get a clean 503.
		refuse(nc, ErrFull)
		nc.Close()
		s.Hub.Unsubscribe(sub)
		return nil
	}
	err = writeHead(nc, w.Header(), head, s.WriteTimeout)
	nc.Close()
	if err != nil {
		unix.Close(fd)
	} else {
		e.mu.Lock()
		e.fd, e.cursor, e.on = int32(fd), cursor, true
		e.mu.Unlock()
		if err = s.loop.add(e); err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		e.mu.Lock()
		e.on = false
		e.mu.Unlock()
		s.Hub.Unsubscribe(sub)
		s.closed(ReasonError)
		return nil
	}
	e.catchUp(turn)
	return nil
}

// detach returns a non-blocking duplicate of the connection's socket that
// Go's poller does not watch; the caller closes the net.Conn.
func detach(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, errors.New("connection has no descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) { fd, derr = unix.Dup(int(s)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// writeHead writes the status line, headers and opening events with an
// ordinary blocking write: the socket is fresh, and this goroutine is the
// request's own.
func writeHead(nc net.Conn, h http.Header, head []byte, timeout time.Duration) error {
	b := make([]byte, 0, 512+len(head))
	b = append(b, "HTTP/1.1 200 OK\r\nDate: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, "\r\n"...)
	for k, vs := range h {
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	b = append(b, head...)
	_ = nc.SetWriteDeadline(time.Now().Add(timeout))
	_, err := nc.Write(b)
	_ = nc.SetWriteDeadline(time.Time{})
	return err
}

// refuse answers a hijacked request with the SPEC's error shape.
func refuse(nc net.Conn, e *parley.Error) {
	body, _ := json.Marshal(map[string]any{"error": map[string]string{"code": e.Code, "message": e.Message}})
	resp := fmt.Sprintf("HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"+
		"Retry-After: %d\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		int(e.RetryAfter.Seconds()), len(body), body)
	_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(nc, resp)
}

// Offer implements Sink. However many frames come, the stream is scheduled
// once, so they leave in one write.
func (e *econn) Offer(fs []*Frame) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.closing != "" {
		return true
	}
	queued := false
	for _, f := range fs {
		if e.take(f) {
			queued = true
			e.live++
		}
	}
	if !queued {
		return true
	}
	if e.live > e.l.s.Hub.limits.Buffer || len(e.out) > queueBytes {
		return false
	}
	e.schedule()
	return true
}

// take queues f for the socket if it is the stream's next frame, and
// reports whether it did; e.mu is held.
func (e *econn) take(f *Frame) bool {
	id := f.Event.ID
	switch {
	case f.poke:
		if id > e.cursor {
			e.wantCatchUp()
		}
		return false
	case id == 0:
		e.append(f.wire)
	case e.catching:
		if id > e.cursor {
			e.dirty = true
		}
		return false
	case id <= e.cursor:
		return false
	case id == e.cursor+1:
		e.append(f.wire)
		e.cursor = id
		e.sent = append(e.sent, f.Event)
		if m := e.l.s.Metrics; m != nil {
			m.Delivered(time.Since(f.Event.Time.Time))
		}
	default:
		// A gap: an earlier event's notification is late or lost. The log
		// has it.
		e.wantCatchUp()
		return false
	}
	return true
}

// Kick implements Sink.
func (e *econn) Kick(reason string, farewell *Frame) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.closing != "" {
		return
	}
	if farewell != nil {
		e.append(farewell.wire)
	}
	e.closing = reason
	e.schedule()
}

func (e *econn) append(b []byte) {
	if len(e.out) == 0 {
		if e.out == nil {
			e.outBox = e.l.getBuf()
			e.out = *e.outBox
		}
		e.since = time.Now()
	}
	e.out = append(e.out, b...)
}

// schedule queues a flush; e.mu is held. Before the stream is on the loop
// its opening replay will flush. A blocked socket is flushed on EPOLLOUT.
func (e *econn) schedule() {
	if !e.queued && e.on && (!e.blocked || e.closing != "") {
		e.queued = true
		e.l.queue <- e
	}
}

func (e *econn) wantCatchUp() {
	if e.catching {
		e.dirty = true
		return
	}
	e.catching = true
	go e.catchUp(nil)
}

// flush writes what is queued without blocking; what the socket does not
// take waits for its EPOLLOUT.
func (e *econn) flush() {
	e.mu.Lock()
	e.queued = false
	if e.closed {
		e.mu.Unlock()
		return
	}
	var werr error
	if len(e.out) > 0 {
		if !e.blocked {
			// A blocked socket's frames waited for its reader, not for a
			// worker: that is the slow-reader bound's business.
			e.l.lag.Store(int64(time.Since(e.since)))
		}
		var n int
		n, werr = e.write(e.out)
		if n == len(e.out) {
			e.l.putBuf(e.outBox, e.out)
			e.out, e.outBox, e.live = nil, nil, 0
			e.flushing, e.sent = e.sent, e.flushing[:0]
			if e.blocked {
				e.blocked = false
				e.watch(evIdle)
			}
		} else {
			e.out = e.out[:copy(e.out, e.out[n:])]
			if werr == nil && !e.blocked {
				e.blocked = true
				e.watch(evBlocked)
			}
		}
	}
	delivered := e.flushing
	e.flushing = nil
	closing := e.closing
	e.mu.Unlock()

	if len(delivered) > 0 && e.l.s.OnDelivered != nil {
		e.l.s.OnDelivered(e.sub.UserID, delivered)
	}
	e.mu.Lock()
	if e.flushing == nil {
		e.flushing = delivered[:0]
	}
	e.mu.Unlock()
	switch {
	case werr != nil:
		e.close(ReasonError)
	case closing != "":
		e.close(closing)
	}
}

// write makes one non-blocking write attempt; e.mu is held, which is what
// keeps close from freeing the descriptor number under it.
func (e *econn) write(b []byte) (int, error) {
	if !e.on {
		return 0, net.ErrClosed
	}
	n, err := unix.Write(int(e.fd), b)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		return 0, nil
	case err != nil:
		return 0, err
	}
	return max(n, 0), nil
}

// watch changes what epoll reports for the socket; e.mu is held.
func (e *econn) watch(events uint32) {
	ev := unix.EpollEvent{Events: events, Fd: e.fd, Pad: int32(e.gen)}
	_ = unix.EpollCtl(e.l.epfd, unix.EPOLL_CTL_MOD, int(e.fd), &ev)
}

var ping = []byte(": ping\n\n")

func (e *econn) heartbeat(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.closing != "" || !e.on {
		return
	}
	if len(e.out) > 0 {
		if now.Sub(e.since) > e.l.s.WriteTimeout {
			e.closing = ReasonSlow
			e.schedule()
		}
		return
	}
	// An idle socket takes 8 bytes at once: write here rather than through
	// a worker. A failure is left to the next flush or to EPOLLRDHUP.
	if n, err := e.write(ping); err == nil && n < len(ping) {
		e.append(ping[n:])
		e.schedule()
	}
}

// catchUp reads the log after the cursor until it has everything, including
// any durable frame that arrived meanwhile (dirty), then hands live delivery
// back to Offer. It waits for the socket between batches, so a long replay
// is paced by the reader instead of piling up in memory.
func (e *econn) catchUp(turn *Turn) {
	s := e.l.s
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		e.mu.Lock()
		if e.closed || e.closing != "" {
			e.catching = false
			e.schedule()
			e.mu.Unlock()
			return
		}
		cursor := e.cursor
		e.dirty = false
		e.mu.Unlock()

		events, err := s.Log.After(ctx, e.sub.UserID, cursor, replayBatch, pageBytes)
		reset := int64(-1)
		if err == nil && pruned(events, cursor) {
			_, reset, err = s.Log.Bounds(ctx, e.sub.UserID)
			events = nil
		}
		if err != nil {
			s.fail(e.sub.UserID, err)
			e.Kick(ReasonError, nil)
			e.mu.Lock()
			e.catching = false
			e.mu.Unlock()
			return
		}
		e.mu.Lock()
		if reset >= 0 {
			e.append(resetFrame(reset).wire)
			e.cursor = reset
			e.dirty = true // read on from there
		}
		for i := range events {
			if events[i].ID == e.cursor+1 {
				e.append(NewFrame(events[i]).wire)
				e.cursor = events[i].ID
				e.sent = append(e.sent, events[i])
			}
		}
		done := !more(events, replayBatch) && !e.dirty
		if done {
			e.catching = false
		}
		e.schedule()
		e.mu.Unlock()
		if s.Metrics != nil && len(events) > 0 {
			s.Metrics.Replayed(len(events))
		}
		if done {
			return
		}
		turn.End() // the rest of a long replay goes at the client's pace
		if !e.waitDrain() {
			e.Kick(ReasonSlow, nil)
			e.mu.Lock()
			e.catching = false
			e.mu.Unlock()
			return
		}
	}
}

// waitDrain waits until the socket has taken most of what is queued, or
// reports false after the write timeout.
func (e *econn) waitDrain() bool {
	deadline := time.Now().Add(e.l.s.WriteTimeout)
	for {
		e.mu.Lock()
		n, closed := len(e.out), e.closed
		e.mu.Unlock()
		if closed || n < drainAt {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// close ends the stream once: off the loop, socket closed, out of the hub.
func (e *econn) close(reason string) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	if e.out != nil {
		e.l.putBuf(e.outBox, e.out)
		e.out, e.outBox = nil, nil
	}
	if e.on {
		if reason == ReasonSlow || reason == ReasonError {
			// Reset rather than drain: what the kernel still holds for a
			// reader that stopped reading would otherwise sit in an orphaned
			// socket for minutes of zero-window probes. The client resumes
			// from its last id either way.
			_ = unix.SetsockoptLinger(int(e.fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		}
		// Closing the descriptor also takes it out of the epoll set.
		e.l.remove(e)
		unix.Close(int(e.fd))
		e.on = false
	}
	e.mu.Unlock()
	e.l.s.Hub.Unsubscribe(e.sub)
	e.l.s.closed(reason)
}
