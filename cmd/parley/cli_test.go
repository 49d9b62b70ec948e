package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/testenv"
)

// parleyCmd is the real main (see TestMain) with args, and only the
// PARLEY_* variables given: none leaks in from the test's environment.
func parleyCmd(t *testing.T, env []string, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = []string{"PARLEY_TEST_RUN_MAIN=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// runParley runs a command that ends by itself and returns what it printed
// and its exit status.
func runParley(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	// Should a command that is meant to fail run a server instead, it
	// serves on a free port from a temporary directory, never from ./.
	env = append([]string{"PARLEY_ADDR=127.0.0.1:0", "PARLEY_DATA_DIR=" + t.TempDir()}, env...)
	cmd := parleyCmd(t, env, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatalf("parley %q: %v", args, err)
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("parley %q did not end within 30s; stderr:\n%s", args, errOut.String())
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// TestHelpAndVersion: help in every spelling exits 0 and prints the
// commands and every setting with its variable; version prints the module
// version, the revision (or why there is none) and the toolchain.
func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"serve", "--help"}, {"--addr", "127.0.0.1:0", "-h"}, {"help", "serve"}} {
		out, errOut, code := runParley(t, nil, args...)
		if code != 0 {
			t.Errorf("parley %q: exit %d, stderr:\n%s", args, code, errOut)
			continue
		}
		for _, want := range []string{
			"parley serve [flags]", "parley bench <workload>", "parley check [--repair]", "parley version", "parley help",
			"--addr string  PARLEY_ADDR", "(default 127.0.0.1:8080)",
			"--idle-timeout duration  PARLEY_IDLE_TIMEOUT", "(default 5m)",
			"--database-url string  PARLEY_DATABASE_URL", "--bus string  PARLEY_BUS",
			"--api-keys list  PARLEY_API_KEYS", "--demo  PARLEY_DEMO",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("parley %q: output lacks %q:\n%s", args, want, out)
			}
		}
		if errOut != "" {
			t.Errorf("parley %q wrote to stderr: %s", args, errOut)
		}
	}

	out, errOut, code := runParley(t, nil, "bench", "--help")
	if code != 0 || !strings.Contains(out, "Usage: parley bench <workload>") || !strings.Contains(out, "latency") {
		t.Errorf("parley bench --help: exit %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, errOut, code := runParley(t, nil, args...)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if code != 0 || len(lines) != 3 {
			t.Fatalf("parley %q: exit %d, stdout:\n%s\nstderr:\n%s", args, code, out, errOut)
		}
		if !regexp.MustCompile(`^parley (\(devel\)|v\S+)$`).MatchString(lines[0]) {
			t.Errorf("version line %q", lines[0])
		}
		if !regexp.MustCompile(`^revision ([0-9a-f]{40}|unknown)`).MatchString(lines[1]) {
			t.Errorf("revision line %q", lines[1])
		}
		if want := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH; lines[2] != want {
			t.Errorf("toolchain line %q, want %q", lines[2], want)
		}
	}
}

// TestBadCommandLines: each is refused with exit status 2 and a message
// that says what is wrong and where.
func TestBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"frob"}, `unknown command "frob"; the commands are serve, bench, check, version, help`},
		{nil, []string{"help", "frob"}, `no command "frob"; the commands are serve, bench, check, version, help`},
		{[]string{"PARLEY_IDLE_TIMEOUT=5"}, nil, `PARLEY_IDLE_TIMEOUT: invalid duration "5"`},
		{nil, []string{"serve", "--idle-timeout", "5"}, `--idle-timeout: invalid duration "5"`},
		{nil, []string{"serve", "--no-such-flag"}, `-no-such-flag`},
		{nil, []string{"version", "extra"}, `version takes no arguments`},
	} {
		out, errOut, code := runParley(t, tc.env, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("parley %q with %q: exit %d, stderr %q; want exit 2 and %q (stdout %q)", tc.args, tc.env, code, errOut, tc.want, out)
		}
	}
}

// demoProc is `parley serve --demo` running.
type demoProc struct {
	cmd      *exec.Cmd
	url      string
	accounts map[string][2]string // role → username, password
	done     chan struct{}
	mu       sync.Mutex
	stderr   bytes.Buffer
}

var (
	demoURLRE     = regexp.MustCompile(`Open (http://\S+/) and sign in`)
	demoAccountRE = regexp.MustCompile(`^\s+(professional|client)\s+username: (\S+)\s+password: (\S+)`)
)

// dbEnv is the store of a test's parley processes: a fresh PostgreSQL
// database with PARLEY_TEST_DATABASE_URL, else the embedded one in the
// data dir.
func dbEnv(t *testing.T) []string {
	if u := os.Getenv("PARLEY_TEST_DATABASE_URL"); strings.HasPrefix(u, "postgres") {
		return []string{"PARLEY_DATABASE_URL=" + testenv.FreshDatabase(t, u)}
	}
	return nil
}

