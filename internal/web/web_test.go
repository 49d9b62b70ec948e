package web_test

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/parley-chat/parley/internal/web"
)

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestRoutesAndContentTypes(t *testing.T) {
	h := web.Handler()
	cases := []struct {
		path, ctype, contains string
	}{
		{"/", "text/html; charset=utf-8", `id="app"`},
		{"/index.html", "text/html; charset=utf-8", `id="app"`},
		{"/app.js", "text/javascript; charset=utf-8", "data-testid"},
		{"/app.css", "text/css; charset=utf-8", "{"},
		{"/sdk/parley.js", "text/javascript; charset=utf-8", "export class Parley"},
		{"/sdk/core.js", "text/javascript; charset=utf-8", "export class ConnectionController"},
		{"/sdk/parley.d.ts", "application/typescript; charset=utf-8", "export declare class Parley"},
		{"/sdk/react.js", "text/javascript; charset=utf-8", "useParley"},
		{"/sdk/react.d.ts", "application/typescript; charset=utf-8", "useParley"},
		{"/test-sse", "text/html; charset=utf-8", "/api/diag/stream"},
		{"/test-sse.js", "text/javascript; charset=utf-8", "EventSource"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			rec := get(t, h, http.MethodGet, c.path, nil)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %s = %d, want 200", c.path, rec.Code)
			}
			if got := rec.Header().Get("Content-Type"); got != c.ctype {
				t.Errorf("Content-Type = %q, want %q", got, c.ctype)
			}
			if got := rec.Header().Get("Cache-Control"); got != "no-cache" {
				t.Errorf("Cache-Control = %q, want no-cache", got)
			}
			if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q", got)
			}
			if !strings.Contains(rec.Body.String(), c.contains) {
				t.Errorf("body of %s does not contain %q", c.path, c.contains)
			}
		})
	}
}

func TestHTMLHasContentSecurityPolicy(t *testing.T) {
	rec := get(t, web.Handler(), http.MethodGet, "/", nil)
	csp := rec.Header().Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("CSP = %q, want script-src 'self'", csp)
	}
	js := get(t, web.Handler(), http.MethodGet, "/app.js", nil)
	if js.Header().Get("Content-Security-Policy") != "" {
		t.Error("scripts need no CSP header")
	}
}

func TestUnknownPathsAre404(t *testing.T) {
	h := web.Handler()
	for _, p := range []string{"/nope", "/sdk/", "/sdk", "/static/app.js", "/sdk/missing.js", "/favicon.ico", "/../web.go", "/app.js/"} {
		rec := get(t, h, http.MethodGet, p, nil)
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, rec.Code)
			continue
		}
		var body struct {
			Error struct{ Code string } `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error.Code != "not_found" {
			t.Errorf("GET %s body = %q, want the SPEC error shape", p, rec.Body.String())
		}
	}
}

func TestMethods(t *testing.T) {
	h := web.Handler()
	rec := get(t, h, http.MethodPost, "/", nil)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST / = %d Allow=%q, want 405 with Allow: GET, HEAD", rec.Code, rec.Header().Get("Allow"))
	}
	head := get(t, h, http.MethodHead, "/sdk/parley.js", nil)
	if head.Code != http.StatusOK || head.Body.Len() != 0 || head.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD = %d, body %d bytes, Content-Length %q", head.Code, head.Body.Len(), head.Header().Get("Content-Length"))
	}
}

func TestETagRevalidation(t *testing.T) {
	h := web.Handler()
	first := get(t, h, http.MethodGet, "/sdk/parley.js", nil)
	etag := first.Header().Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	again := get(t, h, http.MethodGet, "/sdk/parley.js", map[string]string{"If-None-Match": etag})
	if again.Code != http.StatusNotModified {
		t.Errorf("revalidation = %d, want 304", again.Code)
	}
	other := get(t, h, http.MethodGet, "/sdk/core.js", nil)
	if other.Header().Get("ETag") == etag {
		t.Error("different files share an ETag")
	}
}

// Every relative import of every module (the app's, the SDK's, the service
// worker's) and every script and stylesheet the pages load must be served,
// since there is no build step to catch a typo. The pages hold no inline
// script: the CSP would block it.
func TestReferencesResolve(t *testing.T) {
	h := web.Handler()
	importRe := regexp.MustCompile(`(?m)^\s*(?:import|export)[^"';]*?from\s+["'](\.\.?/[^"']+)["']|^\s*import\s+["'](\.\.?/[^"']+)["']|import\(\s*["'](\.\.?/[^"']+)["']\s*\)`)
	srcRe := regexp.MustCompile(`(?:src|href)="(/[^"]*)"`)
	check := func(from, ref string) {
		rec := get(t, h, http.MethodGet, ref, nil)
		if rec.Code != http.StatusOK {
			t.Errorf("%s refers to %s, which is %d", from, ref, rec.Code)
		}
	}
	var modules []string
	err := filepath.WalkDir("static", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".js") {
			modules = append(modules, filepath.ToSlash(strings.TrimPrefix(p, "static"+string(filepath.Separator))))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(modules) < 10 {
		t.Fatalf("found only %d modules under static/: %v", len(modules), modules)
	}
	imports := 0
	for _, f := range modules {
		for _, m := range importRe.FindAllStringSubmatch(readStatic(t, f), -1) {
			ref := m[1] + m[2] + m[3]
			check(f, path.Join("/", path.Dir(f), ref))
			imports++
		}
	}
	if imports < 20 {
		t.Errorf("found only %d relative imports in %d modules; is the pattern still right?", imports, len(modules))
	}
	inlineRe := regexp.MustCompile(`<script(?:\s[^>]*)?>`)
	for _, f := range []string{"index.html", "test-sse.html"} {
		html := readStatic(t, f)
		for _, m := range srcRe.FindAllStringSubmatch(html, -1) {
			check(f, m[1])
		}
		for _, tag := range inlineRe.FindAllString(html, -1) {
			if !strings.Contains(tag, " src=") {
				t.Errorf("%s has an inline script (%s); the CSP allows only files", f, tag)
			}
		}
	}
}

func readStatic(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("static", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The service worker's shell list must name every module of the app and the
// SDK's runtime files, or a tab opened offline would miss one; and it must
// keep its hands off /api/.
func TestServiceWorkerShellListsEveryModule(t *testing.T) {
	sw := readStatic(t, "sw.js")
	want := []string{"/", "/app.js", "/app.css", "/sdk/parley.js", "/sdk/core.js"}
	entries, err := os.ReadDir(filepath.Join("static", "app"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".js") {
			want = append(want, "/app/"+e.Name())
		}
	}
	for _, p := range want {
		if !strings.Contains(sw, `"`+p+`"`) {
			t.Errorf("sw.js does not list %s in its shell", p)
		}
	}
	if !strings.Contains(sw, `startsWith("/api/")`) {
		t.Error("sw.js should leave /api/ requests alone")
	}
	rec := get(t, web.Handler(), http.MethodGet, "/sw.js", nil)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/javascript; charset=utf-8" || rec.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("GET /sw.js = %d %q %q", rec.Code, rec.Header().Get("Content-Type"), rec.Header().Get("Cache-Control"))
	}
}
