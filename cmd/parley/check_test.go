package main

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(tb testing.TB) {
	tb.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		tb.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		tb.Fatalf("parley still running 20s after SIGTERM:\n%s", p.output())
	}
}

// metric reads an unlabelled metric from /metrics; -1 if absent.
func (p *proc) metric(tb testing.TB, name string) float64 {
	tb.Helper()
	res, err := client.Get(p.url + "/metrics")
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

// firstEvents opens the user's stream from Last-Event-ID after and returns
// the event types it sends before it ends or wait passes.
func (p *proc) firstEvents(tb testing.TB, token string, after int64, wait time.Duration) []string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.url+"/api/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Last-Event-ID", fmt.Sprint(after))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var types []string
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if typ, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			types = append(types, typ)
		}
	}
	return types
}

// parleyCheck runs `parley check` with args and returns its output and
// whether it exited 0.
func parleyCheck(tb testing.TB, args ...string) (string, bool) {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe, append([]string{"check"}, args...)...)
	cmd.Env = append(os.Environ(), "PARLEY_TEST_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	if _, exited := err.(*exec.ExitError); err != nil && !exited {
		tb.Fatal(err)
	}
	return string(out), err == nil
}

// TestCorruptRunVisibleAndRepairable: a stored run of events that does not
// decode (a disk or a bug wrote garbage) makes every replay of its user's
// log fail. The node says so in a log line naming the user and the row and
// in parley_store_corrupt_runs_total; `parley check` finds it offline and
// exits non-zero; `parley check --repair` drops it, after which a client
// resuming from before it gets a reset and one resuming after it its
// events, and the log goes on from its head.
func TestCorruptRunVisibleAndRepairable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts parley processes; skipped with -short")
	}
	dir := t.TempDir()
	p := startParley(t, dir)
	ctx := context.Background()
	var g struct {
		User  struct{ ID string }
		Token string
	}
	if _, err := p.call(ctx, "POST", "/api/auth/register", "", map[string]string{"username": "runner", "password": "password123", "role": "client"}, &g); err != nil {
		t.Fatal(err)
	}
	const events = 100
	for i := range events {
		if _, err := p.call(ctx, "POST", "/api/publish", crashAPIKey, map[string]any{"user_ids": []string{g.User.ID}, "type": "app.n", "data": map[string]int{"i": i}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The idle writer merges the tail into runs within a second or so.
	deadline := time.Now().Add(10 * time.Second)
	for p.metric(t, "parley_store_tail_events") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the tail was not merged within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop(t)

	raw, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "parley.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	var first, last int64
	if err := raw.QueryRow(`SELECT first_id, last_id FROM event_runs WHERE user_id = ? ORDER BY last_id LIMIT 1`, g.User.ID).Scan(&first, &last); err != nil {
		t.Fatal(err)
	}
	if last >= events {
		t.Fatalf("the first run holds ids %d-%d: too few runs to test with", first, last)
	}
	if _, err := raw.Exec(`UPDATE event_runs SET events = X'02ff' WHERE user_id = ? AND last_id = ?`, g.User.ID, last); err != nil {
		t.Fatal(err)
	}
	raw.Close()

	p = startParley(t, dir)
	if got := p.firstEvents(t, g.Token, 0, 5*time.Second); len(got) != 1 || got[0] != "ready" {
		t.Fatalf("a replay through the corrupt run sent %v, want ready and then the end of the stream", got)
	}
	if n := p.metric(t, "parley_store_corrupt_runs_total"); n < 1 {
		t.Fatalf("parley_store_corrupt_runs_total = %v after a replay failed on a corrupt run", n)
	}
	logged := false
	for _, l := range strings.Split(p.output(), "\n") {
		if strings.Contains(l, "corrupt event run") && strings.Contains(l, "user_id="+g.User.ID) && strings.Contains(l, fmt.Sprintf("last_id=%d", last)) {
			logged = true
		}
	}
	if !logged {
		t.Fatalf("no log line names the corrupt run (user %s, last id %d):\n%s", g.User.ID, last, p.output())
	}
	if out, ok := parleyCheck(t, "--data-dir", dir); ok || !strings.Contains(out, "in use") {
		t.Fatalf("check while parley runs: ok=%v\n%s", ok, out)
	}
	p.stop(t)

	out, ok := parleyCheck(t, "--data-dir", dir)
	if ok || !strings.Contains(out, fmt.Sprintf("user %s, ids %d to %d", g.User.ID, first, last)) {
		t.Fatalf("parley check: ok=%v, want a failure naming the run:\n%s", ok, out)
	}
	out, ok = parleyCheck(t, "--repair", "--data-dir", dir)
	if !ok || !strings.Contains(out, "repaired") {
		t.Fatalf("parley check --repair: ok=%v\n%s", ok, out)
	}
	if out, ok := parleyCheck(t, "--data-dir", dir); !ok {
		t.Fatalf("parley check after the repair: \n%s", out)
	}

	p = startParley(t, dir)
	if got := p.firstEvents(t, g.Token, 0, 2*time.Second); len(got) < 2 || got[1] != "reset" {
		t.Fatalf("a resume from before the dropped run sent %v, want ready then reset", got)
	}
	if got := p.firstEvents(t, g.Token, last, 2*time.Second); len(got) != 1+events-int(last) {
		t.Fatalf("a resume from %d sent %d events, want ready and the %d after it", last, len(got), events-int(last))
	}
	var pub struct{ IDs map[string]int64 }
	if _, err := p.call(ctx, "POST", "/api/publish", crashAPIKey, map[string]any{"user_ids": []string{g.User.ID}, "type": "app.n", "data": map[string]int{}}, &pub); err != nil {
		t.Fatal(err)
	}
	if pub.IDs[g.User.ID] != events+1 {
		t.Fatalf("the next event got id %d, want %d", pub.IDs[g.User.ID], events+1)
	}
}
