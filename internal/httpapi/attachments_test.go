package httpapi_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestAttachmentServedByItsBytes: what decides how a file is served is its
// bytes, never the type it was uploaded with. A PNG (declared or not) is
// served as image/png inline; an HTML page uploaded as image/png is stored
// and served as application/octet-stream, as a download; so is a PDF. Every
// answer has nosniff and a sandboxing CSP, and the download's name is
// encoded safely (RFC 6266/5987).
func TestAttachmentServedByItsBytes(t *testing.T) {
	p := newConvPair(t)
	png := p.mustUpload(t, p.client, p.conv, "photo.png", "application/octet-stream", pngBytes)
	if png.ContentType != "image/png" || png.Size != int64(len(pngBytes)) || png.Name != "photo.png" ||
		png.URL != "/api/attachments/"+png.ID || !strings.HasPrefix(png.ID, "att_") {
		t.Fatalf("png attachment = %+v", png)
	}
	html := p.mustUpload(t, p.client, p.conv, "evil.png", "image/png", []byte("<html><script>alert(1)</script></html>"))
	if html.ContentType != "application/octet-stream" {
		t.Fatalf("HTML declared as image/png stored as %q, want application/octet-stream", html.ContentType)
	}
	pdf := p.mustUpload(t, p.client, p.conv, `résumé "final".pdf`, "application/pdf", []byte("%PDF-1.4\n%…"))
	if pdf.ContentType != "application/pdf" {
		t.Fatalf("pdf content_type = %q (a declared non-image type is kept as a hint)", pdf.ContentType)
	}
	// The peer sees them once a message carries them.
	res, m := p.post(t, p.client, p.conv, map[string]any{"body": "", "attachment_ids": []string{png.ID, html.ID, pdf.ID}})
	if res.StatusCode != http.StatusCreated || len(m.Attachments) != 3 || m.Attachments[0] != png || m.Attachments[2] != pdf {
		t.Fatalf("send with attachments: %d %s", res.StatusCode, res.Body)
	}

	check := func(id, wantType, wantDisposition string, want []byte) {
		t.Helper()
		res := p.fetch(t, p.pro, id)
		h := res.Header
		if res.StatusCode != http.StatusOK || !bytes.Equal(res.Body, want) {
			t.Fatalf("GET %s: %d, %d bytes", id, res.StatusCode, len(res.Body))
		}
		if got := h.Get("Content-Type"); got != wantType {
			t.Fatalf("GET %s: Content-Type %q, want %q", id, got, wantType)
		}
		if got := h.Get("Content-Disposition"); got != wantDisposition {
			t.Fatalf("GET %s: Content-Disposition %q, want %q", id, got, wantDisposition)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("GET %s: no nosniff", id)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") || !strings.Contains(csp, "default-src 'none'") {
			t.Fatalf("GET %s: CSP %q does not sandbox", id, csp)
		}
	}
	check(png.ID, "image/png", `inline; filename="photo.png"; filename*=UTF-8''photo.png`, pngBytes)
	check(html.ID, "application/octet-stream", `attachment; filename="evil.png"; filename*=UTF-8''evil.png`,
		[]byte("<html><script>alert(1)</script></html>"))
	check(pdf.ID, "application/octet-stream",
		`attachment; filename="r_sum_ _final_.pdf"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf`, []byte("%PDF-1.4\n%…"))

	// The message and the history carry the list; /api/config the limits.
	var h struct {
		Messages []parley.Message `json:"messages"`
	}
	p.n.Do(t, "GET", "/api/conversations/"+p.conv+"/messages", p.pro.Token, nil, &h)
	if last := h.Messages[len(h.Messages)-1]; len(last.Attachments) != 3 || last.Attachments[1] != html {
		t.Fatalf("history's last message: %+v", last)
	}
	if first := h.Messages[0]; first.Attachments == nil {
		t.Fatalf("a message without files has attachments null, want []")
	}
	var cfg map[string]any
	p.n.Do(t, "GET", "/api/config", "", nil, &cfg)
	if cfg["max_attachment_bytes"] != float64(10<<20) || cfg["max_attachments_per_message"] != float64(10) {
		t.Fatalf("config limits: %v %v", cfg["max_attachment_bytes"], cfg["max_attachments_per_message"])
	}
}

