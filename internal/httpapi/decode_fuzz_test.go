package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
)

// decodeTargets are the shapes request bodies are decoded into: strings,
// arrays, raw JSON, numbers of several sizes, booleans, pointers and nested
// objects, so every kind of type mismatch is reachable.
func decodeTargets() []any {
	return []any{
		new(auth.Registration),
		new(struct {
			UserIDs []string        `json:"user_ids"`
			Type    string          `json:"type"`
			Data    json.RawMessage `json:"data"`
		}),
		new(struct {
			UpToSeq int64   `json:"up_to_seq"`
			Limit   int     `json:"limit"`
			Small   uint8   `json:"small"`
			Ratio   float64 `json:"ratio"`
			Flag    bool    `json:"flag"`
			Ptr     *string `json:"ptr"`
			IDs     []int64 `json:"ids"`
			Message struct {
				Body     string  `json:"body"`
				ClientID *string `json:"client_id"`
			} `json:"message"`
		}),
		new(map[string]any),
	}
}

// FuzzDecode feeds arbitrary bytes, Content-Types and transfer modes to the
// body decoder. It must never panic and only ever fail with a *parley.Error
// whose code maps to a 4xx; an invalid_json answer must be for a body that
// really is not valid UTF-8 JSON, and a success for one that is. The answer
// writeError makes of the failure is never a 5xx and always the SPEC's
// error shape.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"username":"bob","password":"password123","role":"client"}`, `{"username":5}`,
		`{"user_ids":["a",1],"type":"app.x","data":{"k":[1,2,{"z":null}]}}`, `[]`, `null`, `"s"`, `1e400`,
		`{"up_to_seq":1e30}`, `{"up_to_seq":-1.5}`, `{"small":256}`, `{"message":{"body":7}}`, `{"ids":[1,"2"]}`,
		`{"a":1} trailing`, `{"a":"\ud800"}`, "{\"a\":\"\xff\"}", "\xef\xbb\xbf{}", `{"a":`, ``, `{"ptr":{}}`,
		`{"flag":"true"}`, `{"ratio":"NaN"}`, `{"data":` + string(bytes.Repeat([]byte("["), 200)),
	} {
		f.Add([]byte(s), "application/json", false)
	}
	f.Add([]byte(`{}`), "application/json; charset=utf-8", true)
	f.Add([]byte(`{}`), "text/plain", false)
	f.Add([]byte(`{}`), "", false)
	f.Add([]byte(`{}`), "application/json; charset", false)
	f.Add(bytes.Repeat([]byte(" "), 2000), "application/json", true)

	a := &API{Logger: slog.New(slog.DiscardHandler)}
	const limit = 1024
	f.Fuzz(func(t *testing.T, body []byte, contentType string, chunked bool) {
		valid := utf8.Valid(body) && json.Valid(body)
		for _, dst := range decodeTargets() {
			err := decodeBytes(body, dst)
			if err == nil {
				if !valid {
					t.Fatalf("decodeBytes(%q) into %T accepted invalid JSON or UTF-8", body, dst)
				}
				if m, ok := dst.(*map[string]any); ok {
					if got, sent := replacements(*m), bytes.Count(body, []byte("\uFFFD"))+
						bytes.Count(bytes.ToLower(body), []byte(`\ufffd`)); got > sent {
						t.Fatalf("decodeBytes(%q) made %d U+FFFD of %d sent: text changed in decoding", body, got, sent)
					}
				}
				continue
			}
			e := wantParleyError(t, err)
			if e.Code == parley.EInvalidJSON && valid && !loneSurrogate(body) {
				t.Fatalf("decodeBytes(%q) into %T: invalid_json for a valid body (%v)", body, dst, err)
			}
		}

		req := httptest.NewRequest("POST", "/api/x", bytes.NewReader(body))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if chunked {
			req.ContentLength = -1
			req.Body = io.NopCloser(struct{ io.Reader }{bytes.NewReader(body)})
		}
		rec := httptest.NewRecorder()
		var dst map[string]any
		err := decode(rec, req, limit, &dst)
		if err == nil {
			if len(body) > limit || !valid {
				t.Fatalf("decode accepted a body of %d bytes (limit %d), valid=%v", len(body), limit, valid)
			}
			return
		}
		e := wantParleyError(t, err)
		if len(body) > limit && e.Code != parley.ETooLarge && e.Code != parley.EUnsupportedType {
			t.Fatalf("decode of %d bytes (limit %d) failed with %s, want too_large", len(body), limit, e.Code)
		}
		a.writeError(rec, req, err)
		if rec.Code >= 500 || rec.Code < 400 {
			t.Fatalf("writeError(%v) answered %d", err, rec.Code)
		}
		var shape struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &shape); err != nil || shape.Error.Code != e.Code || shape.Error.Message == "" {
			t.Fatalf("writeError body %q is not the error shape for %v", rec.Body.Bytes(), err)
		}
	})
}

