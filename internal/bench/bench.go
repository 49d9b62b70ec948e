// Package bench is the load generator behind `parley bench`: it creates bench
// users on a Parley server (one it spawns, or one given by URL), holds their
// event streams, drives traffic, and reports what the server sustained.
//
// Each workload is one file with a type implementing Workload, registered in
// an init function. Workloads get an *Env that creates users, opens streams
// (spread over worker processes past one process's open-files limit) and
// samples the server process from /proc.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley/client"
)

// Workload is one benchmark scenario.
type Workload interface {
	// Name is the subcommand, such as "latency".
	Name() string
	// Synopsis is one line for the usage text.
	Synopsis() string
	// Flags registers the workload's own flags, with defaults that keep a
	// run short.
	Flags(fs *flag.FlagSet)
	// Run performs one measurement. It must end by itself in bounded time
	// and release what it opened (streams, goroutines) before returning.
	Run(ctx context.Context, env *Env) (*Result, error)
}

var (
	registryMu sync.Mutex
	registry   = map[string]func() Workload{}
)

// register makes a workload available; call it from an init function.
func register(newWorkload func() Workload) {
	registryMu.Lock()
	defer registryMu.Unlock()
	registry[newWorkload().Name()] = newWorkload
}

func workloadNames() []string {
	registryMu.Lock()
	defer registryMu.Unlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Metric is one figure of a run.
type Metric struct {
	Name  string
	Unit  string
	Value float64
}

// Result is what one run of a workload measured: figures in a fixed order,
// and notes (warnings, failure samples) for the reader.
type Result struct {
	Metrics []Metric
	Notes   []string
}

// Add appends a figure.
func (r *Result) Add(name, unit string, v float64) {
	r.Metrics = append(r.Metrics, Metric{name, unit, v})
}

// Notef appends a note.
func (r *Result) Notef(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// errFlag is a workload's complaint about its flags.
type errFlag string

func (e errFlag) Error() string { return string(e) }

// options are the flags every workload shares.
type options struct {
	url                 string
	apiKey              string
	spawn               bool
	serverFlags         stringList
	serverLog           string
	serverCPUs          string
	pids                pidList
	runs                int
	json                bool
	workers             int
	perWorker           int
	openConcurrency     int
	registerConcurrency int
	timeout             time.Duration
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.url, "url", "", "base URL of a running server (default: spawn one); several nodes comma-separated: streams are spread over them round-robin")
	fs.StringVar(&o.apiKey, "api-key", os.Getenv("PARLEY_BENCH_API_KEY"), "publish API key of the --url server (env PARLEY_BENCH_API_KEY)")
	fs.BoolVar(&o.spawn, "spawn", false, "start \"parley serve\" on a free port with a temporary data dir, and stop it at the end")
	fs.Var(&o.serverFlags, "server-flag", "extra `flag` for the spawned server, e.g. --server-flag=--heartbeat=5s (repeatable)")
	fs.StringVar(&o.serverLog, "server-log", "", "keep the spawned server's output in this file (default: a temporary file, removed)")
	fs.StringVar(&o.serverCPUs, "server-cpus", "", "pin the spawned server to these CPUs (taskset -c `list`); pin bench itself with taskset")
	fs.Var(&o.pids, "pid", "pid of the --url server for /proc figures, comma-separated for several nodes (summed) (default: found from the listening port)")
	fs.IntVar(&o.runs, "runs", 1, "repeat the measurement this many times and report each run and the median")
	fs.BoolVar(&o.json, "json", false, "print one JSON object instead of a table")
	fs.IntVar(&o.workers, "workers", 0, "worker processes holding streams (0: none up to --per-worker streams, then as many as needed)")
	fs.IntVar(&o.perWorker, "per-worker", 15000, "most streams one process holds (the open-files limit is per process)")
	fs.IntVar(&o.openConcurrency, "open-concurrency", 128, "streams being opened at once, per process")
	fs.IntVar(&o.registerConcurrency, "register-concurrency", 32, "users being registered at once")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "hard limit for the whole command")
}

// Env is what a workload runs against.
type Env struct {
	Target *Target
	// Rest is a REST client carrying the API key; WithToken gives a
	// user's view.
	Rest   *client.Client
	Stderr io.Writer

	opts  *options
	users *userPool
	hc    *http.Client
}

// Logf reports progress on stderr.
func (e *Env) Logf(format string, args ...any) {
	fmt.Fprintf(e.Stderr, "bench: "+format+"\n", args...)
}

// Users returns n bench users, registering those that do not exist yet.
// Users are kept across runs.
func (e *Env) Users(ctx context.Context, n int) ([]User, error) { return e.users.Get(ctx, n) }