// TestAttachmentLimits: an upload of exactly the limit is taken, one byte
// more is 413 (declared by Content-Length or found while reading a chunked
// body), and a declared 1 GiB is refused before the server reads it: the
// client has sent a small part when the answer comes, whether the size was
// declared or the body is chunked. The general JSON
// body limit (128 KiB) does not apply to uploads.
func TestAttachmentLimits(t *testing.T) {
	const limit = 300 << 10 // above the 128 KiB body limit
	p := newConvPair(t, func(c *config.Config) { c.MaxAttachment = limit })
	exact := bytes.Repeat([]byte("a"), limit)
	a := p.mustUpload(t, p.client, p.conv, "exact.bin", "", exact)
	if a.Size != limit {
		t.Fatalf("size %d, want %d", a.Size, limit)
	}
	over := append(exact, 'b')
	for _, chunked := range []bool{false, true} {
		var body any = over
		if chunked {
			body = struct{ io.Reader }{bytes.NewReader(over)}
		}
		req := newRequest(t, p.n, "POST", "/api/conversations/"+p.conv+"/attachments?name=over.bin", body)
		req.Header.Set("Authorization", "Bearer "+p.client.Token)
		wantError(t, send(t, req), http.StatusRequestEntityTooLarge, "too_large")
	}

	const huge = 1 << 30
	for _, declared := range []bool{true, false} {
		var sent atomic.Int64
		req := newRequest(t, p.n, "POST", "/api/conversations/"+p.conv+"/attachments?name=huge.bin",
			io.Reader(&countingReader{r: endless('x'), n: &sent, max: huge}))
		if declared {
			req.ContentLength = huge
		}
		req.Header.Set("Authorization", "Bearer "+p.client.Token)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := http.DefaultClient.Do(req.WithContext(ctx))
		if err != nil {
			cancel()
			t.Fatalf("huge upload (declared %v): %v (after %d bytes)", declared, err, sent.Load())
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		cancel()
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("huge upload (declared %v): %d %s", declared, res.StatusCode, b)
		}
		if got := sent.Load(); got > 64<<20 {
			t.Fatalf("client had sent %d bytes of 1 GiB (declared %v) when the 413 came", got, declared)
		}
	}

	// An empty file is refused; so is an upload to a conversation the
	// caller is not in (404, before the body is read).
	if res, _ := p.upload(t, p.client, p.conv, "empty.txt", "text/plain", []byte{}); res.StatusCode != http.StatusBadRequest {
		t.Fatalf("empty upload: %d %s", res.StatusCode, res.Body)
	}
	res2, _ := p.upload(t, p.outsider, p.conv, "x.txt", "text/plain", []byte("x"))
	wantError(t, res2, http.StatusNotFound, "not_found")
	res2, _ = p.upload(t, p.client, "conv_nope", "x.txt", "text/plain", []byte("x"))
	wantError(t, res2, http.StatusNotFound, "not_found")
}

// TestAttachmentNames: names that would hide what a file is, or that are
// not names at all, are refused with 400 naming the field.
func TestAttachmentNames(t *testing.T) {
	p := newConvPair(t)
	for _, name := range []string{
		"", "   ", "..", "a\x00b", "a\nb", "a\x7fb", "invoice\u202efdp.exe", "pay\u200bpal.pdf", "\ufeffbom.txt",
		"dir/file.txt", `dir\file.txt`, strings.Repeat("x", 256), "bad\xffutf8",
	} {
		res, _ := p.upload(t, p.client, p.conv, name, "text/plain", []byte("x"))
		wantField(t, res, "name")
	}
	for _, name := range []string{"a.txt", "Ünïcødé — 日本語.txt", strings.Repeat("x", 255), ".profile", " padded.txt "} {
		if a := p.mustUpload(t, p.client, p.conv, name, "text/plain", []byte("x")); a.Name != strings.TrimSpace(name) {
			t.Fatalf("name %q stored as %q", name, a.Name)
		}
	}
}

