package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Target is the server under test.
type Target struct {
	URL    string
	APIKey string
	// PprofURL is where the server serves /debug/pprof/ (its own
	// listener, --pprof-addr); "" when unknown.
	PprofURL string
	// PID is the server's process id on this machine, or 0 when unknown
	// (then the /proc figures are left out).
	PID int
	// URLs and PIDs list every node when --url names several (URL and
	// PID are then the first); see nodes.go.
	URLs []string
	PIDs []int

	cmd     *exec.Cmd // set when bench spawned the server
	dir     string    // its temporary data dir
	logPath string
	exited  chan struct{}
}

// spawnAPIKey is the publish key of a spawned server.
const spawnAPIKey = "bench-key"

// serverCommand builds the command that runs a server; tests replace it.
var serverCommand = func(args []string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(exe, append([]string{"serve"}, args...)...), nil
}

// spawnServer starts `parley serve` on a free 127.0.0.1 port with a temporary
// data dir and the settings a load test needs, and waits until it is ready.
func spawnServer(ctx context.Context, extra []string, logPath, cpus string, logf func(string, ...any)) (*Target, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "parley-bench-")
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	pprofPort, err := freePort()
	if err != nil {
		return nil, err
	}
	pprofAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(pprofPort))
	args := []string{
		"--addr", addr, "--data-dir", filepath.Join(dir, "data"), "--api-keys", spawnAPIKey,
		"--rate-limit", "0", "--max-streams-per-user", "16", "--password-cost", "4",
		// The load comes from a few loopback addresses, thousands of
		// connections each (a storm opens them all at once).
		"--max-conns-per-ip", "0",
		// Bench users hold streams and send no activity, which the idle
		// logout would end after 5 minutes (a soak's streams, then, and
		// a later run's): sessions stay up for the workload's length.
		"--idle-timeout", "0",
		// pprof lets bench force a garbage collection before reading
		// the heap, so memory per stream counts live memory only.
		"--pprof-addr", pprofAddr,
	}
	args = append(args, extra...) // later flags win
	cmd, err := serverCommand(args)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if cpus != "" {
		// taskset execs the server, so the pid stays the server's.
		ts, err := exec.LookPath("taskset")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("--server-cpus: %w", err)
		}
		cmd = exec.Command(ts, append([]string{"-c", cpus, cmd.Path}, cmd.Args[1:]...)...)
	}
	if logPath == "" {
		logPath = filepath.Join(dir, "server.log")
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), "PARLEY_PASSWORD_COST=4")
	// If bench dies, the server must not outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start server: %w", err)
	}
	logFile.Close() // the child holds its own copy
	t := &Target{URL: "http://" + addr, PprofURL: "http://" + pprofAddr, APIKey: spawnAPIKey, PID: cmd.Process.Pid, cmd: cmd, dir: dir, logPath: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(t.exited) }()
	logf("spawned server pid %d at %s (log %s)", t.PID, t.URL, logPath)

	deadline := time.Now().Add(30 * time.Second)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case <-t.exited:
			tail := t.logTail(2000)
			t.Close()
			return nil, fmt.Errorf("server exited during start-up: %s\n%s", cmd.ProcessState, tail)
		case <-ctx.Done():
			t.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if getOK(ctx, hc, t.URL+"/readyz") == nil {
			return t, nil
		}
		if time.Now().After(deadline) {
			tail := t.logTail(2000)
			t.Close()
			return nil, fmt.Errorf("server not ready after 30s:\n%s", tail)
		}
	}
}

// Close stops a spawned server (SIGTERM, then SIGKILL after 10 s) and removes
// its data. It does nothing for a server bench did not start.
func (t *Target) Close() error {
	if t.cmd == nil {
		return nil
	}
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.exited:
	case <-time.After(10 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.exited
	}
	t.cmd = nil
	return os.RemoveAll(t.dir)
}

