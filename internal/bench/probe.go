package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A probe is this executable run as `parley bench probe`: it samples
// GET /healthz from a process of its own while a workload runs, so that what
// it records is the server's delay and not the scheduling delay of a load
// generator busy with thousands of streams (in-process, the two could not be
// told apart). The parent writes one probeSpec as a JSON line on its stdin
// and later "stop" (or closes stdin); the probe answers with a ready line
// once it samples, and its samples after the stop.
//
// It probes two ways at once, each every Interval: with a new connection
// per request, as a load balancer's check that dials does (this waits in the
// listen queue behind the storm's own dials), and over one kept-alive
// connection, which measures request handling alone.

type probeSpec struct {
	URL      string        `json:"url"`
	Interval time.Duration `json:"interval"`
}

// probeResult is a line of the probe's output: {"ready": true} once
// sampling starts, then the samples.
type probeResult struct {
	Ready        bool   `json:"ready,omitempty"`
	Dial         *Hist  `json:"dial"`
	Kept         *Hist  `json:"kept"`
	DialErrors   int64  `json:"dial_errors"`
	KeptErrors   int64  `json:"kept_errors"`
	Error        string `json:"error,omitempty"`
	FirstFailure string `json:"first_failure,omitempty"`
}

// probeCommand builds the command of a probe process; tests replace it.
var probeCommand = benchCommand("probe")

// runProbe is the probe side.
func runProbe(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	dec := json.NewDecoder(stdin)
	var spec probeSpec
	if err := dec.Decode(&spec); err != nil {
		return fmt.Errorf("probe: read spec: %w", err)
	}
	if spec.Interval <= 0 {
		return errors.New("probe: interval must be positive")
	}
	ctx, stop := context.WithCancel(ctx)
	go func() {
		sc := bufio.NewScanner(io.MultiReader(dec.Buffered(), stdin))
		for sc.Scan() && strings.TrimSpace(sc.Text()) != "stop" {
		}
		stop()
	}()
	res := probeResult{Dial: &Hist{}, Kept: &Hist{}}
	var dialErr, keptErr atomic.Int64
	var first sync.Once
	fail := func(err error) { first.Do(func() { res.FirstFailure = err.Error() }) }
	var wg sync.WaitGroup
	loop := func(hc *http.Client, h *Hist, errs *atomic.Int64) {
		defer wg.Done()
		t := time.NewTicker(spec.Interval)
		defer t.Stop()
		// The first sample is taken whole even if the stop comes first:
		// a storm of a few streams on a busy machine can end before it
		// is answered, and a result should hold at least one.
		sctx := context.WithoutCancel(ctx)
		for {
			t0 := time.Now()
			if err := getOK(sctx, hc, spec.URL+"/healthz"); err != nil {
				if sctx.Err() == nil {
					errs.Add(1)
					fail(err)
				}
			} else {
				h.Record(time.Since(t0))
			}
			sctx = ctx
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}
	dial := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	kept := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	// Warm up (the kept connection is opened here), then tell the parent
	// that sampling starts: the workload waits for it.
	for _, hc := range []*http.Client{dial, kept} {
		if err := getOK(ctx, hc, spec.URL+"/healthz"); err != nil {
			return fmt.Errorf("probe: %w", err)
		}
	}
	enc := json.NewEncoder(stdout)
	if err := enc.Encode(probeResult{Ready: true}); err != nil {
		return err
	}
	wg.Add(2)
	go loop(dial, res.Dial, &dialErr)
	go loop(kept, res.Kept, &keptErr)
	wg.Wait()
	res.DialErrors, res.KeptErrors = dialErr.Load(), keptErr.Load()
	return enc.Encode(res)
}

// probeProc is the parent's handle on a probe process.
type probeProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	result chan probeResult
}

// startProbe starts a probe process sampling base's /healthz every interval.
func startProbe(base string, interval time.Duration, stderr io.Writer) (*probeProc, error) {
	cmd, stdin, stdout, err := startChild(probeCommand, stderr)
	if err != nil {
		return nil, fmt.Errorf("start probe: %w", err)
	}
	p := &probeProc{cmd: cmd, stdin: stdin, result: make(chan probeResult, 1)}
	ready := make(chan bool, 1)
	go func() {
		dec := json.NewDecoder(stdout)
		var r probeResult
		if err := dec.Decode(&r); err != nil || !r.Ready {
			ready <- false
			p.result <- probeResult{Error: "probe did not start (see its message above)"}
			_ = cmd.Wait()
			return
		}
		ready <- true
		r = probeResult{}
		if err := dec.Decode(&r); err != nil {
			r = probeResult{Error: fmt.Sprintf("probe ended without a result: %v", err)}
		}
		p.result <- r
		_ = cmd.Wait()
	}()
	if err := json.NewEncoder(stdin).Encode(probeSpec{URL: base, Interval: interval}); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("start probe: %w", err)
	}
	select {
	case ok := <-ready:
		if !ok {
			return nil, errors.New((<-p.result).Error)
		}
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		return nil, errors.New("probe did not start within 15 s")
	}
	return p, nil
}

// stop ends the probing and returns what the probe measured.
func (p *probeProc) stop(ctx context.Context) (probeResult, error) {
	_, _ = io.WriteString(p.stdin, "stop\n")
	_ = p.stdin.Close()
	select {
	case r := <-p.result:
		if r.Error != "" {
			return r, errors.New(r.Error)
		}
		return r, nil
	case <-ctx.Done():
		_ = p.cmd.Process.Kill()
		return probeResult{}, ctx.Err()
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		return probeResult{}, errors.New("probe did not answer stop")
	}
}