// TestAttachmentAccess: an upload is its uploader's until a message carries
// it, then its conversation's; anyone else gets 404, as for an id that does
// not exist.
func TestAttachmentAccess(t *testing.T) {
	p := newConvPair(t)
	a := p.mustUpload(t, p.pro, p.conv, "notes.txt", "text/plain", []byte("private notes"))
	if res := p.fetch(t, p.pro, a.ID); res.StatusCode != http.StatusOK {
		t.Fatalf("uploader: %d", res.StatusCode)
	}
	wantError(t, p.fetch(t, p.client, a.ID), http.StatusNotFound, "not_found") // not sent yet
	wantError(t, p.fetch(t, p.outsider, a.ID), http.StatusNotFound, "not_found")
	if res, _ := p.post(t, p.pro, p.conv, map[string]any{"body": "see notes", "attachment_ids": []string{a.ID}}); res.StatusCode != http.StatusCreated {
		t.Fatalf("send: %d %s", res.StatusCode, res.Body)
	}
	if res := p.fetch(t, p.client, a.ID); res.StatusCode != http.StatusOK || string(res.Body) != "private notes" {
		t.Fatalf("peer after send: %d %s", res.StatusCode, res.Body)
	}
	wantError(t, p.fetch(t, p.outsider, a.ID), http.StatusNotFound, "not_found")
	wantError(t, p.fetch(t, p.client, "att_aaaaaaaaaaaaaaaaaaaa"), http.StatusNotFound, "not_found")
	wantError(t, p.fetch(t, p.client, "../../parley.db"), http.StatusNotFound, "not_found")
	if res := p.n.Do(t, "GET", "/api/attachments/"+a.ID, "", nil, nil); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", res.StatusCode)
	}
}

// TestAttachmentIDsRules: attachment_ids name the sender's own uploads to
// the same conversation, each sent once, at most 10, no repeats; anything
// else is 400 naming attachment_ids, and nothing is attached. With
// attachments the body may be empty; without, it may not. An edit keeps the
// files and may empty the body.
func TestAttachmentIDsRules(t *testing.T) {
	p := newConvPair(t)
	other := p.open(t, p.client, p.pro, "second conversation")
	mine := p.mustUpload(t, p.client, p.conv, "a.txt", "text/plain", []byte("a"))
	peers := p.mustUpload(t, p.pro, p.conv, "b.txt", "text/plain", []byte("b"))
	elsewhere := p.mustUpload(t, p.client, other, "c.txt", "text/plain", []byte("c"))

	bad := []any{
		[]string{peers.ID},                                // another sender's upload
		[]string{elsewhere.ID},                            // another conversation's
		[]string{mine.ID, mine.ID},                        // twice
		[]string{mine.ID, "att_nope"},                     // one that does not exist
		[]string{"a\x00b"},                                // not an id
		[]string{""},                                      // empty
		strings.Split(strings.Repeat("x,", 11), ",")[:11], // more than 10
		"att_x", // not an array
	}
	for _, ids := range bad {
		res, _ := p.post(t, p.client, p.conv, map[string]any{"body": "x", "attachment_ids": ids})
		wantField(t, res, "attachment_ids")
	}
	// None of that attached mine: it still goes with a message, once.
	res, m := p.post(t, p.client, p.conv, map[string]any{"body": "  ", "attachment_ids": []string{mine.ID}})
	if res.StatusCode != http.StatusCreated || m.Body != "  " || len(m.Attachments) != 1 || m.Attachments[0] != mine {
		t.Fatalf("send with an attachment and a blank body: %d %s", res.StatusCode, res.Body)
	}
	res, _ = p.post(t, p.client, p.conv, map[string]any{"body": "again", "attachment_ids": []string{mine.ID}})
	wantField(t, res, "attachment_ids")
	res, _ = p.post(t, p.client, p.conv, map[string]any{"body": ""})
	wantField(t, res, "body")
	// The first message of a conversation cannot carry uploads (there is no
	// conversation to upload to yet).
	res2 := p.n.Do(t, "POST", "/api/conversations", p.client.Token, map[string]any{
		"professional_id": p.pro.ID, "message": map[string]any{"body": "hi", "attachment_ids": []string{elsewhere.ID}}}, nil)
	wantField(t, res2, "message.attachment_ids")

	var edited parley.Message
	if res := p.n.Do(t, "PATCH", "/api/messages/"+m.ID, p.client.Token, map[string]any{"body": ""}, &edited); res.StatusCode != http.StatusOK ||
		len(edited.Attachments) != 1 || edited.Body != "" {
		t.Fatalf("edit to an empty body: %d %s", res.StatusCode, res.Body)
	}
	text := p.say(t, p.client, p.conv, "text only")
	wantField(t, p.n.Do(t, "PATCH", "/api/messages/"+text.ID, p.client.Token, map[string]any{"body": " "}, nil), "body")

	// Safe retry: the same client_id answers the original, attachments and all.
	up := p.mustUpload(t, p.client, p.conv, "d.txt", "text/plain", []byte("d"))
	msg := map[string]any{"body": "with file", "client_id": "retry-1", "attachment_ids": []string{up.ID}}
	res, first := p.post(t, p.client, p.conv, msg)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("send: %d %s", res.StatusCode, res.Body)
	}
	res, again := p.post(t, p.client, p.conv, msg)
	if res.StatusCode != http.StatusOK || again.ID != first.ID || len(again.Attachments) != 1 {
		t.Fatalf("retry: %d %s", res.StatusCode, res.Body)
	}
}

