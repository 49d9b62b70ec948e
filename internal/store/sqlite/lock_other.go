//go:build !unix

package sqlite

import "os"

// lockFile is a no-op where flock(2) is missing: there, nothing stops a
// second process from opening the database (see lock_unix.go for why that
// is wrong).
func lockFile(string) (*os.File, error) { return nil, nil }
