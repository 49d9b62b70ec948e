package buildinfo_test

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/buildinfo"
)

func TestFromACheckoutBuild(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.26.8",
		Main:      debug.Module{Path: "github.com/parley-chat/parley", Version: "v0.0.0-20260101120000-0123456789ab+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "GOOS", Value: "linux"}, {Key: "GOARCH", Value: "arm64"},
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-01-01T12:00:00Z"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	got := buildinfo.From(bi).String()
	want := "parley v0.0.0-20260101120000-0123456789ab+dirty\n" +
		"revision 0123456789abcdef0123456789abcdef01234567 (2026-01-01T12:00:00Z), with uncommitted changes\n" +
		"go1.26.8 linux/arm64\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// TestWithoutVCSInformation: -buildvcs=false (or a build outside a
// checkout) records no revision; the version says so instead of failing.
func TestWithoutVCSInformation(t *testing.T) {
	got := buildinfo.From(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/parley-chat/parley"}}).String()
	if !strings.HasPrefix(got, "parley (devel)\nrevision unknown") || !strings.Contains(got, "go1.26.8 ") {
		t.Fatalf("got\n%s", got)
	}
}

func TestInstalledAtAVersion(t *testing.T) {
	i := buildinfo.From(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/parley-chat/parley", Version: "v1.2.3"}})
	if i.Version != "v1.2.3" || i.Revision != "" {
		t.Fatalf("got %+v", i)
	}
}
