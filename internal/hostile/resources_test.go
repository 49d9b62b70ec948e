package hostile

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/parley-chat/parley/internal/servertest"
)

// metricsSize reads /metrics and returns its size in bytes.
func metricsSize(t *testing.T, n *servertest.Node) int {
	t.Helper()
	res, err := http.Get(n.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("/metrics: %d %v", res.StatusCode, err)
	}
	return len(b)
}

// TestMetricsLabelsBounded: every request method a client makes up used to
// become a label value of its own, kept for the life of the process (5,000
// random methods grew /metrics from 55 KB to 306 MB). Now only the known
// methods are labels and the rest count as "other": /metrics after 5,000
// random methods is within a few KB of its size before them.
func TestMetricsLabelsBounded(t *testing.T) {
	n := servertest.Start(t)
	// One of each route shape first, so that "before" holds their series.
	for _, m := range []string{"GET", "BREW"} {
		req, _ := http.NewRequest(m, n.URL+"/api/me", nil)
		servertest.Send(t, req, nil)
	}
	before := metricsSize(t, n)
	const requests = 5000
	client := &http.Client{}
	for i := range requests {
		m := fmt.Sprintf("X%dR%08X", i, rand.Uint32())
		path := []string{"/api/me", "/api/conversations", "/nowhere", "/healthz"}[i%4]
		req, err := http.NewRequest(m, n.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	after := metricsSize(t, n)
	t.Logf("/metrics: %d bytes before, %d after %d requests with random methods", before, after, requests)
	if after-before > 16<<10 {
		t.Fatalf("/metrics grew from %d to %d bytes with %d made-up methods: each is a series of its own", before, after, requests)
	}
}
