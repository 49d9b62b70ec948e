package httpapi

import (
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/attach"
)

// AttachmentRoutes returns the attachment routes of SPEC §4 served by svc,
// to be added to API.Routes.
func AttachmentRoutes(svc *attach.Service) func(mux *ServeMux, a *API) {
	return func(mux *ServeMux, a *API) {
		h := &attachmentHandlers{a: a, svc: svc}
		mux.Handle("POST /api/conversations/{id}/attachments", a.authed(h.upload))
		// Activity, as the contract counts every authenticated request
		// but the stream and the poll, though an image that loads as its
		// message arrives says nothing of a person at the screen.
		mux.Handle("GET /api/attachments/{id}", a.authed(h.serve))
		a.addConfig(attachmentConfig(svc))
	}
}

type attachmentHandlers struct {
	a   *API
	svc *attach.Service
}

// upload takes the raw file as the body. The general JSON body limit does
// not apply: the attachment limit does, from Content-Length before anything
// is read, or once that many bytes have been read.
func (h *attachmentHandlers) upload(w http.ResponseWriter, r *http.Request) {
	att, err := h.svc.Upload(r.Context(), Principal(r).User.ID, attach.Upload{
		ConversationID: r.PathValue("id"),
		Name:           r.URL.Query().Get("name"),
		ContentType:    r.Header.Get("Content-Type"),
		Body:           &uploadBody{r: http.MaxBytesReader(w, r.Body, h.svc.MaxSize()), tooLarge: h.svc.TooLarge},
		Length:         r.ContentLength,
	})
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, att)
}

// uploadBody turns the MaxBytesReader's error into the SPEC's 413; the
// MaxBytesReader also tells the server to close the connection rather than
// read the rest.
type uploadBody struct {
	r        io.Reader
	tooLarge func() error
}

func (b *uploadBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = b.tooLarge()
	}
	return n, err
}

// attachmentCSP applies to whatever a browser makes of the file when it is
// opened on its own: no scripts, no plugins, no requests, a sandboxed
// origin. Images still show (img-src for the image document itself).
const attachmentCSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"

// serve sends the file: images (sniffed at upload) with their type, shown
// inline; anything else as application/octet-stream, downloaded. Range and
// conditional requests are answered by http.ServeContent.
func (h *attachmentHandlers) serve(w http.ResponseWriter, r *http.Request) {
	f, err := h.svc.Open(r.Context(), Principal(r).User.ID, r.PathValue("id"))
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	defer f.Close()
	hd := w.Header()
	disposition := "attachment"
	ctype := "application/octet-stream"
	// Only sniffed images are stored as image/*; the bytes are sniffed
	// again all the same, so that nothing but the bytes decides.
	head := make([]byte, 512)
	n, _ := io.ReadFull(f.Content, head)
	if _, err := f.Content.Seek(0, io.SeekStart); err != nil {
		h.a.writeError(w, r, err)
		return
	}
	if img := attach.SniffImage(head[:n]); img != "" && img == f.Row.ContentType {
		disposition, ctype = "inline", img
	}
	hd.Set("Content-Type", ctype)
	hd.Set("Content-Disposition", ContentDisposition(disposition, f.Row.Name))
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", attachmentCSP)
	hd.Set("Cross-Origin-Resource-Policy", "same-origin")
	hd.Set("Referrer-Policy", "no-referrer")
	// The bytes of an id never change, but who may read them does (a
	// deleted message's files are gone): caches must ask each time.
	hd.Set("Cache-Control", "private, no-cache")
	hd.Set("ETag", `"`+f.Row.ID+`"`)
	http.ServeContent(&jsonErrors{ResponseWriter: w, a: h.a, r: r}, r, "", f.Row.CreatedAt, f.Content)
}

// jsonErrors puts the error replies of http.ServeContent, plain text of
// its own, in the contract's shape, their statuses kept: a Range it cannot
// serve (416: malformed, or past the end of the file), an If-Match or
// If-Unmodified-Since the file fails (412), or a file it could not seek
// or size (500, logged).
type jsonErrors struct {
	http.ResponseWriter
	a      *API
	r      *http.Request
	status int // of the error written in place of ServeContent's, or 0
}

func (w *jsonErrors) WriteHeader(code int) {
	if code < http.StatusBadRequest {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.status = code
	w.Header().Del("Content-Disposition")
	e := &parley.Error{Code: parley.EInternal, Message: "internal error"}
	switch code {
	case http.StatusRequestedRangeNotSatisfiable:
		e = &parley.Error{Code: parley.EInvalid, Message: "the range is malformed or lies past the end of the file", Field: "Range"}
	case http.StatusPreconditionFailed:
		e = &parley.Error{Code: parley.EConflict, Message: "the file does not meet the request's If-Match or If-Unmodified-Since"}
	}
	writeErrorStatus(w.ResponseWriter, code, e)
}

// Write drops the body of an error replaced, logging the cause of a 500.
func (w *jsonErrors) Write(p []byte) (int, error) {
	switch w.status {
	case 0:
		return w.ResponseWriter.Write(p)
	case http.StatusInternalServerError:
		w.a.Logger.Error("serve attachment", "path", w.r.URL.Path, "err", strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// ContentDisposition builds the header for a file name (RFC 6266): an ASCII
// fallback in filename, with anything that is not a safe printable ASCII
// character replaced by "_", and the exact name in filename* (RFC 5987,
// UTF-8, percent-encoded), which browsers prefer.
func ContentDisposition(kind, name string) string {
	var b strings.Builder
	b.WriteString(kind)
	b.WriteString(`; filename="`)
	for _, r := range name {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' || r == '%' {
			b.WriteByte('_')
		} else {
			b.WriteRune(r)
		}
	}
	b.WriteString(`"; filename*=UTF-8''`)
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(name); i++ {
		c := name[i]
		if isAttrChar(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// isAttrChar is RFC 5987's attr-char: what filename* may hold unencoded.
func isAttrChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$&+-.^_`|~", c) >= 0
}
