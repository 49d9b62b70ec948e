package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A worker is this same executable run as `parley bench worker`: it holds a
// share of the streams so that no process needs more sockets than its
// open-files limit allows. The parent writes one poolSpec as a JSON line on
// its stdin and later "stop" (or closes stdin); the worker answers with JSON
// lines on stdout: {"opened": stats} once every stream has been tried,
// {"received": n} four times a second, and {"result": stats} after stopping.

// workerMsg is one line of a worker's output.
type workerMsg struct {
	Opened   *poolStats `json:"opened,omitempty"`
	Received *int64     `json:"received,omitempty"`
	Result   *poolStats `json:"result,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// workerCommand builds the command of a worker process; tests replace it.
var workerCommand = benchCommand("worker")

// benchCommand returns a builder of the command `<this executable> bench sub`.
func benchCommand(sub string) func() (*exec.Cmd, error) {
	return func() (*exec.Cmd, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		return exec.Command(exe, "bench", sub), nil
	}
}

// runWorker is the worker side: it serves one pool over stdin and stdout.
func runWorker(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	raiseFileLimit()
	dec := json.NewDecoder(stdin)
	var spec poolSpec
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("worker: read spec: %w", err)
	}
	enc := json.NewEncoder(stdout)
	stopped := make(chan struct{})
	go func() {
		// Everything after the spec is control input: "stop", or EOF when
		// the parent goes away.
		sc := bufio.NewScanner(io.MultiReader(dec.Buffered(), stdin))
		for sc.Scan() && strings.TrimSpace(sc.Text()) != "stop" {
		}
		close(stopped)
	}()
	p := startLocalPool(spec)
	waitCtx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-stopped:
		case <-waitCtx.Done():
		}
		cancel()
	}()
	st, err := p.waitOpened(waitCtx)
	cancel()
	if err == nil {
		if err := enc.Encode(workerMsg{Opened: &st}); err != nil {
			p.stop(ctx)
			return err
		}
		tick := time.NewTicker(250 * time.Millisecond)
	loop:
		for {
			select {
			case <-stopped:
				break loop
			case <-ctx.Done():
				break loop
			case <-tick.C:
				n := p.received()
				if err := enc.Encode(workerMsg{Received: &n}); err != nil {
					break loop
				}
			}
		}
		tick.Stop()
	}
	res, _ := p.stop(ctx)
	return enc.Encode(workerMsg{Result: &res})
}

// raiseFileLimit lifts the soft open-files limit to the hard one: a worker
// exists to hold as many sockets as it may.
func raiseFileLimit() {
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}

// workerPool is the parent's handle on a worker process.
type workerPool struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	openedCh chan poolStats
	resultCh chan poolStats
	done     chan struct{} // closed when the worker's output ends
	err      error         // why it ended early, read after done
	recv     atomic.Int64
	stopOnce sync.Once
	final    poolStats
	finalErr error
}

// startChild starts a helper process of this executable (a worker, a
// probe) that dies with its parent, with pipes to its stdin and stdout.
func startChild(command func() (*exec.Cmd, error), stderr io.Writer) (*exec.Cmd, io.WriteCloser, io.Reader, error) {
	cmd, err := command()
	if err != nil {
		return nil, nil, nil, err
	}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, nil, err
	}
	return cmd, stdin, stdout, nil
}

// startWorker starts a worker process holding the streams of spec.
func startWorker(spec poolSpec, stderr io.Writer) (*workerPool, error) {
	cmd, stdin, stdout, err := startChild(workerCommand, stderr)
	if err != nil {
		return nil, fmt.Errorf("start worker: %w", err)
	}
	w := &workerPool{cmd: cmd, stdin: stdin, openedCh: make(chan poolStats, 1),
		resultCh: make(chan poolStats, 1), done: make(chan struct{})}
	go w.readLoop(stdout)
	go func() {
		// Large specs (15,000 tokens) do not fit the pipe buffer, so
		// they are written while the reader runs.
		if err := json.NewEncoder(stdin).Encode(spec); err != nil {
			_ = cmd.Process.Kill()
		}
	}()
	return w, nil
}

func (w *workerPool) readLoop(stdout io.Reader) {
	defer close(w.done)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var m workerMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			w.err = fmt.Errorf("worker said %q: %w", sc.Text(), err)
			return
		}
		switch {
		case m.Error != "":
			w.err = errors.New("worker: " + m.Error)
			return
		case m.Opened != nil:
			w.openedCh <- *m.Opened
		case m.Received != nil:
			w.recv.Store(*m.Received)
		case m.Result != nil:
			w.resultCh <- *m.Result
			return
		}
	}
	w.err = fmt.Errorf("worker ended without a result: %v", sc.Err())
}

func (w *workerPool) waitOpened(ctx context.Context) (poolStats, error) {
	select {
	case st := <-w.openedCh:
		return st, nil
	case <-w.done:
		if w.err == nil {
			return poolStats{}, errors.New("worker stopped before its streams were open")
		}
		return poolStats{}, w.err
	case <-ctx.Done():
		return poolStats{}, ctx.Err()
	}
}

func (w *workerPool) received() int64 { return w.recv.Load() }

// stop asks the worker to close its streams and waits for its result, killing
// it if it does not answer within 30 s.
func (w *workerPool) stop(ctx context.Context) (poolStats, error) {
	w.stopOnce.Do(func() {
		_, _ = io.WriteString(w.stdin, "stop\n")
		_ = w.stdin.Close()
		t := time.NewTimer(30 * time.Second)
		defer t.Stop()
		select {
		case w.final = <-w.resultCh:
		case <-w.done:
			select {
			case w.final = <-w.resultCh:
			default:
				w.finalErr = w.err
			}
		case <-t.C:
			w.finalErr = errors.New("worker did not stop within 30s")
		case <-ctx.Done():
			w.finalErr = ctx.Err()
		}
		if w.finalErr != nil {
			_ = w.cmd.Process.Kill()
		}
		_ = w.cmd.Wait()
	})
	return w.final, w.finalErr
}
