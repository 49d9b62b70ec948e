package attach_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/attach"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/store/postgres"
	"github.com/parley-chat/parley/internal/store/sqlite"
	"github.com/parley-chat/parley/internal/testenv"
)

var ctx = context.Background()

// setup opens a store (PostgreSQL when PARLEY_TEST_DATABASE_URL says so,
// else SQLite with files in a temp dir), with two users in a conversation.
func setup(t *testing.T) (st store.Store, svc *attach.Service, dir string, user, conv string) {
	t.Helper()
	var err error
	if u := os.Getenv("PARLEY_TEST_DATABASE_URL"); strings.HasPrefix(u, "postgres") {
		st, err = postgres.Open(ctx, testenv.FreshDatabase(t, u), nil)
	} else {
		dir = filepath.Join(t.TempDir(), "attachments")
		st, err = sqlite.Open(ctx, filepath.Join(t.TempDir(), "parley.db"), nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if svc, err = attach.New(st, dir, 1<<20, nil); err != nil {
		t.Fatal(err)
	}
	c := &parley.User{ID: parley.NewID("u"), Username: ptr("c" + parley.NewID("")[1:9]), Role: parley.RoleClient, PasswordHash: []byte("x"), CreatedAt: store.Now()}
	p := &parley.User{ID: parley.NewID("u"), Username: ptr("p" + parley.NewID("")[1:9]), Role: parley.RoleProfessional, PasswordHash: []byte("x"), CreatedAt: store.Now()}
	conv = parley.NewID("conv")
	err = st.Update(ctx, func(tx *store.Tx) error {
		if err := tx.CreateUser(c); err != nil {
			return err
		}
		if err := tx.CreateUser(p); err != nil {
			return err
		}
		return tx.CreateConversation(&store.ConversationRow{ID: conv, ClientID: c.ID, ProfessionalID: p.ID, CreatedAt: store.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	return st, svc, dir, c.ID, conv
}

// insertOld stores an upload made long ago, as Upload would have (a file
// in dir, or the bytes in the row).
func insertOld(t *testing.T, st store.Store, dir, user, conv string, age time.Duration) string {
	t.Helper()
	row := &store.AttachmentRow{ID: parley.NewID("att"), ConversationID: conv, UploaderID: user, Name: "old.txt",
		ContentType: "text/plain", Size: 3, CreatedAt: store.Now().Add(-age)}
	var data []byte
	if dir != "" {
		if err := os.WriteFile(filepath.Join(dir, row.ID), []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
	} else {
		data = []byte("old")
	}
	if err := st.Update(ctx, func(tx *store.Tx) error { return tx.InsertAttachment(row, data) }); err != nil {
		t.Fatal(err)
	}
	return row.ID
}

// TestCollectUploads: uploads no message carried for longer than UploadTTL
// are removed, row and bytes; younger ones and ones a message carries stay.
func TestCollectUploads(t *testing.T) {
	st, svc, dir, user, conv := setup(t)
	stale := insertOld(t, st, dir, user, conv, attach.UploadTTL+time.Minute)
	sent := insertOld(t, st, dir, user, conv, attach.UploadTTL+time.Minute)
	young := insertOld(t, st, dir, user, conv, attach.UploadTTL-time.Minute)
	if err := st.Update(ctx, func(tx *store.Tx) error {
		_, err := tx.AttachToMessage([]string{sent}, "msg_x", conv, user)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	svc.Collect(ctx)
	for id, want := range map[string]bool{stale: false, sent: true, young: true} {
		if got := exists(t, svc, user, id); got != want {
			t.Errorf("%s: stored %v after the collection, want %v", id, got, want)
		}
		if dir != "" {
			_, err := os.Stat(filepath.Join(dir, id))
			if got := err == nil; got != want {
				t.Errorf("%s: file present %v after the collection, want %v", id, got, want)
			}
		}
	}
}

func exists(t *testing.T, svc *attach.Service, user, id string) bool {
	t.Helper()
	f, err := svc.Open(ctx, user, id)
	if errors.Is(err, parley.NotFound) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return true
}

// TestSweepFiles: what a crash leaves in the attachments dir (an unfinished
// upload's temporary file, a file whose row is gone) is removed once it is
// a minute old; files with rows, and anything young, stay.
func TestSweepFiles(t *testing.T) {
	st, svc, dir, user, conv := setup(t)
	if dir == "" {
		t.Skip("PostgreSQL keeps attachments in the database")
	}
	kept := insertOld(t, st, dir, user, conv, time.Hour)
	orphan := parley.NewID("att")
	young := parley.NewID("att")
	old := time.Now().Add(-2 * time.Minute)
	for _, name := range []string{orphan, ".upload-123", young, "README"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if name != young {
			os.Chtimes(filepath.Join(dir, name), old, old)
		}
	}
	os.Chtimes(filepath.Join(dir, kept), old, old)
	svc.SweepFiles(ctx)
	for name, want := range map[string]bool{kept: true, orphan: false, ".upload-123": false, young: true, "README": true} {
		_, err := os.Stat(filepath.Join(dir, name))
		if got := err == nil; got != want {
			t.Errorf("%s present %v after the sweep, want %v", name, got, want)
		}
	}
}

// TestUploadKeepsBytes: what Upload stores is what Open gives back, and a
// failed upload leaves no file behind.
func TestUploadKeepsBytes(t *testing.T) {
	_, svc, dir, user, conv := setup(t)
	body := bytes.Repeat([]byte("0123456789"), 1000)
	a, err := svc.Upload(ctx, user, attach.Upload{ConversationID: conv, Name: "d.txt", ContentType: "text/plain", Body: bytes.NewReader(body), Length: -1})
	if err != nil {
		t.Fatal(err)
	}
	f, err := svc.Open(ctx, user, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	got.ReadFrom(f.Content)
	f.Close()
	if !bytes.Equal(got.Bytes(), body) {
		t.Fatalf("read back %d bytes, want %d", got.Len(), len(body))
	}
	_, err = svc.Upload(ctx, user, attach.Upload{ConversationID: conv, Name: "big", Body: bytes.NewReader(make([]byte, 1<<20+1)), Length: -1})
	if parley.ErrorCode(err) != parley.ETooLarge {
		t.Fatalf("over the limit: %v", err)
	}
	if dir != "" {
		entries, _ := os.ReadDir(dir)
		if len(entries) != 1 {
			t.Fatalf("files left in the dir: %d, want the one upload", len(entries))
		}
	}
}

// TestContentType: only the bytes make an image; a declared type is kept
// as a hint unless it claims an image.
func TestContentType(t *testing.T) {
	cases := []struct {
		head, declared, want string
	}{
		{"\x89PNG\r\n\x1a\nrest", "", "image/png"},
		{"\xff\xd8\xff\xe0", "text/plain", "image/jpeg"},
		{"GIF89a..", "", "image/gif"},
		{"RIFF\x00\x00\x00\x00WEBPVP8 ", "", "image/webp"},
		{"RIFF\x00\x00\x00\x00WAVEfmt ", "image/webp", "application/octet-stream"},
		{"<svg xmlns=...>", "image/svg+xml", "application/octet-stream"},
		{"<html>", "image/png", "application/octet-stream"},
		{"%PDF-1.7", "application/pdf; name=x.pdf", "application/pdf"},
		{"x", "Text/HTML; charset=utf-8", "text/html"},
		{"x", "nonsense", "application/octet-stream"},
		{"x", "", "application/octet-stream"},
	}
	for _, c := range cases {
		if got := attach.ContentType([]byte(c.head), c.declared); got != c.want {
			t.Errorf("ContentType(%q, %q) = %q, want %q", c.head, c.declared, got, c.want)
		}
	}
}

func ptr(s string) *string { return &s }
