// Package check is `parley check [--repair]`: an offline check of the
// embedded database, and the repair of what can be repaired without
// inventing events (store/sqlite.Check).
package check

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/parley-chat/parley/internal/store/sqlite"
)

// ErrProblems is returned when the database has problems left: found
// without --repair, or beyond what a repair does.
var ErrProblems = errors.New("the database has problems (see above)")

// Main runs `parley check` with args (without the command name), reading
// PARLEY_DATA_DIR and PARLEY_DATABASE_URL as `parley serve` does (a flag
// wins). It writes its findings to stdout and returns ErrProblems when
// something is left to fix.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return run(ctx, args, os.Getenv, stdout, stderr)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("parley check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: parley check [--repair] [--data-dir DIR | --database-url sqlite:FILE]

Checks the embedded database offline (stop parley first): SQLite's own
integrity check, and that every stored run of events and every batch of
new events decodes. With --repair, a run that does not decode is dropped
together with the older events of its user's log: the log then starts after
it, and a client resuming from before it gets a reset and reloads its state.
`)
		fs.PrintDefaults()
	}
	dataDir := fs.String("data-dir", "./parley-data", "directory of the embedded database")
	dbURL := fs.String("database-url", "", "sqlite:FILE to name the database file instead")
	repair := fs.Bool("repair", false, "drop the event runs that do not decode")
	for name, v := range map[string]string{"data-dir": getenv("PARLEY_DATA_DIR"), "database-url": getenv("PARLEY_DATABASE_URL")} {
		if v != "" {
			if err := fs.Set(name, v); err != nil {
				return err
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	path := filepath.Join(*dataDir, "parley.db")
	switch u := *dbURL; {
	case u == "":
	case strings.HasPrefix(u, "sqlite:"), strings.HasPrefix(u, "file:"):
		path = strings.TrimPrefix(strings.TrimPrefix(u, "sqlite:"), "file:")
	default:
		return errors.New("parley check examines the embedded database; PostgreSQL keeps each event in a row of its own and has nothing of this kind to check")
	}

	r, err := sqlite.Check(ctx, path, *repair)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "parley check: %s\n", path)
	if len(r.Integrity) == 0 {
		fmt.Fprintln(stdout, "  integrity: ok")
	} else {
		fmt.Fprintf(stdout, "  integrity: %d problems (SQLite's quick_check; not repaired here: restore a backup, or try sqlite3's .recover):\n", len(r.Integrity))
		for _, l := range r.Integrity {
			fmt.Fprintf(stdout, "    %s\n", l)
		}
	}
	fmt.Fprintf(stdout, "  event_batches: %d rows, %d corrupt\n", r.Batches, len(r.CorruptBatches))
	for _, seq := range r.CorruptBatches {
		fmt.Fprintf(stdout, "    seq %d does not decode; parley will not start with it. Not repaired: its events cannot be told apart by user. Restore a backup.\n", seq)
	}
	fmt.Fprintf(stdout, "  event_runs: %d rows, %d corrupt\n", r.Runs, len(r.CorruptRuns))
	for _, e := range r.CorruptRuns {
		fmt.Fprintf(stdout, "    user %s, ids %d to %d: %v\n", e.UserID, e.FirstID, e.LastID, e.Err)
	}
	switch {
	case r.Repaired > 0:
		fmt.Fprintf(stdout, "  repaired: dropped %d corrupt runs and the events before them: %d events in all; those users' clients resuming from before them get a reset\n", r.Repaired, r.DroppedEvents)
	case len(r.CorruptRuns) > 0:
		fmt.Fprintln(stdout, "  run `parley check --repair` to drop the corrupt runs (and the older events of their users)")
	}
	if !r.OK() {
		return ErrProblems
	}
	fmt.Fprintln(stdout, "  ok")
	return nil
}