// startDemo runs `parley serve --demo` and reads the sign-in details it
// prints.
func startDemo(t *testing.T, dataDir string, env []string) *demoProc {
	t.Helper()
	p := &demoProc{accounts: map[string][2]string{}, done: make(chan struct{})}
	p.cmd = parleyCmd(t, env, "serve", "--demo", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--password-cost", "4")
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = &lockedBuffer{mu: &p.mu, b: &p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	printed := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if m := demoAccountRE.FindStringSubmatch(line); m != nil {
				p.accounts[m[1]] = [2]string{m[2], m[3]}
			}
			if m := demoURLRE.FindStringSubmatch(line); m != nil {
				p.url = strings.TrimSuffix(m[1], "/")
				close(printed)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = p.cmd.Wait()
		close(p.done)
	}()
	select {
	case <-printed:
	case <-p.done:
		t.Fatalf("parley serve --demo exited (%v) before printing the demo:\n%s", p.cmd.ProcessState, p.output())
	case <-time.After(60 * time.Second):
		t.Fatalf("parley serve --demo printed no URL within 60s:\n%s", p.output())
	}
	return p
}

func (p *demoProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (l *lockedBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(b)
}

// TestDemo: `parley serve --demo` prints two accounts and the URL; each
// signs in over HTTP with what was printed and finds the conversation
// between them, with its messages, in the REST API and in its event log.
func TestDemo(t *testing.T) {
	p := startDemo(t, t.TempDir(), dbEnv(t))
	if len(p.accounts) != 2 {
		t.Fatalf("demo printed accounts %v, want a professional and a client", p.accounts)
	}
	ctx := context.Background()
	pp := &proc{url: p.url}
	type grant struct {
		Token string `json:"token"`
		User  struct {
			ID   string `json:"id"`
			Role string `json:"role"`
		} `json:"user"`
	}
	type conversation struct {
		ID           string `json:"id"`
		Subject      string `json:"subject"`
		UnreadCount  int    `json:"unread_count"`
		Client       struct{ ID string }
		Professional struct{ ID string }
	}
	var convIDs []string
	users := map[string]string{}
	for _, role := range []string{"client", "professional"} {
		acc := p.accounts[role]
		var g grant
		if code, err := pp.call(ctx, http.MethodPost, "/api/auth/login", "", map[string]string{"username": acc[0], "password": acc[1]}, &g); err != nil {
			t.Fatalf("%s logs in with the printed details: %d %v", role, code, err)
		}
		if g.User.Role != role {
			t.Fatalf("%s account has role %q", role, g.User.Role)
		}
		users[role] = g.User.ID
		var list struct {
			Conversations []conversation `json:"conversations"`
		}
		if _, err := pp.call(ctx, http.MethodGet, "/api/conversations", g.Token, nil, &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Conversations) != 1 || list.Conversations[0].Subject == "" {
			t.Fatalf("%s sees conversations %+v, want the demo's one", role, list.Conversations)
		}
		c := list.Conversations[0]
		convIDs = append(convIDs, c.ID)
		// The professional read the client's message and answered; the
		// answer waits for the client.
		wantUnread := map[string]int{"client": 1, "professional": 0}[role]
		if c.UnreadCount != wantUnread {
			t.Errorf("%s: unread_count %d, want %d", role, c.UnreadCount, wantUnread)
		}
		var page struct {
			Messages []struct {
				SenderID string `json:"sender_id"`
				Body     string `json:"body"`
			} `json:"messages"`
		}
		if _, err := pp.call(ctx, http.MethodGet, "/api/conversations/"+c.ID+"/messages", g.Token, nil, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Messages) != 2 || page.Messages[0].Body == "" || page.Messages[1].Body == "" {
			t.Fatalf("%s reads messages %+v, want two", role, page.Messages)
		}
		// The event log holds the conversation too: a first stream or poll
		// from 0 replays it.
		var poll struct {
			Events []struct {
				Type string `json:"type"`
			} `json:"events"`
		}
		if _, err := pp.call(ctx, http.MethodGet, "/api/events/poll?after=0&wait=0", g.Token, nil, &poll); err != nil {
			t.Fatal(err)
		}
		if len(poll.Events) == 0 || poll.Events[0].Type != "conversation.created" {
			t.Errorf("%s's log starts %+v, want conversation.created", role, poll.Events)
		}
	}
	if convIDs[0] != convIDs[1] {
		t.Fatalf("client and professional see different conversations: %q", convIDs)
	}
}

// TestDemoRefusedOnADatabaseWithUsers: --demo never adds its accounts to a
// database in use; it exits with the reason before listening.
func TestDemoRefusedOnADatabaseWithUsers(t *testing.T) {
	dir := t.TempDir()
	env := dbEnv(t)
	// A first demo run fills the database; so would any registration.
	first := startDemo(t, dir, env)
	_ = first.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-first.done:
	case <-time.After(20 * time.Second):
		t.Fatal("parley did not stop on SIGTERM within 20s")
	}

	out, errOut, code := runParley(t, env, "serve", "--demo", "--addr", "127.0.0.1:0", "--data-dir", dir)
	if code == 0 || !strings.Contains(errOut, "--demo needs an empty database") {
		t.Fatalf("second --demo: exit %d, stderr:\n%s", code, errOut)
	}
	if strings.Contains(out, "password") || strings.Contains(errOut, "parley listening") {
		t.Fatalf("a refused --demo printed accounts or listened:\nstdout %s\nstderr %s", out, errOut)
	}
}
