package bench

import (
	"os"
	"testing"
)

func TestURLTargetSeveralNodes(t *testing.T) {
	var pids pidList
	if err := pids.Set("11, 12,13"); err != nil {
		t.Fatal(err)
	}
	tg := newURLTarget("http://127.0.0.1:1/,http://127.0.0.1:2, http://127.0.0.1:3", "k", pids)
	if tg.URL != "http://127.0.0.1:1" || len(tg.URLs) != 3 || tg.PID != 11 || pids.String() != "11,12,13" {
		t.Fatalf("target %+v, pids %q", tg, pids.String())
	}
	for i, want := range []string{"http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3", "http://127.0.0.1:1"} {
		if got := tg.nodeURL(i); got != want {
			t.Errorf("nodeURL(%d) = %q, want %q", i, got, want)
		}
	}
	if got := tg.nodeURL(-1); got != tg.URL {
		t.Errorf("nodeURL(-1) = %q", got)
	}
	if err := pids.Set("x"); err == nil {
		t.Error("bad pid accepted")
	}
}

func TestReadProcsSums(t *testing.T) {
	one, err := readProc(os.Getpid())
	if err != nil {
		t.Skip(err)
	}
	two, ok := readProcs([]int{os.Getpid(), os.Getpid()})
	if !ok || two.RSS < one.RSS*3/2 {
		t.Fatalf("sum of the same process twice: %+v, one %+v", two, one)
	}
	if ticks, ok := treeTicks(os.Getpid()); !ok || ticks < 0 {
		t.Fatalf("treeTicks: %d %v", ticks, ok)
	}
	if _, err := parseAux(stringList{"pg=notapid"}); err == nil {
		t.Error("bad --aux-pid accepted")
	}
}
