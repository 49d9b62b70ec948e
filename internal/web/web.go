// Package web serves the browser chat app and the JavaScript SDK, embedded in
// the binary: GET / is the app, /sdk/parley.js the SDK (SPEC §8), /test-sse the
// stream diagnostics page (SPEC §7). The server mounts Handler for every path
// outside /api/.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// aliases are the extension-less routes; every embedded file is also served at
// its own path (/app.js, /sdk/parley.js…).
var aliases = map[string]string{
	"/":         "index.html",
	"/test-sse": "test-sse.html",
}

// contentSecurityPolicy keeps the pages to their own scripts, styles and
// server: message bodies are rendered as text, and this is the second line of
// defence should that ever slip. blob:/mediastream: are for call media.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data: blob:; media-src 'self' blob: mediastream:; connect-src 'self'; " +
	"object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"

type asset struct {
	name        string
	data        []byte
	contentType string
	etag        string
}

// Handler serves the embedded files with their content types, an ETag and
// Cache-Control: no-cache (browsers revalidate, so a new binary's files are
// seen at once, at the cost of a 304 round trip). Unknown paths get 404, and
// methods other than GET and HEAD 405.
func Handler() http.Handler {
	assets := map[string]*asset{}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, "static/")
		sum := sha256.Sum256(data)
		assets["/"+rel] = &asset{
			name:        rel,
			data:        data,
			contentType: contentType(rel),
			etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		}
		return nil
	})
	if err != nil {
		// The files are compiled in; failing to read them is a build defect.
		panic("web: reading embedded files: " + err.Error())
	}
	for route, file := range aliases {
		if a, ok := assets["/"+file]; ok {
			assets[route] = a
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Exact paths only: no directory listings, no "/app.js/" aliases.
		a, ok := assets[r.URL.Path]
		if !ok {
			notFound(w)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "only GET and HEAD are allowed here")
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		if strings.HasPrefix(a.contentType, "text/html") {
			h.Set("Content-Security-Policy", contentSecurityPolicy)
			h.Set("Referrer-Policy", "same-origin")
			h.Set("X-Frame-Options", "DENY")
		}
		http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.data))
	})
}

// contentType is chosen from the name; the few types the app uses are listed so
// the answer does not depend on the host's MIME tables.
func contentType(name string) string {
	switch {
	case strings.HasSuffix(name, ".d.ts"):
		return "application/typescript; charset=utf-8"
	case strings.HasSuffix(name, ".js"), strings.HasSuffix(name, ".mjs"):
		return "text/javascript; charset=utf-8"
	case strings.HasSuffix(name, ".html"):
		return "text/html; charset=utf-8"
	case strings.HasSuffix(name, ".css"):
		return "text/css; charset=utf-8"
	case strings.HasSuffix(name, ".svg"):
		return "image/svg+xml"
	case strings.HasSuffix(name, ".json"):
		return "application/json"
	case strings.HasSuffix(name, ".md"):
		return "text/markdown; charset=utf-8"
	default:
		return "application/octet-stream"
	}
}

func notFound(w http.ResponseWriter) {
	writeError(w, http.StatusNotFound, "not_found", "no such page")
}

// writeError answers in the SPEC's error shape so that clients can treat every
// path alike.
func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`{"error":{"code":"` + code + `","message":"` + msg + `"}}` + "\n"))
}
