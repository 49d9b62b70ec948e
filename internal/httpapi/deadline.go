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

// bodyDeadline bounds the time a request body takes to arrive. The server's
// ReadHeaderTimeout stops at the headers: a body trickled at a byte a second
// held its connection (and a slot of the process's descriptors) for as long
// as the client liked. The deadline is lifted once the body has been read,
// so a long poll or a slow handler is not cut by it.
func (a *API) bodyDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := a.Config.BodyTimeout
		if d > 0 && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/attachments") {
				d += time.Duration(a.Config.MaxAttachment/uploadRate) * time.Second
			}
			rc := http.NewResponseController(w)
			if rc.SetReadDeadline(time.Now().Add(d)) == nil {
				r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
			}
		}
		next.ServeHTTP(w, r)
	})
}

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
