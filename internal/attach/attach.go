// Package attach is attachments (SPEC §4): uploads to a conversation, the
// rules for their names and types, where their bytes are kept, who may read
// them, and the collection of uploads no message ever carried.
//
// The embedded store keeps each file in <data dir>/attachments/<id>, written
// to a temporary file, synced and renamed into place, so a file is whole or
// absent; the path comes from the server-made id alone. PostgreSQL keeps the
// bytes in the attachments row, so every node of a cluster serves every file.
// Rows are the truth: a file whose row is gone is removed.
package attach

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// Limits and timers of attachments (docs/chat.md).
const (
	// DefaultMaxSize is the largest upload, unless configured (SPEC §4).
	DefaultMaxSize = 10 << 20
	// MaxNameBytes bounds a file name.
	MaxNameBytes = 255
	// MaxPending is how many uploads a user may have that no message
	// carries yet: enough for a message of MaxAttachments and retries,
	// few enough that nobody fills the disk with uploads never sent.
	MaxPending = 50
	// UploadTTL is how long an upload no message carries is kept. A day
	// leaves room for a message written offline and sent from the outbox
	// much later.
	UploadTTL = 24 * time.Hour
	// CollectEvery is the pace of the collection of old uploads.
	CollectEvery = 10 * time.Minute
	// memoryUploads bounds the uploads read into memory at once (for a
	// store that keeps bytes in the database): 8 × 10 MiB at most.
	memoryUploads = 8
)

// Service stores and serves attachments. Its methods are safe for
// concurrent use.
type Service struct {
	store   store.Store
	dir     string // "" = bytes in the database
	maxSize int64
	log     *slog.Logger
	memory  chan struct{}
}

// New returns a Service keeping files in dir, or in the database when dir
// is "". maxSize is the largest upload in bytes.
func New(st store.Store, dir string, maxSize int64, logger *slog.Logger) (*Service, error) {
	if logger == nil {
		logger = slog.Default()
	}
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create attachments dir: %w", err)
		}
	}
	return &Service{store: st, dir: dir, maxSize: maxSize, log: logger, memory: make(chan struct{}, memoryUploads)}, nil
}

// MaxSize is the largest upload, in bytes.
func (s *Service) MaxSize() int64 { return s.maxSize }

// Upload is one file as it arrives.
type Upload struct {
	ConversationID string
	Name           string
	ContentType    string    // as declared by the uploader; only a hint
	Body           io.Reader // errors it returns that are *parley.Error are passed on
	Length         int64     // from Content-Length; -1 when unknown
}

// TooLarge is the answer for an upload over the limit.
func (s *Service) TooLarge() error {
	return parley.Errorf(parley.ETooLarge, "attachments are limited to %d bytes", s.maxSize)
}