// streamOptions say what a stream set checks.
type streamOptions struct {
	Track     bool // measure the latency of {"t": …} events
	Reconnect bool // reopen streams the server ends, from their last id
}

// OpenStreams opens one stream per user, in this process or spread over
// worker processes with source addresses 127.0.0.2, 127.0.0.3, …, and waits
// until every stream is open or refused. The returned stats are those of the
// opening; stop the set to get the rest.
func (e *Env) OpenStreams(ctx context.Context, users []User, o streamOptions) (*streamSet, poolStats, error) {
	n := len(users)
	per := max(e.opts.perWorker, 1)
	workers := e.opts.workers
	if workers == 0 && n > per {
		workers = (n + per - 1) / per
	}
	if workers > 0 && (n+workers-1)/workers > per {
		workers = (n + per - 1) / per
	}
	loop := isLoopback(e.Target.URL)
	if workers > 250 && loop {
		return nil, poolStats{}, fmt.Errorf("%d streams need %d workers, more than the 250 source addresses 127.0.0.2-251", n, workers)
	}
	spec := func(part []User, i int) poolSpec {
		s := poolSpec{URL: e.Target.nodeURL(i), Users: part, OpenConcurrency: e.opts.openConcurrency,
			OpenTimeout: 30 * time.Second, Track: o.Track, Reconnect: o.Reconnect}
		if i >= 0 && loop {
			s.SourceIP = fmt.Sprintf("127.0.0.%d", 2+i)
		}
		return s
	}
	set := &streamSet{}
	if nodes := len(e.Target.URLs); workers == 0 && nodes > 1 {
		// Several nodes, one process: a pool per node.
		for i := 0; i < nodes; i++ {
			part := spec(users[i*n/nodes:(i+1)*n/nodes], i)
			part.SourceIP = ""
			set.parts = append(set.parts, startLocalPool(part))
		}
	} else if workers == 0 {
		set.parts = append(set.parts, startLocalPool(spec(users, -1)))
	} else {
		for i := 0; i < workers; i++ {
			part := users[i*n/workers : (i+1)*n/workers]
			w, err := startWorker(spec(part, i), e.Stderr)
			if err != nil {
				set.stop(ctx)
				return nil, poolStats{}, err
			}
			set.parts = append(set.parts, w)
		}
	}
	start := time.Now()
	e.Logf("opening %d streams (%s)", n, plural(workers, "worker process", "in this process"))
	var total poolStats
	for _, p := range set.parts {
		st, err := p.waitOpened(ctx)
		if err != nil {
			set.stop(context.Background())
			return nil, poolStats{}, fmt.Errorf("open streams: %w", err)
		}
		total.add(st)
	}
	e.Logf("%d of %d streams open in %v", total.Opened, n, time.Since(start).Round(time.Millisecond))
	return set, total, nil
}

