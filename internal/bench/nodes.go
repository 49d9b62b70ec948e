package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Several nodes: --url takes a comma-separated list of node URLs (streams
// and the chat workload's API calls are spread over them round-robin) and
// --pid the matching pids, whose /proc figures are summed. A cluster behind
// a load balancer can also be driven through the balancer's one URL, with
// --pid naming the nodes. scripts/bench-cluster.sh starts such a cluster.

// pidList is a comma-separated list of process ids.
type pidList []int

func (p pidList) String() string {
	s := make([]string, len(p))
	for i, v := range p {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (p *pidList) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return fmt.Errorf("bad pid %q", f)
		}
		*p = append(*p, n)
	}
	return nil
}

// newURLTarget is the target of --url (one URL or several) and --pid.
func newURLTarget(rawURLs, apiKey string, pids pidList) *Target {
	t := &Target{APIKey: apiKey}
	for _, u := range strings.Split(rawURLs, ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			t.URLs = append(t.URLs, u)
		}
	}
	if len(t.URLs) == 0 {
		t.URLs = []string{""}
	}
	t.URL = t.URLs[0]
	t.PIDs = append([]int(nil), pids...)
	if len(t.PIDs) == 0 {
		for _, u := range t.URLs {
			if pid := findListenerPID(u); pid > 0 {
				t.PIDs = append(t.PIDs, pid)
			}
		}
	}
	if len(t.PIDs) > 0 {
		t.PID = t.PIDs[0]
	}
	return t
}

// nodeURL is the URL of the i-th share of streams: the nodes in turn, or
// the one URL (also for i < 0).
func (t *Target) nodeURL(i int) string {
	if i < 0 || len(t.URLs) == 0 {
		return t.URL
	}
	return t.URLs[i%len(t.URLs)]
}

// readProcs sums the samples of several processes; it fails if any fails.
func readProcs(pids []int) (procSample, bool) {
	var sum procSample
	for i, pid := range pids {
		s, err := readProc(pid)
		if err != nil {
			return sum, false
		}
		if i == 0 {
			sum.At = s.At
		}
		sum.RSS += s.RSS
		sum.Ticks += s.Ticks
	}
	return sum, len(pids) > 0
}

// treeTicks is the CPU time (utime+stime, clock ticks) of pid and every
// process whose parent it is, such as PostgreSQL's postmaster and its
// backends. Backends that ended in between are not counted.
func treeTicks(pid int) (int64, bool) {
	total, ok := int64(0), false
	procs, _ := os.ReadDir("/proc")
	for _, d := range procs {
		p, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		if p != pid && statPPID(stat) != pid {
			continue
		}
		if t, err := parseStatTicks(stat); err == nil {
			total += t
			ok = true
		}
	}
	return total, ok
}

// statPPID reads the parent pid (field 4) of a /proc/<pid>/stat line.
func statPPID(stat []byte) int {
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}
