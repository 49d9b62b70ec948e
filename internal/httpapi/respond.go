package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/parley-chat/parley"
)

// status maps each error code to its HTTP status (SPEC §1).
var status = map[string]int{
	parley.EInvalidJSON:     http.StatusBadRequest,
	parley.EInvalid:         http.StatusBadRequest,
	parley.EUnauthorized:    http.StatusUnauthorized,
	parley.EForbidden:       http.StatusForbidden,
	parley.ERoleForbidden:   http.StatusForbidden,
	parley.ENotFound:        http.StatusNotFound,
	parley.EMethod:          http.StatusMethodNotAllowed,
	parley.EConflict:        http.StatusConflict,
	parley.ETooLarge:        http.StatusRequestEntityTooLarge,
	parley.EUnsupportedType: http.StatusUnsupportedMediaType,
	parley.ERateLimited:     http.StatusTooManyRequests,
	parley.EUnavailable:     http.StatusServiceUnavailable,
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field,omitempty"`
	} `json:"error"`
}

// writeError is the one place errors become responses. Errors that are not
// *parley.Error are logged and answered as a bare 500, never with details.
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *parley.Error
	if !errors.As(err, &e) {
		if errors.Is(err, r.Context().Err()) {
			// The client left; nobody reads the answer.
			e = &parley.Error{Code: parley.EUnavailable, Message: "request cancelled"}
		} else {
			a.Logger.Error("internal error", "method", r.Method, "path", r.URL.Path, "client", a.clientIP(r), "err", err)
			e = &parley.Error{Code: parley.EInternal, Message: "internal error"}
		}
	}
	code, ok := status[e.Code]
	if !ok {
		code = http.StatusInternalServerError
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.RetryAfter+999_999_999)/1_000_000_000)))
	}
	writeErrorStatus(w, code, e)
}

// writeErrorStatus writes e in the error shape with an HTTP status of the
// caller's choosing.
func writeErrorStatus(w http.ResponseWriter, code int, e *parley.Error) {
	var body errorBody
	body.Error.Code, body.Error.Message, body.Error.Field = e.Code, e.Message, e.Field
	writeJSON(w, code, body)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		slog.Error("encode response", "err", err)
		noStore(w.Header())
		http.Error(w, `{"error":{"code":"internal","message":"internal error"}}`, http.StatusInternalServerError)
		return
	}
	writeRawJSON(w, code, b)
}

// writeRawJSON is writeJSON for a body already encoded, which it leaves
// as it is (an event may share it).
func writeRawJSON(w http.ResponseWriter, code int, b []byte) {
	noStore(w.Header())
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(b)
	_, _ = w.Write(newline)
}

var newline = []byte("\n")

// noStore marks an API answer as not to be kept by browsers or proxies
// (it holds messages, tokens, who is online: a shared cache or the back
// button on a shared computer must not show it to someone else) and not to
// be sniffed as anything but its declared type.
func noStore(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
}

// jsonType reports whether a Content-Type names JSON. The header almost
// always is exactly application/json; only others are parsed (the parse
// allocates a map of parameters on every request).
func jsonType(ct string) bool {
	if ct == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// decode reads a JSON body of at most limit bytes into dst, answering the
// SPEC's errors for every way a body can be wrong. A body over the limit is
// refused from its Content-Length, or once the limit is reached while
// reading, never read whole.
func decode(w http.ResponseWriter, r *http.Request, limit int64, dst any) error {
	body, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	return decodeBytes(body, dst)
}

// decodeOpaque is decode for a body whose payload is the app's JSON,
// passed on as sent (json.RawMessage): a \u escape of half a surrogate
// pair there is valid JSON that nothing here turns into U+FFFD, so it is
// not refused as in text the server keeps.
func decodeOpaque(w http.ResponseWriter, r *http.Request, limit int64, dst any) error {
	body, err := readBody(w, r, limit)
	if err != nil {
		return err
	}
	return unmarshal(body, dst)
}

// readBody reads a JSON body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if !jsonType(r.Header.Get("Content-Type")) {
		return nil, parley.Errorf(parley.EUnsupportedType, "Content-Type must be application/json")
	}
	if r.ContentLength > limit {
		return nil, tooLarge(limit)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge(limit)
		}
		if errors.Is(err, errBodyTimeout) {
			return nil, errBodyTimeout
		}
		return nil, parley.Errorf(parley.EInvalidJSON, "could not read the request body")
	}
	return body, nil
}

func tooLarge(limit int64) error {
	return parley.Errorf(parley.ETooLarge, "request body is larger than %d bytes", limit)
}

// decodeBytes unmarshals a JSON object body into dst.
func decodeBytes(body []byte, dst any) error {
	if loneSurrogate(body) {
		return parley.Errorf(parley.EInvalidJSON, "request body has a \\u escape of half a UTF-16 surrogate pair, which is no character")
	}
	return unmarshal(body, dst)
}

// unmarshal is decodeBytes without the surrogate check (decodeOpaque).
func unmarshal(body []byte, dst any) error {
	if !utf8.Valid(body) {
		return parley.Errorf(parley.EInvalidJSON, "request body is not valid UTF-8")
	}
	if err := json.Unmarshal(body, dst); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field == "" {
				return parley.Invalid("", "request body must be a JSON object")
			}
			return parley.Invalid(te.Field, "%s must be %s", te.Field, kind(te.Type.Kind().String()))
		}
		var ie *json.InvalidUnmarshalError
		if errors.As(err, &ie) {
			return fmt.Errorf("decode: %w", err)
		}
		return parley.Errorf(parley.EInvalidJSON, "request body is not valid JSON")
	}
	return nil
}

// loneSurrogate reports whether JSON text has a \u escape of a UTF-16
// surrogate that is not half of a pair. encoding/json turns one into U+FFFD
// without a word, and text must be stored as it was sent.
func loneSurrogate(b []byte) bool {
	for i := bytes.IndexByte(b, '\\'); i >= 0 && i+1 < len(b); i = nextEscape(b, i+2) {
		if b[i+1] != 'u' {
			continue
		}
		r, ok := hex4(b[i+2:])
		if !ok || !utf16.IsSurrogate(r) {
			continue
		}
		if r >= 0xdc00 { // a low half with no high one before it
			return true
		}
		if len(b) < i+12 || b[i+6] != '\\' || b[i+7] != 'u' {
			return true
		}
		if low, ok := hex4(b[i+8:]); !ok || low < 0xdc00 || low > 0xdfff {
			return true
		}
		i += 6 // past the pair's high half; the loop steps over the low
	}
	return false
}

// nextEscape returns the index of the next backslash in b from i, or -1.
func nextEscape(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	if j := bytes.IndexByte(b[i:], '\\'); j >= 0 {
		return i + j
	}
	return -1
}

// hex4 reads the four hex digits of a \u escape.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	v, err := strconv.ParseUint(string(b[:4]), 16, 16)
	return rune(v), err == nil
}

func kind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "int", "int64", "int32", "float64", "uint", "uint64":
		return "a number"
	case "bool":
		return "a boolean"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	}
	return "of another type"
}
