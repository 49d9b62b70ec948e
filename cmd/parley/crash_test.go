package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the parley binary: run with
// PARLEY_TEST_RUN_MAIN=1 it is `parley` with the given arguments, so the
// end-to-end tests exercise the real main (flags, environment, data dir,
// signals) without a separate go build.
func TestMain(m *testing.M) {
	if os.Getenv("PARLEY_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const crashAPIKey = "k"

// proc is a parley process started by a test.
type proc struct {
	cmd  *exec.Cmd
	url  string
	mu   sync.Mutex
	logs bytes.Buffer
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

var listeningRE = regexp.MustCompile(`msg="parley listening".* addr=(\S+)`)

// startParley runs `parley serve` on a random port with the data dir and
// returns once it logs that it listens.
func startParley(tb testing.TB, dataDir string, extra ...string) *proc {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	p := &proc{done: make(chan struct{})}
	p.cmd = exec.Command(exe, "serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir,
		"--api-keys", crashAPIKey, "--rate-limit", "0", "--password-cost", "4")
	p.cmd.Args = append(p.cmd.Args, extra...)
	env := []string{"PARLEY_TEST_RUN_MAIN=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			env = append(env, kv)
		}
	}
	p.cmd.Env = env
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	select {
	case a := <-addr:
		p.url = "http://" + a
	case <-p.done:
		tb.Fatalf("parley exited before listening (%v):\n%s", p.err, p.output())
	case <-time.After(30 * time.Second):
		tb.Fatalf("parley did not log its address within 30s:\n%s", p.output())
	}
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

var client = &http.Client{Timeout: 20 * time.Second}

// call sends a JSON request and decodes a 2xx answer into out.
func (p *proc) call(ctx context.Context, method, path, token string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.url+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return res.StatusCode, err
	}
	if res.StatusCode/100 == 2 && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return res.StatusCode, fmt.Errorf("decode %s: %w", b, err)
		}
	}
	if res.StatusCode/100 != 2 {
		return res.StatusCode, fmt.Errorf("%s %s: status %d: %s", method, path, res.StatusCode, b)
	}
	return res.StatusCode, nil
}

type crashUser struct{ id, token string }

// register makes an account (password password123) and returns it.
func (p *proc) register(tb testing.TB, name, role string) crashUser {
	tb.Helper()
	var g struct {
		User  struct{ ID string }
		Token string
	}
	body := map[string]string{"username": name, "password": "password123", "role": role}
	if _, err := p.call(context.Background(), "POST", "/api/auth/register", "", body, &g); err != nil {
		tb.Fatal(err)
	}
	return crashUser{g.User.ID, g.Token}
}

// lane is a client's conversation with the professional, for senders.
type lane struct {
	client crashUser
	conv   string
}

// openLanes registers a professional and n clients (names from prefix), each
// client opening a conversation with the professional through nodes in
// turn; acked records the id of each first message.
func openLanes(tb testing.TB, nodes []*proc, prefix string, n int, acked *sync.Map) []lane {
	tb.Helper()
	pro := nodes[0].register(tb, prefix+"pro", "professional")
	var lanes []lane
	for i := range n {
		c := nodes[0].register(tb, fmt.Sprintf("%sclient%d", prefix, i), "client")
		var conv struct {
			ID          string
			LastMessage struct{ ID string } `json:"last_message"`
		}
		if _, err := nodes[i%len(nodes)].call(context.Background(), "POST", "/api/conversations", c.token, map[string]any{
			"professional_id": pro.id, "message": map[string]any{"body": "hello"},
		}, &conv); err != nil {
			tb.Fatal(err)
		}
		acked.Store(conv.LastMessage.ID, true)
		lanes = append(lanes, lane{c, conv.ID})
	}
	return lanes
}

// logEntry is one event of a user's log as read back.
type logEntry struct {
	ID   int64
	Type string
	Data struct {
		Key string `json:"key"`
	}
}

// readLog reads a user's whole log with the poll endpoint.
func (p *proc) readLog(tb testing.TB, u crashUser) []logEntry {
	tb.Helper()
	var all []logEntry
	for {
		var res struct {
			Events []logEntry `json:"events"`
			LastID int64      `json:"last_id"`
			Reset  any        `json:"reset"`
		}
		path := fmt.Sprintf("/api/events/poll?wait=0&after=%d", int64(len(all)))
		if _, err := p.call(context.Background(), "GET", path, u.token, nil, &res); err != nil {
			tb.Fatalf("read log: %v", err)
		}
		if res.Reset != nil {
			tb.Fatalf("poll after=%d answered a reset", len(all))
		}
		if len(res.Events) == 0 {
			return all
		}
		all = append(all, res.Events...)
	}
}

