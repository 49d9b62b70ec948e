package webhook_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/servertest"
)

// TestWebhookLoad measures, on the embedded store, (1) delivery throughput:
// messages sent as fast as 32 senders go, until every webhook is accepted;
// (2) the p99 from a message's commit to its arrival at the receiver with
// sends paced at 2,000/s; (3) the p99 of the sends themselves, with a
// receiver that answers and with one that never answers. It runs only
// with PARLEY_BENCH_WEBHOOKS=1 (BENCHMARKS.md has the figures).
func TestWebhookLoad(t *testing.T) {
	if os.Getenv("PARLEY_BENCH_WEBHOOKS") == "" {
		t.Skip("load measurement; set PARLEY_BENCH_WEBHOOKS=1")
	}
	for round := range 3 {
		thr, _ := deliveryRun(t, 8000, 0)
		_, sendOK := sendRun(t, false)
		_, sendDead := sendRun(t, true)
		_, lat2 := deliveryRun(t, 4000, 2000)
		t.Logf("round %d: throughput %.0f webhooks/s; commit→receiver p50 %v p99 %v at 2,000 msg/s; send p99 %v (receiver answers) vs %v (receiver never answers)",
			round+1, thr, lat2[0], lat2[1], sendOK, sendDead)
	}
}

type loadLane struct {
	token, conv string
}

// deliveryRun sends total messages over 32 conversations, paced at rate/s
// (0 = as fast as possible), and returns the webhooks/s from the first send
// to the last acceptance and the commit→receiver p50 and p99.
func deliveryRun(t *testing.T, total, rate int) (float64, [2]time.Duration) {
	var mu sync.Mutex
	var lat []time.Duration
	var last time.Time
	done := make(chan struct{})
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		body, _ := io.ReadAll(r.Body)
		var env struct {
			Data struct {
				CreatedAt time.Time `json:"created_at"`
			} `json:"data"`
		}
		_ = json.Unmarshal(body, &env)
		mu.Lock()
		lat = append(lat, now.Sub(env.Data.CreatedAt))
		last = now
		if len(lat) == total {
			close(done)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	n, lanes := loadServer(t, rcv.URL)
	defer n.Stop()
	// The conversations' first messages are not counted.
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	lat = lat[:0]
	mu.Unlock()

	start := time.Now()
	sendAll(t, n, lanes, total, rate, nil)
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		mu.Lock()
		got := len(lat)
		mu.Unlock()
		t.Fatalf("%d of %d webhooks after 60s", got, total)
	}
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	return float64(total) / last.Sub(start).Seconds(), [2]time.Duration{lat[len(lat)/2], lat[len(lat)*99/100]}
}

// sendRun returns the p50 and p99 of 4,000 sends at 2,000/s, with a
// receiver that answers at once or one that never answers.
func sendRun(t *testing.T, dead bool) (p50, p99 time.Duration) {
	hang := make(chan struct{})
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dead {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	defer close(hang)
	n, lanes := loadServer(t, rcv.URL)
	defer n.Stop()
	var times []time.Duration
	sendAll(t, n, lanes, 4000, 2000, &times)
	slices.Sort(times)
	return times[len(times)/2], times[len(times)*99/100]
}

func loadServer(t *testing.T, url string) (*servertest.Node, []loadLane) {
	n := servertest.Start(t, withWebhooks(url))
	pro := n.Register(t, "ldp", "professional")
	var lanes []loadLane
	for range 32 {
		c := n.Register(t, "ldc", "client")
		var conv struct{ ID string }
		n.Do(t, "POST", "/api/conversations", c.Token, map[string]any{"professional_id": pro.ID,
			"message": map[string]any{"body": "hello"}}, &conv)
		lanes = append(lanes, loadLane{c.Token, conv.ID})
	}
	return n, lanes
}

// sendAll sends total messages from 32 senders, one per conversation,
// paced at rate/s overall (0 = unpaced), recording each send's time.
func sendAll(t *testing.T, n *servertest.Node, lanes []loadLane, total, rate int, times *[]time.Duration) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	per := total / len(lanes)
	start := time.Now()
	for i, l := range lanes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range per {
				if rate > 0 {
					at := start.Add(time.Duration(k*len(lanes)+i) * time.Second / time.Duration(rate))
					time.Sleep(time.Until(at))
				}
				t0 := time.Now()
				res := n.Do(t, "POST", "/api/conversations/"+l.conv+"/messages", l.token, map[string]any{"body": fmt.Sprintf("m%d", k)}, nil)
				d := time.Since(t0)
				if res.StatusCode != http.StatusCreated {
					t.Errorf("send: %d", res.StatusCode)
					return
				}
				if times != nil {
					mu.Lock()
					*times = append(*times, d)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
}