// TestAttachmentsDeletedWithMessage: deleting a message deletes its files:
// 404 to both participants, the tombstone's list empty, and the bytes gone
// from the store (the file in the data dir for SQLite, the row for
// PostgreSQL). Files of other messages stay.
func TestAttachmentsDeletedWithMessage(t *testing.T) {
	p := newConvPair(t)
	a := p.mustUpload(t, p.client, p.conv, "a.png", "image/png", pngBytes)
	b := p.mustUpload(t, p.client, p.conv, "b.txt", "text/plain", []byte("bee"))
	keep := p.mustUpload(t, p.client, p.conv, "keep.txt", "text/plain", []byte("keep"))
	_, m := p.post(t, p.client, p.conv, map[string]any{"body": "two files", "attachment_ids": []string{a.ID, b.ID}})
	if _, k := p.post(t, p.client, p.conv, map[string]any{"body": "kept", "attachment_ids": []string{keep.ID}}); len(k.Attachments) != 1 {
		t.Fatalf("second message: %+v", k)
	}

	db := sqlDB(t, p.n)
	stored := func(id string) bool {
		t.Helper()
		if db != nil {
			var n int
			if err := db.QueryRow(`SELECT COUNT(*) FROM attachments WHERE id = $1`, id).Scan(&n); err != nil {
				t.Fatalf("count rows: %v", err)
			}
			return n > 0
		}
		path := filepath.Join(p.n.Config.DataDir, "attachments", id)
		st, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) {
			return false
		}
		if err != nil {
			t.Fatalf("stat: %v", err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s has mode %v, want 0600", path, st.Mode().Perm())
		}
		return true
	}
	for _, id := range []string{a.ID, b.ID, keep.ID} {
		if !stored(id) {
			t.Fatalf("%s not stored before the delete", id)
		}
	}

	var tomb parley.Message
	if res := p.n.Do(t, "DELETE", "/api/messages/"+m.ID, p.client.Token, nil, &tomb); res.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d %s", res.StatusCode, res.Body)
	}
	if !tomb.Deleted || tomb.Attachments == nil || len(tomb.Attachments) != 0 {
		t.Fatalf("tombstone: %+v", tomb)
	}
	for _, id := range []string{a.ID, b.ID} {
		if stored(id) {
			t.Fatalf("%s still stored after its message was deleted", id)
		}
		wantError(t, p.fetch(t, p.client, id), http.StatusNotFound, "not_found")
		wantError(t, p.fetch(t, p.pro, id), http.StatusNotFound, "not_found")
	}
	if !stored(keep.ID) || p.fetch(t, p.pro, keep.ID).StatusCode != http.StatusOK {
		t.Fatalf("another message's file went with the delete")
	}
	var h struct {
		Messages []parley.Message `json:"messages"`
	}
	p.n.Do(t, "GET", "/api/conversations/"+p.conv+"/messages", p.pro.Token, nil, &h)
	for _, hm := range h.Messages {
		if hm.ID == m.ID && len(hm.Attachments) != 0 {
			t.Fatalf("history still lists the deleted message's files: %+v", hm.Attachments)
		}
	}
}

