// Command parley runs a Parley node (`parley` or `parley serve`) or its load
// generator (`parley bench`).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/parley-chat/parley/internal/bench"
	"github.com/parley-chat/parley/internal/check"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "parley:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "check" {
		return check.Main(ctx, args[1:], os.Stdout, os.Stderr)
	}
	cmd := "serve"
	if len(args) > 0 && (args[0] == "serve" || args[0] == "bench") {
		cmd, args = args[0], args[1:]
	}
	if cmd == "bench" {
		return bench.Main(ctx, args, os.Stdout, os.Stderr)
	}
	cfg, err := config.FromEnv(args, os.Stderr)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	srv, err := server.New(ctx, cfg, logger)
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
