// Package buildinfo says which Parley a binary is: the module version and
// the source revision the Go toolchain embedded when it was built.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// Info is what the build recorded. Fields the build did not record are
// empty: a binary built with -buildvcs=false, or outside a git checkout,
// has no revision.
type Info struct {
	// Version is the module version: v1.2.3 when installed with
	// `go install …@v1.2.3`, a pseudo-version when built in a checkout
	// (Go 1.24 and later), "(devel)" otherwise.
	Version  string
	Revision string // VCS revision (the commit hash)
	Time     string // commit time, RFC 3339
	Modified bool   // built from a tree with uncommitted changes
	Go       string // toolchain version, such as go1.26.8
	Platform string // GOOS/GOARCH
}

// Read returns this binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "(unknown)", Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	}
	return From(bi)
}

// From extracts Info from a build's record.
func From(bi *debug.BuildInfo) Info {
	i := Info{Version: bi.Main.Version, Go: bi.GoVersion, Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		case "GOOS":
			i.Platform = s.Value + i.Platform[strings.IndexByte(i.Platform, '/'):]
		case "GOARCH":
			i.Platform = i.Platform[:strings.IndexByte(i.Platform, '/')+1] + s.Value
		}
	}
	return i
}

// String is what `parley version` prints: three lines, the first
// "parley <version>".
func (i Info) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "parley %s\n", i.Version)
	switch {
	case i.Revision == "":
		b.WriteString("revision unknown (built without VCS information: -buildvcs=false, or not from a git checkout)\n")
	default:
		b.WriteString("revision " + i.Revision)
		if i.Time != "" {
			b.WriteString(" (" + i.Time + ")")
		}
		if i.Modified {
			b.WriteString(", with uncommitted changes")
		}
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "%s %s\n", i.Go, i.Platform)
	return b.String()
}
