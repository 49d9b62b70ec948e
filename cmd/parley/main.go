// Command parley is the Parley server and its tools: `parley serve` (also
// bare `parley`) runs a node, `parley bench` load-tests one, `parley check`
// examines a stopped node's embedded database, `parley version` and `parley
// help` say what the binary is and how to use it.
//
// This file parses the command line and wires packages together; the work
// is theirs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parley-chat/parley/internal/bench"
	"github.com/parley-chat/parley/internal/buildinfo"
	"github.com/parley-chat/parley/internal/check"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/server"
)

// A command is one subcommand of parley.
type command struct {
	name     string
	args     string // what follows the name in the help
	synopsis string
	// run does the work. It handles -h/--help in its arguments itself (see
	// help), and returns a usageError for a command line it cannot use.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

// commands is the dispatch table, in the order the help lists them. A new
// subcommand is one line here and its function.
func commands() []command {
	return []command{
		{"serve", "[flags]", "run a Parley node (the default command)", serve},
		{"bench", "<workload> [flags]", "load-test a Parley server (parley bench --help)", benchmark},
		{"check", "[--repair]", "check the embedded database offline (stop parley first)", checkStore},
		{"version", "", "print the version and source revision of this binary", version},
		{"help", "[command]", "print this help, or a command's", help},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "parley:", err)
		if errors.As(err, new(usageError)) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a command line parley cannot use (exit status 2).
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	name := "serve" // bare `parley`, or `parley --addr …`, serves
	if len(args) > 0 {
		switch a := args[0]; {
		case isHelp(a):
			return help(ctx, nil, stdout, stderr)
		case a == "-version" || a == "--version":
			return version(ctx, nil, stdout, stderr)
		case !strings.HasPrefix(a, "-"):
			name, args = a, args[1:]
		}
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(ctx, args, stdout, stderr)
		}
	}
	return usageError{fmt.Errorf("unknown command %q; the commands are %s (parley help)", name, commandNames())}
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

func commandNames() string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

// serve runs a node until SIGINT or SIGTERM.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := config.FromEnv(args, nil)
	if errors.Is(err, flag.ErrHelp) {
		return help(ctx, nil, stdout, stderr)
	}
	if err != nil {
		return usageError{err}
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return usageError{fmt.Errorf("--log-level: %w", err)}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	srv, err := server.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	var demo *server.Demo
	if cfg.Demo {
		if demo, err = srv.SeedDemo(ctx); err != nil {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return errors.Join(err, srv.Shutdown(sctx))
		}
	}
	if err := srv.Start(); err != nil {
		return err
	}
	if demo != nil {
		demo.WriteTo(stdout, srv.URL())
	}
	return srv.Wait(ctx)
}

func benchmark(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return bench.Main(ctx, args, stdout, stderr)
}

// checkStore is `parley check`; its --help is not a failure.
func checkStore(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if err := check.Main(ctx, args, stdout, stderr); !errors.Is(err, flag.ErrHelp) {
		return err
	}
	return nil
}

func version(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		if isHelp(args[0]) {
			return help(ctx, nil, stdout, stderr)
		}
		return usageError{fmt.Errorf("version takes no arguments, not %q", args[0])}
	}
	_, err := io.WriteString(stdout, buildinfo.Read().String())
	return err
}

// help prints the commands and the settings of serve, or, given a command,
// that command's own help.
func help(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && !isHelp(args[0]) && args[0] != "help" {
		for _, c := range commands() {
			if c.name == args[0] {
				return c.run(ctx, []string{"--help"}, stdout, stderr)
			}
		}
		return usageError{fmt.Errorf("no command %q; the commands are %s", args[0], commandNames())}
	}
	fmt.Fprint(stdout, `Parley is a self-hosted real-time messaging server: a chat app between
clients and professionals, and events pushed to your app's users over
Server-Sent Events.

Usage:
`)
	for _, c := range commands() {
		fmt.Fprintf(stdout, "  %-33s %s\n", strings.TrimSpace("parley "+c.name+" "+c.args), c.synopsis)
	}
	fmt.Fprint(stdout, `
Settings of parley serve, as flags or PARLEY_* environment variables (a flag
wins over its variable):

`)
	config.WriteFlags(stdout)
	fmt.Fprint(stdout, `
A first look: parley serve --demo (on a new data dir), then open the URL it
prints. The README and docs/ say more.
`)
	return nil
}
