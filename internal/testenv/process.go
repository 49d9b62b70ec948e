package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Binary returns the path of an outside program, looking in PATH and then in
// the sbin directories that Debian puts servers in; it skips the test (fails
// under CI=true) when the program is not installed.
func Binary(tb testing.TB, name string) string {
	tb.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/local/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	Missing(tb, "%s is not installed", name)
	return ""
}

// Process is a server program that a test runs privately on a port of its
// own, and may stop and start again on the same port. It is stopped when the
// test ends, however the test ends.
type Process struct {
	Name string
	Port int
	Dir  string // a temporary directory of its own

	tb    testing.TB
	path  string
	args  []string
	ready func(ctx context.Context) error

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// StartProcess runs path with args until ready answers nil (or fails the
// test after 15 s). args may contain {port} and {dir}, replaced by Port and
// Dir.
func StartProcess(tb testing.TB, name, path string, port int, ready func(ctx context.Context) error, args ...string) *Process {
	tb.Helper()
	p := &Process{Name: name, Port: port, Dir: tb.TempDir(), tb: tb, path: path, ready: ready}
	for _, a := range args {
		a = strings.ReplaceAll(a, "{port}", strconv.Itoa(port))
		a = strings.ReplaceAll(a, "{dir}", p.Dir)
		p.args = append(p.args, a)
	}
	tb.Cleanup(p.Kill)
	p.Start()
	return p
}

// Start runs the program (again) and waits until it is ready.
func (p *Process) Start() {
	p.tb.Helper()
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		p.tb.Fatalf("%s is already running", p.Name)
	}
	logf, err := os.OpenFile(filepath.Join(p.Dir, p.Name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		p.mu.Unlock()
		p.tb.Fatalf("%s log: %v", p.Name, err)
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Dir = p.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so a signal to the test's group does not reach
	// it twice and Kill can end its children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		p.mu.Unlock()
		p.tb.Fatalf("start %s: %v", p.Name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()

	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := p.ready(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			p.tb.Fatalf("%s exited at start: %s", p.Name, p.Log())
		default:
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("%s not ready after 15s: %v\n%s", p.Name, err, p.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the program with SIGTERM (SIGKILL after 5 s) and waits for it.
func (p *Process) Stop() { p.signal(syscall.SIGTERM) }

// Kill ends the program with SIGKILL and waits for it. It is safe to call
// when the program is not running.
func (p *Process) Kill() { p.signal(syscall.SIGKILL) }

func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.cmd, p.done = nil, nil
}

// Running reports whether the program has been started and not stopped.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Log returns the end of the program's output, for failure messages.
func (p *Process) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, p.Name+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Addr is 127.0.0.1:Port.
func (p *Process) Addr() string { return fmt.Sprintf("127.0.0.1:%d", p.Port) }

// RedisServer runs a private redis-server without persistence. Its URL is
// redis://127.0.0.1:<port>/0.
func RedisServer(tb testing.TB) (*Process, string) {
	tb.Helper()
	bin := Binary(tb, "redis-server")
	port := FreePort(tb)
	u := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	p := StartProcess(tb, "redis", bin, port, func(context.Context) error { return pingRedis(u) },
		"--port", "{port}", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", "{dir}")
	return p, u
}

// NATSServer runs a private nats-server with JetStream (its store in the
// process's directory). Its URL is nats://127.0.0.1:<port>.
func NATSServer(tb testing.TB) (*Process, string) {
	tb.Helper()
	bin := Binary(tb, "nats-server")
	port := FreePort(tb)
	u := fmt.Sprintf("nats://127.0.0.1:%d", port)
	p := StartProcess(tb, "nats", bin, port, func(ctx context.Context) error { return dial(ctx, port) },
		"-a", "127.0.0.1", "-p", "{port}", "-js", "-sd", "{dir}/js")
	return p, u
}

// Nginx runs a private nginx that balances plain HTTP and SSE over the
// upstream addresses (host:port) round-robin, configured as deploy/nginx.conf
// recommends. It returns the process and the base URL of the proxy.
func Nginx(tb testing.TB, upstreams ...string) (*Process, string) {
	tb.Helper()
	bin := Binary(tb, "nginx")
	port := FreePort(tb)
	dir := tb.TempDir()
	var servers strings.Builder
	for _, u := range upstreams {
		// A refused connection marks the node down for a few seconds, and
		// the request goes to the next node (it was never sent).
		fmt.Fprintf(&servers, "    server %s max_fails=1 fail_timeout=3s;\n", u)
	}
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream parley {
%[2]s    keepalive 32;
  }
  server {
    listen 127.0.0.1:%[3]d;
    location / {
      proxy_pass http://parley;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_cache off;
      proxy_read_timeout 1h;
      proxy_connect_timeout 2s;
      proxy_next_upstream error timeout;
    }
  }
}
`, dir, servers.String(), port)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		tb.Fatalf("write nginx.conf: %v", err)
	}
	p := StartProcess(tb, "nginx", bin, port, func(ctx context.Context) error { return dial(ctx, port) },
		"-c", confPath, "-p", dir, "-e", filepath.Join(dir, "error.log"))
	return p, fmt.Sprintf("http://127.0.0.1:%d", port)
}

func dial(ctx context.Context, port int) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	return c.Close()
}