func plural(n int, unit, zero string) string {
	switch n {
	case 0:
		return zero
	case 1:
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ses", n, unit)
}

// Proc samples the server process, if its pid is known; with several nodes,
// their memory and CPU time are summed.
func (e *Env) Proc() (procSample, bool) {
	if len(e.Target.PIDs) > 1 {
		return readProcs(e.Target.PIDs)
	}
	s, err := readProc(e.Target.PID)
	return s, err == nil
}

// ServerMetrics reads the named unlabelled samples from the server's
// /metrics; missing ones are absent from the map.
func (e *Env) ServerMetrics(ctx context.Context, names ...string) map[string]float64 {
	if len(e.Target.URLs) > 1 {
		// Several nodes: their samples add up.
		sum := map[string]float64{}
		for _, u := range e.Target.URLs {
			m, err := scrapeMetrics(ctx, e.hc, u, names...)
			if err != nil {
				e.Logf("metrics of %s: %v", u, err)
			}
			for k, v := range m {
				sum[k] += v
			}
		}
		return sum
	}
	m, err := scrapeMetrics(ctx, e.hc, e.Target.URL, names...)
	if err != nil {
		e.Logf("metrics: %v", err)
	}
	return m
}

// CollectGarbage asks the server to run a garbage collection, through
// /debug/pprof/heap?gc=1, so that the heap figures that follow count live
// memory only. It reports false when the server does not serve pprof. A
// spawned server serves it on a listener of its own (Target.PprofURL); a
// running one is tried at its own URL, as servers before --pprof-addr did.
func (e *Env) CollectGarbage(ctx context.Context) bool {
	if e.Target.PprofURL != "" {
		return e.collectGarbage(ctx, e.Target.PprofURL)
	}
	if len(e.Target.URLs) > 1 {
		ok := true
		for _, u := range e.Target.URLs {
			ok = e.collectGarbage(ctx, u) && ok
		}
		return ok
	}
	return e.collectGarbage(ctx, e.Target.URL)
}

func (e *Env) collectGarbage(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return getOK(ctx, e.hc, base+"/debug/pprof/heap?gc=1") == nil
}

// getOK GETs url and fails unless the answer is 200. It reads the body to
// the end, so that a kept-alive connection is reused.
func getOK(ctx context.Context, hc *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// Main runs `parley bench <args>`.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		usage(stderr)
		return errors.New("bench: name a workload")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return nil
	case "worker":
		return runWorker(ctx, os.Stdin, stdout)
	case "probe":
		return runProbe(ctx, os.Stdin, stdout)
	}
	registryMu.Lock()
	newW, ok := registry[args[0]]
	registryMu.Unlock()
	if !ok {
		usage(stderr)
		return fmt.Errorf("bench: unknown workload %q", args[0])
	}
	w := newW()
	var o options
	fs := flag.NewFlagSet("parley bench "+w.Name(), flag.ContinueOnError)
	fs.SetOutput(stderr)
	w.Flags(fs)
	o.register(fs)
	fs.Usage = func() { workloadUsage(stderr, w) }
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("bench %s: unexpected argument %q", w.Name(), fs.Arg(0))
	}
	switch {
	case o.url != "" && o.spawn:
		return errors.New("bench: give --url or --spawn, not both")
	case o.url == "":
		o.spawn = true
	case len(o.serverFlags) > 0 || o.serverLog != "" || o.serverCPUs != "":
		return errors.New("bench: --server-flag, --server-log and --server-cpus need --spawn")
	}
	if o.runs < 1 {
		return errors.New("bench: --runs must be at least 1")
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	raiseFileLimit()

	// Workers write their stderr here too, from the goroutine exec starts.
	env := &Env{Stderr: &lockedWriter{w: stderr}, opts: &o}
	env.Logf("workload %s", w.Name())
	var target *Target
	if o.spawn {
		t, err := spawnServer(ctx, o.serverFlags, o.serverLog, o.serverCPUs, env.Logf)
		if err != nil {
			return err
		}
		defer t.Close()
		target = t
	} else {
		target = newURLTarget(o.url, o.apiKey, o.pids)
		if target.PID == 0 {
			env.Logf("server pid unknown (give --pid): no memory or CPU figures")
		}
	}
	env.Target = target
	tr := client.NewTransport(nil)
	tr.MaxIdleConnsPerHost = 512
	env.hc = &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()
	env.Rest = client.New(target.URL, client.WithHTTPClient(env.hc), client.WithAPIKey(target.APIKey))
	env.users = newUserPool(env.Rest, o.registerConcurrency, env.Logf)

	var results []*Result
	for i := 1; i <= o.runs; i++ {
		if o.runs > 1 {
			env.Logf("run %d of %d", i, o.runs)
		}
		res, err := w.Run(ctx, env)
		if err != nil {
			return fmt.Errorf("bench %s (run %d): %w", w.Name(), i, err)
		}
		results = append(results, res)
	}
	params := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "api-key" {
			params[f.Name] = f.Value.String()
		}
	})
	params["url"] = target.URL
	params["pid"] = o.pids.String()
	if len(target.PIDs) > 0 {
		params["pid"] = pidList(target.PIDs).String()
	}
	if o.json {
		return writeJSON(stdout, w.Name(), params, results)
	}
	return writeTable(stdout, w.Name(), fs, results)
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// median returns the median of vs (the mean of the middle two for an even
// count).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// column gathers one metric across runs, in the order of the first run.
func columns(results []*Result) (names, units []string, values map[string][]float64) {
	values = map[string][]float64{}
	for _, r := range results {
		for _, m := range r.Metrics {
			if _, ok := values[m.Name]; !ok {
				names = append(names, m.Name)
				units = append(units, m.Unit)
			}
			values[m.Name] = append(values[m.Name], m.Value)
		}
	}
	return names, units, values
}

