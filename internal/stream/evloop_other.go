//go:build !linux

package stream

import (
	"errors"
	"net/http"
)

// loop is Linux-only; elsewhere every stream has its own goroutine.
type loop struct{}

func newLoop(*Server) (*loop, error) { return nil, nil }

func (*loop) stop() {}

func (s *Server) serveLoop(http.ResponseWriter, *http.Request, string, string, *Turn) error {
	return errors.New("no event loop on this platform")
}
