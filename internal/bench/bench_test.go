package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestMain doubles as the worker and probe processes: they are this test
// binary run again with PARLEY_BENCH_TEST_WORKER or PARLEY_BENCH_TEST_PROBE set.
func TestMain(m *testing.M) {
	children := map[string]func(context.Context, io.Reader, io.Writer) error{
		"PARLEY_BENCH_TEST_WORKER": runWorker,
		"PARLEY_BENCH_TEST_PROBE":  runProbe,
	}
	for env, run := range children {
		if os.Getenv(env) == "1" {
			if err := run(context.Background(), os.Stdin, os.Stdout); err != nil {
				fmt.Fprintln(os.Stderr, env, err)
				os.Exit(1)
			}
			os.Exit(0)
		}
	}
	child := func(env string) func() (*exec.Cmd, error) {
		return func() (*exec.Cmd, error) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), env+"=1")
			return cmd, nil
		}
	}
	workerCommand = child("PARLEY_BENCH_TEST_WORKER")
	probeCommand = child("PARLEY_BENCH_TEST_PROBE")
	os.Exit(m.Run())
}

func TestHistQuantiles(t *testing.T) {
	var h Hist
	var exact []int64
	// A skewed spread of values from 1 µs to about 2 s.
	for i := 0; i < 20000; i++ {
		v := int64(math.Pow(1.001, float64(i%14500))) + int64(i%7)
		exact = append(exact, v)
		h.Record(time.Duration(v) * time.Microsecond)
	}
	sort.Slice(exact, func(i, j int) bool { return exact[i] < exact[j] })
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		want := float64(exact[int(math.Ceil(q*float64(len(exact))))-1])
		got := float64(h.Quantile(q).Microseconds())
		if math.Abs(got-want) > 0.02*want+1 {
			t.Errorf("q%.3f = %.0f µs, want %.0f µs within 2%%", q, got, want)
		}
	}
	if h.Max() != time.Duration(exact[len(exact)-1])*time.Microsecond {
		t.Errorf("Max = %v, want %d µs", h.Max(), exact[len(exact)-1])
	}
	if h.Count() != uint64(len(exact)) {
		t.Errorf("Count = %d", h.Count())
	}
	var empty Hist
	if empty.Quantile(0.5) != 0 || empty.Mean() != 0 {
		t.Error("an empty histogram reports a value")
	}
}

func TestHistBuckets(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, 1<<40 + 12345, math.MaxInt64} {
		i := bucketOf(v)
		if i < prev || i >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d after %d (of %d)", v, i, prev, histBuckets)
		}
		prev = i
		low, width := bucketRange(i)
		if v < low || v-low >= width {
			t.Errorf("value %d outside its bucket [%d, %d+%d)", v, low, low, width)
		}
		if v >= histExact && float64(width)/float64(low) > 1.0/histSub+1e-9 {
			t.Errorf("bucket of %d is %d wide at %d: coarser than 1/%d", v, width, low, histSub)
		}
	}
}

