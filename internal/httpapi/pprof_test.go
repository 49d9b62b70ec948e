package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestPprofOwnListener: with pprof on, profiles are served on their own
// listener and never on the public one, where anyone could read memory
// contents or make the node spend CPU.
func TestPprofOwnListener(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) {
		c.Pprof = true
		c.PprofAddr = "127.0.0.1:0"
	})
	get := func(url string) (int, string) {
		t.Helper()
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/cmdline"} {
		if code, body := get(n.URL + p); code == http.StatusOK && (strings.Contains(body, "heap profile") || strings.Contains(body, "Types of profiles")) {
			t.Fatalf("the public listener serves %s", p)
		}
	}
	if n.PprofAddr() == "" {
		t.Fatal("no pprof listener")
	}
	if code, body := get("http://" + n.PprofAddr() + "/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Fatalf("pprof listener: %d %.100s", code, body)
	}
	off := servertest.Start(t)
	if off.PprofAddr() != "" {
		t.Fatalf("pprof listening by default at %s", off.PprofAddr())
	}
}