// TestAttachmentRange: files are served with Range support (http.ServeContent),
// which media players need; a Range that is malformed or lies past the end
// gets 416 in the error shape.
func TestAttachmentRange(t *testing.T) {
	p := newConvPair(t)
	a := p.mustUpload(t, p.client, p.conv, "digits.txt", "text/plain", []byte("0123456789"))
	get := func(header, value string) *servertest.Response {
		req := newRequest(t, p.n, "GET", "/api/attachments/"+a.ID, nil)
		req.Header.Set("Authorization", "Bearer "+p.client.Token)
		req.Header.Set(header, value)
		return send(t, req)
	}
	if res := get("Range", "bytes=2-4"); res.StatusCode != http.StatusPartialContent || string(res.Body) != "234" {
		t.Fatalf("range: %d %q", res.StatusCode, res.Body)
	}
	for _, rng := range []string{"bytes=5-1", "bytes=abc", "bytes=999999999999999999999-", "bytes=10-"} {
		res := get("Range", rng)
		wantError(t, res, http.StatusRequestedRangeNotSatisfiable, "invalid_request")
		if res.Header.Get("Content-Disposition") != "" {
			t.Fatalf("Range %q: the error carries the file's Content-Disposition", rng)
		}
	}
	// A precondition the file fails is a 412 in the same shape.
	wantError(t, get("If-Match", `"another"`), http.StatusPreconditionFailed, "conflict")
	wantError(t, get("If-Unmodified-Since", "Mon, 02 Jan 2006 15:04:05 GMT"), http.StatusPreconditionFailed, "conflict")
	if res := get("If-None-Match", `"`+a.ID+`"`); res.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match of its ETag: %d, want 304", res.StatusCode)
	}
}

// TestErasureDeletesAttachments: erasing an app's user (DELETE
// /api/server/users/{external_id}) tombstones their messages through the
// one delete path, so their files go too: 404 to the peer, gone from the
// store.
func TestErasureDeletesAttachments(t *testing.T) {
	p := newConvPair(t)
	key := servertest.APIKey
	if res := p.n.Do(t, "PUT", "/api/server/users/ext-erase", key, map[string]any{"display_name": "Erin", "role": "client"}, nil); res.StatusCode/100 != 2 {
		t.Fatalf("provision: %d %s", res.StatusCode, res.Body)
	}
	var tok struct{ Token string }
	if res := p.n.Do(t, "POST", "/api/server/tokens", key, map[string]any{"external_id": "ext-erase"}, &tok); res.StatusCode != http.StatusCreated {
		t.Fatalf("token: %d %s", res.StatusCode, res.Body)
	}
	erin := servertest.User{Token: tok.Token}
	conv := p.open(t, erin, p.pro, "hello from an app user")
	a := p.mustUpload(t, erin, conv, "scan.png", "image/png", pngBytes)
	if res, _ := p.post(t, erin, conv, map[string]any{"body": "my scan", "attachment_ids": []string{a.ID}}); res.StatusCode != http.StatusCreated {
		t.Fatalf("send: %d %s", res.StatusCode, res.Body)
	}
	if res := p.fetch(t, p.pro, a.ID); res.StatusCode != http.StatusOK {
		t.Fatalf("before the erasure: %d", res.StatusCode)
	}
	if res := p.n.Do(t, "DELETE", "/api/server/users/ext-erase", key, nil, nil); res.StatusCode != http.StatusNoContent {
		t.Fatalf("erase: %d %s", res.StatusCode, res.Body)
	}
	wantError(t, p.fetch(t, p.pro, a.ID), http.StatusNotFound, "not_found")
	if db := sqlDB(t, p.n); db != nil {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM attachments WHERE id = $1`, a.ID).Scan(&n); err != nil || n != 0 {
			t.Fatalf("attachment rows after the erasure: %d (%v)", n, err)
		}
	} else if _, err := os.Stat(filepath.Join(p.n.Config.DataDir, "attachments", a.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file is still on disk after the erasure: %v", err)
	}
}