func writeJSON(w io.Writer, name string, params map[string]string, results []*Result) error {
	type run struct {
		Metrics map[string]float64 `json:"metrics"`
		Notes   []string           `json:"notes,omitempty"`
	}
	out := struct {
		Workload string             `json:"workload"`
		Params   map[string]string  `json:"params"`
		Units    map[string]string  `json:"units"`
		Runs     []run              `json:"runs"`
		Median   map[string]float64 `json:"median"`
	}{Workload: name, Params: params, Units: map[string]string{}, Median: map[string]float64{}}
	names, units, values := columns(results)
	for i, n := range names {
		out.Units[n] = units[i]
		out.Median[n] = median(values[n])
	}
	for _, r := range results {
		m := map[string]float64{}
		for _, x := range r.Metrics {
			m[x.Name] = x.Value
		}
		out.Runs = append(out.Runs, run{m, r.Notes})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func writeTable(w io.Writer, name string, fs *flag.FlagSet, results []*Result) error {
	var set []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "api-key" {
			set = append(set, "--"+f.Name+"="+f.Value.String())
		}
	})
	fmt.Fprintf(w, "parley bench %s %s\n\n", name, strings.Join(set, " "))
	// Names and units read best left-aligned, numbers right-aligned.
	rows := [][]string{{"metric", "unit"}}
	if len(results) > 1 {
		for i := range results {
			rows[0] = append(rows[0], fmt.Sprintf("run %d", i+1))
		}
		rows[0] = append(rows[0], "median")
	} else {
		rows[0] = append(rows[0], "value")
	}
	names, units, values := columns(results)
	for i, n := range names {
		row := []string{n, units[i]}
		for _, v := range values[n] {
			row = append(row, formatValue(v))
		}
		if len(results) > 1 {
			row = append(row, formatValue(median(values[n])))
		}
		rows = append(rows, row)
	}
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, row := range rows {
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i < 2 {
				b.WriteString(c + pad + "  ")
			} else {
				b.WriteString("  " + pad + c)
			}
		}
		b.WriteString("\n")
	}
	for i, r := range results {
		for _, n := range r.Notes {
			if len(results) > 1 {
				fmt.Fprintf(&b, "run %d: ", i+1)
			}
			b.WriteString("note: " + n + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func formatValue(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "-"
	case a < 0.0005: // also keeps "-0.000" out
		return "0"
	case v == math.Trunc(v) && a < 1e15:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// usage prints the whole command's help: every workload and its flags.
func usage(w io.Writer) {
	fmt.Fprint(w, `Usage: parley bench <workload> [flags]

Load generator for a Parley server. It creates users (bench_<run>_<i>, role
client), holds their event streams, drives traffic, and prints a table of what
it measured (--json for one JSON object). Every workload ends by itself.

By default it spawns the server under test: this executable as "serve" with a
temporary data dir, a free 127.0.0.1 port, --api-keys bench-key,
--rate-limit 0, --max-conns-per-ip 0, --max-streams-per-user 16, --password-cost 4,
--idle-timeout 0 (bench users send no activity) and --pprof-addr on another free loopback port
(so heap figures can be taken after a forced GC), then any --server-flag, and
stops it at the end. With --url it uses a running server (give --api-key for
the workloads that publish, and --pid if it is not a local listener).

More streams than --per-worker (15000) are spread over worker processes
("parley bench worker", internal) bound to source addresses 127.0.0.2, …, since
one process cannot hold more sockets than its open-files limit.

Workloads:
`)
	for _, n := range workloadNames() {
		fmt.Fprintf(w, "  %-11s %s\n", n, registry[n]().Synopsis())
	}
	for _, n := range workloadNames() {
		wl := registry[n]()
		fmt.Fprintf(w, "\nparley bench %s:\n", n)
		fs := flag.NewFlagSet(n, flag.ContinueOnError)
		wl.Flags(fs)
		printFlags(w, fs)
	}
	fmt.Fprint(w, "\nFlags of every workload:\n")
	fs := flag.NewFlagSet("common", flag.ContinueOnError)
	new(options).register(fs)
	printFlags(w, fs)
	fmt.Fprint(w, `
Examples:
  parley bench idle --streams 2000 --hold 30s
  parley bench idle --streams 19000 --hold 60s --runs 3
  parley bench latency --users 1000 --rate 2000 --duration 20s
  parley bench throughput --duration 10s --concurrency 16 --json
  parley bench latency --url http://127.0.0.1:8080 --api-key KEY --users 200
`)
}

func workloadUsage(w io.Writer, wl Workload) {
	fmt.Fprintf(w, "Usage: parley bench %s [flags]\n\n%s\n\nFlags:\n", wl.Name(), wl.Synopsis())
	fs := flag.NewFlagSet(wl.Name(), flag.ContinueOnError)
	wl.Flags(fs)
	printFlags(w, fs)
	fmt.Fprint(w, "\nFlags of every workload:\n")
	fs = flag.NewFlagSet("common", flag.ContinueOnError)
	new(options).register(fs)
	printFlags(w, fs)
}

func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		name, use := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if name != "" {
			line += " " + name
		}
		line += "\n        " + use
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "[]" {
			line += " (default " + f.DefValue + ")"
		}
		fmt.Fprintln(w, line)
	})
}