func (t *Target) logTail(n int) string {
	b, _ := os.ReadFile(t.logPath)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// freePort asks the kernel for a free 127.0.0.1 port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// isLoopback reports whether the URL's host is a loopback address, so that
// connections can be spread over 127.0.0.x source addresses.
func isLoopback(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback() && ip.To4() != nil
}

// findListenerPID returns the pid of the local process listening on the URL's
// port, by matching the socket inode of /proc/net/tcp{,6} against the
// /proc/*/fd links. It returns 0 when that is not possible.
func findListenerPID(rawURL string) int {
	port := loopbackPort(rawURL)
	if port == 0 {
		return 0
	}
	inodes := portSockets(port, tcpListen)
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := os.ReadDir("/proc")
	for _, d := range procs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if countFDs(pid, inodes) > 0 {
			return pid
		}
	}
	return 0
}

// serverConns counts the connections that the process pid has accepted on
// the URL's port: streams and HTTP connections alike. It reports false when
// that is not possible.
func serverConns(pid int, rawURL string) (int, bool) {
	port := loopbackPort(rawURL)
	if pid <= 0 || port == 0 {
		return 0, false
	}
	return countFDs(pid, portSockets(port, tcpEstablished)), true
}

// loopbackPort is the URL's port if its host is on this machine, else 0.
func loopbackPort(rawURL string) int {
	u, err := url.Parse(rawURL)
	if err != nil || !isLoopback(rawURL) {
		return 0
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return 0
	}
	return p
}

// Socket states as /proc/net/tcp writes them.
const (
	tcpEstablished = "01"
	tcpListen      = "0A"
)

// portSockets returns the fd link names ("socket:[inode]") of the TCP sockets
// whose local port is port, in state st.
func portSockets(port int, st string) map[string]bool {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			// sl local_address rem_address st ... inode (field 9)
			if len(fs) < 10 || fs[3] != st {
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			if i < 0 {
				continue
			}
			if lp, err := strconv.ParseInt(fs[1][i+1:], 16, 32); err == nil && int(lp) == port {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	return inodes
}

// countFDs counts the descriptors of pid that are among links.
func countFDs(pid int, links map[string]bool) int {
	if len(links) == 0 {
		return 0
	}
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	fds, _ := os.ReadDir(dir)
	n := 0
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && links[l] {
			n++
		}
	}
	return n
}

// procSample is a reading of a process's memory and CPU time.
type procSample struct {
	At    time.Time
	RSS   int64 // bytes
	Peak  int64 // bytes: the most RSS the process ever had (VmHWM)
	Ticks int64 // utime + stime, in clock ticks
}

// clockTicks is USER_HZ, which is 100 on every Linux platform Go supports.
const clockTicks = 100

// readProc samples /proc/<pid>/status (VmRSS) and /proc/<pid>/stat (utime,
// stime).
func readProc(pid int) (procSample, error) {
	s := procSample{At: time.Now()}
	if pid <= 0 {
		return s, errors.New("server pid unknown")
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	if s.RSS, err = parseStatusKB(status, "VmRSS:"); err != nil {
		return s, err
	}
	s.Peak, _ = parseStatusKB(status, "VmHWM:")
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	s.Ticks, err = parseStatTicks(stat)
	return s, err
}

func parseVmRSS(status []byte) (int64, error) { return parseStatusKB(status, "VmRSS:") }

// parseStatusKB reads a "<key> <n> kB" line of /proc/<pid>/status, in bytes.
func parseStatusKB(status []byte, key string) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no %s in /proc status", key)
}

func parseStatTicks(stat []byte) (int64, error) {
	// The command name is in parentheses and may hold spaces: count fields
	// from the last ')'. utime and stime are fields 14 and 15 of the line.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("malformed /proc stat")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return u + s, nil
}

// cpuSeconds is the CPU used between two samples, in seconds.
func cpuSeconds(a, b procSample) float64 { return float64(b.Ticks-a.Ticks) / clockTicks }

// cpuPercent is the CPU used between two samples, in percent of one core.
func cpuPercent(a, b procSample) float64 {
	wall := b.At.Sub(a.At).Seconds()
	if wall <= 0 {
		return 0
	}
	return cpuSeconds(a, b) / wall * 100
}

// scrapeMetrics reads the named samples from /metrics. A sample with labels
// is returned under its full name, such as
// parley_stream_closes_total{reason="client"}, when its bare name was asked for.
func scrapeMetrics(ctx context.Context, hc *http.Client, base string, names ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics: %s", resp.Status)
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, val, ok := strings.Cut(line, " ")
		bare, _, _ := strings.Cut(name, "{")
		if !ok || !want[bare] {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out, sc.Err()
}
