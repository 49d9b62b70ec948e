//go:build !linux

package stream

import (
	"errors"
	"net/http"
	"time"
)

// loop is Linux-only; elsewhere every stream has its own goroutine.
type loop struct{}

func newLoop(*Server) (*loop, error) { return nil, nil }

func (*loop) stop() {}

func (*loop) behind() time.Duration { return 0 }

func (s *Server) serveLoop(http.ResponseWriter, *http.Request, string, string, *Turn) error {
	return errors.New("no event loop on this platform")
}
