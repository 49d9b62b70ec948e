package sqlite_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/parley-chat/parley/internal/store/sqlite"
)

// TestFilesPrivate: the database and its -wal and -shm files are readable
// by their owner only, whatever the umask, and files an older version left
// open to others are narrowed at the next start.
func TestFilesPrivate(t *testing.T) {
	old := syscall.Umask(0o002)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "parley.db")
	db, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
	db.Close()
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	db, err = sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("reopened 0644 database: mode %v", fi.Mode().Perm())
	}
}

// TestLockFollowsLinks: a second store reaching the same file through a
// symbolic link, to the file or to its directory, is refused like one
// using the same name.
func TestLockFollowsLinks(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "data", "parley.db")
	if err := os.MkdirAll(filepath.Dir(real), 0o700); err != nil {
		t.Fatal(err)
	}
	fileLink := filepath.Join(dir, "file-link.db")
	dirLink := filepath.Join(dir, "dir-link")
	if err := os.Symlink(real, fileLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "data"), dirLink); err != nil {
		t.Fatal(err)
	}
	// The first store comes through the link to a file that does not
	// exist yet: it must create and lock the real one.
	first, err := sqlite.Open(context.Background(), fileLink, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if _, err := os.Stat(real); err != nil {
		t.Fatalf("the database was not created where the link points: %v", err)
	}
	for _, p := range []string{real, fileLink, filepath.Join(dirLink, "parley.db")} {
		second, err := sqlite.Open(context.Background(), p, nil)
		if err == nil {
			second.Close()
			t.Fatalf("a second store opened %s", p)
		}
		if !strings.Contains(err.Error(), "in use") {
			t.Fatalf("%s: %v, want an in-use error", p, err)
		}
	}
}

// TestCorruptDatabaseRefused: a damaged database file is found at Open by
// SQLite's quick_check, with an error that says so, rather than at some
// later read.
func TestCorruptDatabaseRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "parley.db")
	db, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() < 8*4096 {
		t.Fatalf("database of %d bytes: %v", fi.Size(), err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Garbage over pages 3 to 6: b-tree pages of the schema's tables.
	junk := []byte(strings.Repeat("\xde\xad\xbe\xef", 4*4096/4))
	if _, err := f.WriteAt(junk, 2*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = sqlite.Open(context.Background(), path, nil)
	if !errors.Is(err, sqlite.ErrCorrupt) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("open of a corrupt database: %v", err)
	}

	notDB := filepath.Join(t.TempDir(), "parley.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a database ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Open(context.Background(), notDB, nil); !errors.Is(err, sqlite.ErrCorrupt) {
		t.Fatalf("open of a file that is no database: %v", err)
	}
}
