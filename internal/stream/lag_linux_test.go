package stream

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestLagMeasuresTheWorkersWait: a flush reports how long its frames waited
// since they were queued, except on a blocked socket, whose frames waited for
// their reader (a slow reader must not hold publishes back).
func TestLagMeasuresTheWorkersWait(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	l := &loop{s: &Server{}}
	l.bufPool.New = func() any { b := make([]byte, 0, 64); return &b }
	e := &econn{l: l, fd: int32(fds[0]), on: true}
	defer e.close("test")

	queueAndFlush := func(wait time.Duration) time.Duration {
		e.mu.Lock()
		e.append([]byte("data: x\n\n"))
		e.mu.Unlock()
		time.Sleep(wait)
		e.flush()
		return l.behind()
	}
	if got := queueAndFlush(30 * time.Millisecond); got < 30*time.Millisecond {
		t.Fatalf("lag %v after frames waited 30ms, want at least that", got)
	}
	l.lag.Store(0)
	e.mu.Lock()
	e.blocked = true // as if the last write had filled the socket
	e.mu.Unlock()
	if got := queueAndFlush(30 * time.Millisecond); got != 0 {
		t.Fatalf("lag %v after flushing a blocked socket, want 0", got)
	}
	buf := make([]byte, 64)
	if n, _ := unix.Read(fds[1], buf); n != 2*len("data: x\n\n") {
		t.Fatalf("peer read %d bytes, want both frames", n)
	}
}