// Upload stores a file for the uploader in a conversation they are in. It
// checks what it can before reading the body (name, declared length,
// membership, pending uploads), stops reading at the limit, and answers the
// attachment, which no message carries yet.
func (s *Service) Upload(ctx context.Context, uploaderID string, u Upload) (*parley.Attachment, error) {
	name, err := ValidName(u.Name)
	if err != nil {
		return nil, err
	}
	if u.Length > s.maxSize {
		return nil, s.TooLarge()
	}
	err = s.store.View(ctx, func(tx *store.Tx) error {
		if _, err := tx.Member(u.ConversationID, uploaderID); err != nil {
			return err
		}
		n, err := tx.PendingUploads(uploaderID)
		if err == nil && n >= MaxPending {
			err = &parley.Error{Code: parley.ERateLimited, RetryAfter: time.Minute,
				Message: fmt.Sprintf("at most %d uploads may wait to be sent; send or wait for older ones", MaxPending)}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	row := &store.AttachmentRow{
		ID: parley.NewID("att"), ConversationID: u.ConversationID, UploaderID: uploaderID,
		Name: name, CreatedAt: store.Now(),
	}
	var data []byte
	var head []byte
	if s.dir != "" {
		row.Size, head, err = s.writeFile(row.ID, u.Body)
	} else {
		data, err = s.readAll(ctx, u.Body)
		row.Size, head = int64(len(data)), data[:min(len(data), 512)]
	}
	if err != nil {
		return nil, err
	}
	if row.Size == 0 {
		s.Remove([]string{row.ID})
		return nil, parley.Invalid("body", "the file is empty")
	}
	row.ContentType = ContentType(head, u.ContentType)
	err = s.store.Update(ctx, func(tx *store.Tx) error { return tx.InsertAttachment(row, data) })
	if err != nil {
		s.Remove([]string{row.ID})
		return nil, err
	}
	a := row.Attachment()
	return &a, nil
}

// readBody copies at most maxSize bytes of body to w, and returns how many
// and the first 512 (for sniffing). More than maxSize is too_large; a body
// that breaks off is invalid_request.
func (s *Service) readBody(w io.Writer, body io.Reader) (int64, []byte, error) {
	h := &headWriter{w: w}
	n, err := io.Copy(h, io.LimitReader(body, s.maxSize+1))
	var pe *parley.Error
	switch {
	case errors.As(err, &pe):
		return 0, nil, pe
	case err != nil:
		return 0, nil, parley.Errorf(parley.EInvalid, "the upload broke off: %v", err)
	case n > s.maxSize:
		return 0, nil, s.TooLarge()
	}
	return n, h.head, nil
}

// headWriter keeps the first 512 bytes written through it.
type headWriter struct {
	w    io.Writer
	head []byte
}

func (h *headWriter) Write(p []byte) (int, error) {
	if len(h.head) < 512 {
		h.head = append(h.head, p[:min(len(p), 512-len(h.head))]...)
	}
	return h.w.Write(p)
}

// readAll reads an upload into memory, for a store that keeps the bytes in
// the database. A few at a time, so uploads cannot exhaust memory.
func (s *Service) readAll(ctx context.Context, body io.Reader) ([]byte, error) {
	select {
	case s.memory <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.memory }()
	var buf bytes.Buffer
	if _, _, err := s.readBody(&buf, body); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeFile writes an upload to its file: a temporary file first, synced
// and renamed into place, so a file is whole or absent.
func (s *Service) writeFile(id string, body io.Reader) (int64, []byte, error) {
	f, err := os.CreateTemp(s.dir, ".upload-*")
	if err != nil {
		return 0, nil, fmt.Errorf("create upload file: %w", err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	n, head, err := s.readBody(f, body)
	if err != nil {
		return 0, nil, err
	}
	if err := f.Chmod(0o600); err != nil {
		return 0, nil, fmt.Errorf("upload file mode: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, nil, fmt.Errorf("sync upload file: %w", err)
	}
	if err := f.Close(); err != nil {
		return 0, nil, fmt.Errorf("close upload file: %w", err)
	}
	if err := os.Rename(tmp, s.path(id)); err != nil {
		return 0, nil, fmt.Errorf("place upload file: %w", err)
	}
	ok = true
	syncDir(s.dir)
	return n, head, nil
}

// syncDir makes a rename in dir durable; where directories cannot be
// synced, the rename still happened.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// idPattern is the shape of the ids NewID("att") makes. A file's path is
// built only from an id of this shape.
var idPattern = regexp.MustCompile(`^att_[a-z2-7]{20}$`)

func (s *Service) path(id string) string { return filepath.Join(s.dir, id) }

// File is an attachment opened for reading. Close it.
type File struct {
	Row     *store.AttachmentRow
	Content io.ReadSeeker
	close   func() error
}

// Close releases the file.
func (f *File) Close() error {
	if f.close == nil {
		return nil
	}
	return f.close()
}

// Open returns an attachment for userID: the participants of its
// conversation once a message carries it, its uploader alone before.
// Anyone else, like a missing id, gets parley.NotFound.
func (s *Service) Open(ctx context.Context, userID, id string) (*File, error) {
	var row *store.AttachmentRow
	var data []byte
	err := s.store.View(ctx, func(tx *store.Tx) (err error) {
		if row, err = tx.AttachmentByID(id); err != nil {
			return err
		}
		if row.MessageID == "" && row.UploaderID != userID {
			return parley.NotFound
		}
		if _, err := tx.Member(row.ConversationID, userID); err != nil {
			return err
		}
		if s.dir == "" {
			data, err = tx.AttachmentData(row.ID)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if s.dir == "" {
		return &File{Row: row, Content: bytes.NewReader(data)}, nil
	}
	if !idPattern.MatchString(row.ID) {
		return nil, fmt.Errorf("attachment %q: not a server-made id", row.ID)
	}
	f, err := os.Open(s.path(row.ID))
	if errors.Is(err, os.ErrNotExist) {
		// Deleted between the read and the open (the message was deleted).
		return nil, parley.NotFound
	}
	if err != nil {
		return nil, fmt.Errorf("open attachment: %w", err)
	}
	return &File{Row: row, Content: f, close: f.Close}, nil
}

// Remove deletes the files of attachments whose rows are gone. It
// implements chat.Files; with bytes in the database there is nothing to do.
func (s *Service) Remove(ids []string) {
	if s.dir == "" {
		return
	}
	for _, id := range ids {
		if !idPattern.MatchString(id) {
			continue
		}
		if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("remove attachment file", "id", id, "err", err)
		}
	}
}

// Collect removes uploads that no message carried within UploadTTL.
func (s *Service) Collect(ctx context.Context) {
	before := time.Now().Add(-UploadTTL)
	for range 100 {
		var ids []string
		err := s.store.Update(ctx, func(tx *store.Tx) (err error) {
			ids, err = tx.CollectUploads(before, 500)
			return err
		})
		if err != nil {
			s.log.Error("collect uploads", "err", err)
			return
		}
		s.Remove(ids)
		if len(ids) < 500 {
			return
		}
	}
}

// SweepFiles removes what a crash can leave in the attachments dir:
// temporary files of uploads that never finished, and files whose row is
// gone (a deletion that committed before its files were removed). Files
// younger than a minute are left alone, as an upload in flight writes its
// file before its row.
func (s *Service) SweepFiles(ctx context.Context) {
	if s.dir == "" {
		return
	}
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		s.log.Warn("sweep attachments dir", "err", err)
		return
	}
	old := time.Now().Add(-time.Minute)
	var batch []string
	check := func() {
		var exist map[string]bool
		err := s.store.View(ctx, func(tx *store.Tx) (err error) {
			exist, err = tx.AttachmentsExist(batch)
			return err
		})
		if err != nil {
			s.log.Warn("sweep attachments dir", "err", err)
		} else {
			var gone []string
			for _, id := range batch {
				if !exist[id] {
					gone = append(gone, id)
				}
			}
			s.Remove(gone)
		}
		batch = batch[:0]
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() || info.ModTime().After(old) {
			continue
		}
		switch name := e.Name(); {
		case strings.HasPrefix(name, ".upload-"):
			_ = os.Remove(filepath.Join(s.dir, name))
		case idPattern.MatchString(name):
			if batch = append(batch, name); len(batch) == 500 {
				check()
			}
		}
	}
	if len(batch) > 0 {
		check()
	}
}

// ValidName checks an uploaded file's name and returns it trimmed of
// surrounding white space. The name is only ever shown and offered as the
// download's name, never used as a path, but a name people see must not
// hide what it is: no control, bidi or zero-width characters, no path
// separators, not empty, at most MaxNameBytes bytes.
func ValidName(name string) (string, error) {
	bad := func(why string) error { return parley.Invalid("name", "name %s", why) }
	if name == "" {
		return "", bad("is required (?name=)")
	}
	if len(name) > MaxNameBytes {
		return "", bad(fmt.Sprintf("must be at most %d bytes", MaxNameBytes))
	}
	if !utf8.ValidString(name) {
		return "", bad("must be valid UTF-8")
	}
	for _, r := range name {
		if parley.UnsafeRune(r) {
			return "", bad("must not contain control, bidirectional or zero-width characters")
		}
		if r == '/' || r == '\\' {
			return "", bad("must not contain / or \\")
		}
	}
	name = strings.TrimSpace(name)
	if strings.Trim(name, ".") == "" {
		return "", bad("must have a letter that is not a dot")
	}
	return name, nil
}

// The image types served as themselves (SPEC §4), by their magic numbers.
var imageMagic = []struct {
	prefix string
	offset int
	typ    string
}{
	{"\x89PNG\r\n\x1a\n", 0, "image/png"},
	{"\xff\xd8\xff", 0, "image/jpeg"},
	{"GIF87a", 0, "image/gif"},
	{"GIF89a", 0, "image/gif"},
	{"WEBP", 8, "image/webp"}, // after "RIFF" and the length
}

// SniffImage returns the image type the bytes start with (PNG, JPEG, GIF,
// WebP), or "".
func SniffImage(head []byte) string {
	for _, m := range imageMagic {
		if m.typ == "image/webp" && !bytes.HasPrefix(head, []byte("RIFF")) {
			continue
		}
		if len(head) >= m.offset+len(m.prefix) && string(head[m.offset:m.offset+len(m.prefix)]) == m.prefix {
			return m.typ
		}
	}
	return ""
}

// ContentType is the type an attachment is stored with: the sniffed image
// type when the bytes are an image; otherwise the declared type, unless it
// claims to be an image (then it would be shown as one) or is not a media
// type; else application/octet-stream. Only sniffed images are ever served
// with their type.
func ContentType(head []byte, declared string) string {
	if t := SniffImage(head); t != "" {
		return t
	}
	mt, _, err := mime.ParseMediaType(declared)
	if err != nil || len(mt) > 100 || !strings.Contains(mt, "/") || strings.HasPrefix(mt, "image/") {
		return "application/octet-stream"
	}
	return mt
}