// replacements counts the U+FFFD in the keys and strings of a decoded
// JSON value.
func replacements(v any) int {
	n := 0
	switch v := v.(type) {
	case string:
		n = strings.Count(v, "\uFFFD")
	case []any:
		for _, e := range v {
			n += replacements(e)
		}
	case map[string]any:
		for k, e := range v {
			n += strings.Count(k, "\uFFFD") + replacements(e)
		}
	}
	return n
}

// TestLoneSurrogate: a \u escape of half a surrogate pair is refused
// (encoding/json would store U+FFFD in its place); pairs, escaped
// backslashes and other escapes pass.
func TestLoneSurrogate(t *testing.T) {
	for body, want := range map[string]bool{
		`{"a":"\ud800"}`: true, `{"a":"x\udc00y"}`: true, `{"a":"\ud800\ud800"}`: true, `{"a":"\ud800\u0041"}`: true,
		`{"\uDBFF":1}`: true, `{"a":"\ud83d\ude00"}`: false, `{"a":"\\ud800"}`: false, `{"a":"\\\ud800"}`: true,
		`{"a":"\u00e9\n\"\/"}`: false, `{"a":"\ud83d\ude00\udc00"}`: true, `{"a":"\ud83d"}`: true, `{"a":"\u12"}`: false,
		`{}`: false, `\`: false,
	} {
		if got := loneSurrogate([]byte(body)); got != want {
			t.Errorf("loneSurrogate(%s) = %v, want %v", body, got, want)
		}
	}
}

// wantParleyError fails unless err is a *parley.Error with a 4xx status.
func wantParleyError(t *testing.T, err error) *parley.Error {
	t.Helper()
	var e *parley.Error
	if !errors.As(err, &e) {
		t.Fatalf("decode failed with %T %v, not a *parley.Error", err, err)
	}
	if code, ok := status[e.Code]; !ok || code >= 500 || code < 400 {
		t.Fatalf("decode failed with code %q (status %d)", e.Code, status[e.Code])
	}
	if e.Code == parley.EInvalid && e.Message == "" {
		t.Fatalf("invalid_request without a message: %+v", e)
	}
	return e
}

// The status table must cover every code a handler may use, so that only
// truly unexpected errors become 500s.
func TestStatusTable(t *testing.T) {
	for _, code := range []string{parley.EInvalidJSON, parley.EInvalid, parley.EUnauthorized, parley.EForbidden, parley.ERoleForbidden,
		parley.ENotFound, parley.EMethod, parley.EConflict, parley.ETooLarge, parley.EUnsupportedType, parley.ERateLimited, parley.EUnavailable} {
		if s, ok := status[code]; !ok || s < 400 || s >= 600 || (s >= 500 && code != parley.EUnavailable) {
			t.Errorf("code %q maps to %d", code, s)
		}
	}
	if status[parley.EUnavailable] != http.StatusServiceUnavailable {
		t.Errorf("unavailable maps to %d", status[parley.EUnavailable])
	}
}