// TestKill9 runs the real binary, loads it with publishes from several
// goroutines, SIGKILLs it in the middle, restarts it on the same data dir
// and checks the log: every publish that was answered 202 is there exactly
// once at the id it was given; ids are contiguous; nothing is there that
// was never sent; a publish to several users is in all of their logs or in
// none (those that got no answer may go either way); the log goes on from
// its head after the restart; and SIGTERM then shuts the node down cleanly.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills parley processes; skipped with -short")
	}
	dir := t.TempDir()
	p := startParley(t, dir)
	ctx := context.Background()

	users := make([]crashUser, 6)
	for i := range users {
		users[i] = p.register(t, fmt.Sprintf("crash%d", i), "client")
	}

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	type publish struct {
		key     string
		targets []string
		ids     map[string]int64 // nil unless answered 202
	}
	var (
		mu   sync.Mutex
		sent []*publish
		wg   sync.WaitGroup
	)
	acked := make(chan struct{}, 1<<16)
	const workers = 4
	for w := range workers {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			for n := 0; ; n++ {
				pub := &publish{key: fmt.Sprintf("w%d-%d", w, n)}
				for _, k := range rng.Perm(len(users))[:1+rng.IntN(3)] {
					pub.targets = append(pub.targets, users[k].id)
				}
				mu.Lock()
				sent = append(sent, pub)
				mu.Unlock()
				var out struct{ IDs map[string]int64 }
				_, err := p.call(ctx, "POST", "/api/publish", crashAPIKey,
					map[string]any{"user_ids": pub.targets, "type": "app.crash", "data": map[string]string{"key": pub.key}}, &out)
				if err != nil {
					return // the process is gone; this publish may or may not be stored
				}
				mu.Lock()
				pub.ids = out.IDs
				mu.Unlock()
				acked <- struct{}{}
			}
		})
	}
	// Kill it in the middle of the load: after a random number of answers.
	rng := rand.New(rand.NewPCG(seed, 99))
	for range 100 + rng.IntN(200) {
		select {
		case <-acked:
		case <-time.After(20 * time.Second):
			t.Fatalf("publishes stalled:\n%s", p.output())
		}
	}
	time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	wg.Wait()

	p = startParley(t, dir)

	byKey := map[string]*publish{}
	answered := 0
	for _, pub := range sent {
		byKey[pub.key] = pub
		if pub.ids != nil {
			answered++
		}
	}
	stored := map[string]map[string]int64{} // key → user → id
	for _, u := range users {
		log := p.readLog(t, u)
		seen := map[string]bool{}
		for i, e := range log {
			if e.ID != int64(i+1) {
				t.Fatalf("user %s: ids are not contiguous: position %d holds id %d", u.id, i+1, e.ID)
			}
			pub := byKey[e.Data.Key]
			if e.Type != "app.crash" || pub == nil {
				t.Fatalf("user %s: id %d is %s %q, which nobody published", u.id, e.ID, e.Type, e.Data.Key)
			}
			if seen[e.Data.Key] {
				t.Fatalf("user %s: publish %s is in the log twice", u.id, e.Data.Key)
			}
			seen[e.Data.Key] = true
			if stored[e.Data.Key] == nil {
				stored[e.Data.Key] = map[string]int64{}
			}
			stored[e.Data.Key][u.id] = e.ID
		}
	}
	lost, unanswered, kept := 0, 0, 0
	for _, pub := range sent {
		got := stored[pub.key]
		if pub.ids != nil {
			for _, target := range pub.targets {
				if id := got[target]; id != pub.ids[target] {
					lost++
					t.Errorf("publish %s was answered id %d for %s, the log has %d", pub.key, pub.ids[target], target, id)
				}
			}
			continue
		}
		unanswered++
		if len(got) > 0 {
			kept++
			if len(got) != len(pub.targets) {
				t.Errorf("unanswered publish %s is in %d of its %d users' logs", pub.key, len(got), len(pub.targets))
			}
		}
	}
	t.Logf("%d publishes answered before the kill, %d without an answer (%d of them stored), %d lost", answered, unanswered, kept, lost)
	if answered < 100 {
		t.Fatalf("only %d publishes were answered", answered)
	}

	// The log goes on from its head.
	head := int64(len(p.readLog(t, users[0])))
	var out struct{ IDs map[string]int64 }
	if _, err := p.call(ctx, "POST", "/api/publish", crashAPIKey, map[string]any{"user_ids": []string{users[0].id}, "type": "app.after", "data": map[string]string{"key": "after"}}, &out); err != nil {
		t.Fatal(err)
	}
	if out.IDs[users[0].id] != head+1 {
		t.Fatalf("first publish after the restart got id %d, want %d", out.IDs[users[0].id], head+1)
	}

	// SIGTERM: a clean exit.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("parley exited with %v after SIGTERM:\n%s", p.err, p.output())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("parley still running 20s after SIGTERM:\n%s", p.output())
	}
}