func TestHistJSONMerge(t *testing.T) {
	var a, b, both Hist
	for i := 1; i <= 1000; i++ {
		d := time.Duration(i*i) * time.Microsecond
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
		both.Record(d)
	}
	wire, err := json.Marshal(&a)
	if err != nil {
		t.Fatal(err)
	}
	var decoded Hist
	if err := json.Unmarshal(wire, &decoded); err != nil {
		t.Fatal(err)
	}
	decoded.Merge(&b)
	for _, q := range []float64{0.5, 0.9, 0.99} {
		if decoded.Quantile(q) != both.Quantile(q) {
			t.Errorf("q%v: merged %v, direct %v", q, decoded.Quantile(q), both.Quantile(q))
		}
	}
	if decoded.Count() != both.Count() || decoded.Max() != both.Max() || decoded.Mean() != both.Mean() {
		t.Errorf("merged count/max/mean %d/%v/%v, direct %d/%v/%v",
			decoded.Count(), decoded.Max(), decoded.Mean(), both.Count(), both.Max(), both.Mean())
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func TestProcParsing(t *testing.T) {
	rss, err := parseVmRSS([]byte("Name:\tparley\nVmPeak:\t  9999 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n"))
	if err != nil || rss != 40960*1024 {
		t.Errorf("parseVmRSS = %d, %v", rss, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tzombie\n")); err == nil {
		t.Error("missing VmRSS not reported")
	}
	// The command name may hold spaces and parentheses.
	stat := "1234 (par ley) (x)) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 100 1000 10 18446744073709551615"
	ticks, err := parseStatTicks([]byte(stat))
	if err != nil || ticks != 325 {
		t.Errorf("parseStatTicks = %d, %v; want 325", ticks, err)
	}
	// This process is readable, and moves.
	s, err := readProc(os.Getpid())
	if err != nil || s.RSS <= 0 {
		t.Errorf("readProc(self) = %+v, %v", s, err)
	}
	a := procSample{At: time.Unix(0, 0), Ticks: 100}
	b := procSample{At: time.Unix(2, 0), Ticks: 150}
	if p := cpuPercent(a, b); p != 25 {
		t.Errorf("cpuPercent = %v, want 25", p)
	}
}

func TestParseSendTime(t *testing.T) {
	for in, want := range map[string]int64{
		`{"t":1732233445566778899}`:     1732233445566778899,
		`{"a":1, "t": 42}`:              42,
		`{"t":"x"}`:                     -1,
		`{}`:                            -1,
		`{"t":99999999999999999999999}`: -1, // would overflow
		`{"t":12,"u":{"t":13}}`:         12,
	} {
		got, ok := parseSendTime([]byte(in))
		if (want < 0) == ok || (ok && got != want) {
			t.Errorf("parseSendTime(%s) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

func TestFindListenerPID(t *testing.T) {
	n := servertest.Start(t)
	if pid := findListenerPID(n.URL); pid != os.Getpid() {
		t.Errorf("findListenerPID(%s) = %d, want this process %d", n.URL, pid, os.Getpid())
	}
	if pid := findListenerPID("http://10.1.2.3:80"); pid != 0 {
		t.Errorf("a remote URL gave pid %d", pid)
	}
}

// serverConns counts the connections the server accepted, as they open and
// close; the client's own ends of them (in this same process) do not count.
func TestServerConns(t *testing.T) {
	n := servertest.Start(t)
	waitConns := func(want int) {
		t.Helper()
		var got int
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			var ok bool
			if got, ok = serverConns(os.Getpid(), n.URL); !ok {
				t.Fatal("serverConns: not known for this process")
			}
			if got == want {
				return
			}
		}
		t.Fatalf("server connections: %d, want %d", got, want)
	}
	base, _ := serverConns(os.Getpid(), n.URL)
	addr := strings.TrimPrefix(n.URL, "http://")
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	waitConns(base + 3)
	conns[0].Close()
	waitConns(base + 2)
	if _, ok := serverConns(os.Getpid(), "http://10.1.2.3:80"); ok {
		t.Error("a remote URL gave a count")
	}
}

// A short soak reports its goroutines both raw and less one per open HTTP
// connection, and loses nothing.
func TestSoak(t *testing.T) {
	n := servertest.Start(t)
	res := runBench(t, "soak", "--url", n.URL, "--api-key", servertest.APIKey,
		"--streams", "30", "--rate", "100", "--duration", "2s", "--mark", "1s", "--every", "250ms", "--publishers", "4")
	expect(t, res, map[string]float64{
		"lost": 0, "gaps": 0, "dups": 0, "streams_dropped": 0,
		"rss_at_mark>": 0, "goroutines_at_mark>": 0, "goroutines_less_conns_at_mark>": 0,
	})
	m := res.Runs[0].Metrics
	// The 30 streams are not HTTP connections: counted, they would put
	// this at 30 or more, whatever the publishers and scrapes hold.
	if c := m["http_conns_end"]; c < 0 || c >= 30 {
		t.Errorf("http_conns_end = %v, want 0 to 29 (the open streams left out)", c)
	}
	t.Logf("goroutines %v, less connections %v, connections %v", m["goroutines_end"], m["goroutines_less_conns_end"], m["http_conns_end"])
}

// runBench runs Main with args and decodes its --json output.
func runBench(t *testing.T, args ...string) benchJSON {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := Main(ctx, append(args, "--json"), &out, &errOut); err != nil {
		t.Fatalf("bench %v: %v\n%s", args, err, errOut.String())
	}
	var res benchJSON
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("bench %v: output is not JSON (%v):\n%s", args, err, out.String())
	}
	if len(res.Runs) == 0 {
		t.Fatalf("bench %v: no runs", args)
	}
	return res
}

type benchJSON struct {
	Workload string             `json:"workload"`
	Median   map[string]float64 `json:"median"`
	Runs     []struct {
		Metrics map[string]float64 `json:"metrics"`
		Notes   []string           `json:"notes"`
	} `json:"runs"`
}

// expect checks metrics of the first run: exact values, or, for names
// ending in ">", a lower bound.
func expect(t *testing.T, res benchJSON, want map[string]float64) {
	t.Helper()
	m := res.Runs[0].Metrics
	for name, v := range want {
		lower := strings.HasSuffix(name, ">")
		name = strings.TrimSuffix(name, ">")
		got, ok := m[name]
		switch {
		case !ok:
			t.Errorf("%s: no %s in %v", res.Workload, name, m)
		case lower && got <= v:
			t.Errorf("%s: %s = %v, want more than %v", res.Workload, name, got, v)
		case !lower && got != v:
			t.Errorf("%s: %s = %v, want %v", res.Workload, name, got, v)
		}
	}
	if t.Failed() {
		t.Logf("all metrics: %v; notes: %q", m, res.Runs[0].Notes)
	}
}

func TestIdle(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.Heartbeat = 100 * time.Millisecond })
	res := runBench(t, "idle", "--url", n.URL, "--streams", "30", "--hold", "1s", "--settle", "100ms")
	expect(t, res, map[string]float64{
		"streams_opened": 30, "failed_other": 0, "refused_503": 0, "server_streams_open": 30,
		"dropped_while_held": 0, "rss_after>": 0, "open_rate>": 0,
		"pings_per_stream>": 5, // 1.2 s at one ping per 100 ms
	})
	if _, ok := res.Runs[0].Metrics["cpu_at_rest"]; !ok {
		t.Error("no cpu_at_rest although the server pid is this process")
	}
}

func TestIdleOverCapacity(t *testing.T) {
	n := servertest.Start(t, func(c *config.Config) { c.MaxStreams = 5 })
	res := runBench(t, "idle", "--url", n.URL, "--streams", "8", "--hold", "0s", "--settle", "0s")
	expect(t, res, map[string]float64{
		"streams_opened": 5, "refused_503": 3, "refused_503_no_retry_after": 0, "failed_other": 0,
	})
}

func TestLatency(t *testing.T) {
	n := servertest.Start(t)
	for _, workers := range []string{"0", "2"} {
		res := runBench(t, "latency", "--url", n.URL, "--api-key", servertest.APIKey, "--workers", workers,
			"--users", "40", "--rate", "400", "--duration", "1s", "--batch", "4")
		expect(t, res, map[string]float64{
			// Every scheduled event is sent, however slowly a loaded
			// machine answers; so no bound on achieved_rate.
			"published": 400, "lost": 0, "gaps": 0, "dups": 0, "publish_errors": 0,
			"streams_dropped": 0, "latency_p50>": 0, "achieved_rate>": 0,
		})
		m := res.Runs[0].Metrics
		if m["received"] != m["published"] {
			t.Errorf("workers %s: received %v of %v", workers, m["received"], m["published"])
		}
		if m["latency_p50"] > m["latency_p99"] || m["latency_p99"] > m["latency_max"] {
			t.Errorf("percentiles out of order: %v", m)
		}
		// The writer's own share, from its histograms: only the
		// embedded store has them.
		_, has := m["store_wait_p99"]
		if embedded := n.Config.DatabaseURL == "" || strings.HasPrefix(n.Config.DatabaseURL, "sqlite:"); embedded {
			expect(t, res, map[string]float64{"store_wait_p50>": 0, "store_wait_p99>": 0, "store_commit_p99>": 0})
			if m["store_wait_p50"] > m["store_wait_p99"] {
				t.Errorf("store wait p50 %v above its p99 %v", m["store_wait_p50"], m["store_wait_p99"])
			}
		} else if has {
			t.Errorf("store_wait_p99 on %s, which has no writer histograms", n.Config.DatabaseURL)
		}
	}
}

// The storm's catch-up is checked event by event, and /healthz is sampled
// from a separate probe process (this test binary again) both ways.
func TestStorm(t *testing.T) {
	n := servertest.Start(t)
	res := runBench(t, "storm", "--url", n.URL, "--api-key", servertest.APIKey,
		"--streams", "20", "--missed", "3", "--batch", "7", "--probe", "2ms")
	expect(t, res, map[string]float64{
		"caught_up": 20, "events_expected": 60, "events_received": 60, "dups": 0, "gaps": 0,
		"healthz_errors": 0, "healthz_keepalive_errors": 0,
		"healthz_p50>": 0, "healthz_keepalive_p50>": 0,
	})
}

func TestThroughputWithRuns(t *testing.T) {
	n := servertest.Start(t)
	res := runBench(t, "throughput", "--url", n.URL, "--api-key", servertest.APIKey,
		"--users", "20", "--duration", "500ms", "--concurrency", "2", "--batch", "5", "--streams", "--runs", "3")
	if len(res.Runs) != 3 {
		t.Fatalf("%d runs, want 3", len(res.Runs))
	}
	expect(t, res, map[string]float64{"events>": 0, "errors": 0, "lost": 0, "gaps": 0, "dups": 0})
	var rates []float64
	for _, r := range res.Runs {
		rates = append(rates, r.Metrics["events_per_s"])
	}
	if res.Median["events_per_s"] != median(rates) {
		t.Errorf("median %v of runs %v", res.Median["events_per_s"], rates)
	}
}

func TestTableAndHelp(t *testing.T) {
	n := servertest.Start(t)
	var out, errOut bytes.Buffer
	err := Main(context.Background(), []string{"idle", "--url", n.URL, "--streams", "3", "--hold", "0s", "--settle", "0s", "--runs", "2"}, &out, &errOut)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut.String())
	}
	for _, want := range []string{"parley bench idle", "run 1", "run 2", "median", "streams_opened"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if err := Main(context.Background(), []string{"--help"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"idle", "latency", "throughput", "--streams", "--rate", "--concurrency", "--spawn", "--server-flag", "--runs", "--json"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
	if err := Main(context.Background(), []string{"nosuch"}, &out, &errOut); err == nil {
		t.Error("an unknown workload was accepted")
	}
	if err := Main(context.Background(), []string{"idle", "--url", n.URL, "--spawn"}, &out, &errOut); err == nil {
		t.Error("--url with --spawn was accepted")
	}
}

func TestClosesBetween(t *testing.T) {
	before := map[string]float64{`parley_stream_closes_total{reason="client"}`: 4}
	after := map[string]float64{
		`parley_stream_closes_total{reason="client"}`:      6,
		`parley_stream_closes_total{reason="write_error"}`: 15,
		`parley_streams_open`:                              3,
	}
	if got, want := closesBetween(before, after), `reason="client" 2, reason="write_error" 15`; got != want {
		t.Errorf("closesBetween = %q, want %q", got, want)
	}
	if got := closesBetween(after, after); got != "none counted" {
		t.Errorf("no change gave %q", got)
	}
}

// A workload that ends before the probe's first answers still gets one
// sample each way: a storm of a few streams can end within milliseconds.
func TestProbeStoppedAtOnce(t *testing.T) {
	n := servertest.Start(t)
	p, err := startProbe(n.URL, time.Hour, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.stop(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Dial.Count() != 1 || res.Kept.Count() != 1 || res.DialErrors+res.KeptErrors != 0 {
		t.Fatalf("%d dialled and %d kept samples, %d+%d errors; want one each and none",
			res.Dial.Count(), res.Kept.Count(), res.DialErrors, res.KeptErrors)
	}
}

// TestHistQuantileFromScrapes: quantiles of what a Prometheus histogram
// observed between two scrapes, interpolated within a bucket.
func TestHistQuantileFromScrapes(t *testing.T) {
	const h = "x_seconds_bucket"
	key := func(le string) string { return h + `{le="` + le + `"}` }
	before := map[string]float64{key("0.001"): 10, key("0.002"): 10, key("0.004"): 10, key("+Inf"): 10}
	// Since then: 50 under 1 ms, 40 in (1, 2], 8 in (2, 4], 2 above 4 ms.
	after := map[string]float64{key("0.001"): 60, key("0.002"): 100, key("0.004"): 108, key("+Inf"): 110}
	for _, c := range []struct {
		q, want float64
	}{{0.5, 0.001}, {0.25, 0.0005}, {0.7, 0.0015}, {0.97, 0.00375}, {0.99, 0.004}} {
		got, ok := histQuantile(before, after, h, c.q)
		if !ok || math.Abs(got-c.want) > 1e-9 {
			t.Errorf("q%v = %v (%v), want %v", c.q, got, ok, c.want)
		}
	}
	if _, ok := histQuantile(after, after, h, 0.5); ok {
		t.Error("a quantile of nothing observed")
	}
	if _, ok := histQuantile(nil, map[string]float64{"other_bucket{le=\"+Inf\"}": 3}, h, 0.5); ok {
		t.Error("a quantile of a histogram the server does not have")
	}
}
