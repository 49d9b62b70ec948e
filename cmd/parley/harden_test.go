package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStartRefusals: settings and files the server must not run with stop
// it at start with a message that says what to do, and a non-zero exit: a
// signing secret shorter than 32 bytes, a database that fails its
// integrity check.
func TestStartRefusals(t *testing.T) {
	_, errOut, code := runParley(t, []string{"PARLEY_JWT_SECRET=too-short"}, "serve")
	if code == 0 || !strings.Contains(errOut, "at least 32 bytes") || !strings.Contains(errOut, "PARLEY_JWT_SECRET") {
		t.Errorf("short secret: exit %d, stderr %q", code, errOut)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "parley.db"), []byte(strings.Repeat("not a database ", 2000)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runParley(t, []string{"PARLEY_DATA_DIR=" + dir}, "serve")
	if code == 0 || !strings.Contains(errOut, "corrupt") {
		t.Errorf("corrupt database: exit %d, stderr %q", code, errOut)
	}
}
