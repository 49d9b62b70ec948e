package httpapi

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/parley-chat/parley"
)

// uploadRate is the slowest rate an upload is given time for, on top of
// BodyTimeout: the largest attachment at 32 KiB/s (10 MiB: about 5 min).
const uploadRate = 32 << 10

// deadlines bounds the time a request body takes to arrive, and each write
// of the answer.
//
// The server's ReadHeaderTimeout stops at the headers: a body trickled at a
// byte a second held its connection (and a slot of the process's
// descriptors) for as long as the client liked. The body's deadline is
// lifted once it has been read, so a long poll or a slow handler is not cut.
//
// Nothing bounded writes: a client that reads nothing kept its answer (a
// poll's page, a history page) in memory for as long as it kept the socket
// open. Each write now has --write-timeout to go through; the streams,
// written by the event loop, bound theirs there.
func (a *API) deadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rc *http.ResponseController // one for both deadlines, none for neither
		if wt := a.Config.WriteTimeout; wt > 0 && !isStream(r) {
			rc = http.NewResponseController(w)
			w = &deadlineWriter{ResponseWriter: w, rc: rc, timeout: wt}
		}
		d := a.Config.BodyTimeout
		if d > 0 && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/attachments") {
				d += time.Duration(a.Config.MaxAttachment/uploadRate) * time.Second
			}
			if rc == nil {
				rc = http.NewResponseController(w)
			}
			if rc.SetReadDeadline(time.Now().Add(d)) == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// isStream tells the event streams, whose writes the stream package bounds.
func isStream(r *http.Request) bool {
	return r.Method == http.MethodGet && (r.URL.Path == "/api/events" || r.URL.Path == "/api/diag/stream")
}

// deadlineWriter gives each write its own deadline: an answer read slowly
// but steadily (a large attachment) goes through; one not read at all is
// cut after the timeout.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	_ = w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.ResponseWriter.Write(p)
}

// Unwrap keeps http.ResponseController (flush, hijack) working through it.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// deadlineBody lifts the read deadline at the end of the body.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF && !b.done:
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = errBodyTimeout
	}
	return n, err
}

var errBodyTimeout = parley.Errorf(parley.EInvalidJSON, "the request body did not arrive in time")
