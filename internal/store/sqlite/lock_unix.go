//go:build unix

package sqlite

import (
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive lock on path+".lock" for as long as the
// store is open, so that a second process (or a second Open in this one)
// on the same database fails at once. Two would each keep their own log
// heads and their own tail (store.HeadCache, store.Tail): ids would
// collide, and neither would see the other's newest events. The kernel
// drops the lock when the process dies, so a crash never leaves it behind.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock database: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("database %s is in use by another parley process (several nodes share PostgreSQL, not a SQLite file): %w", path, err)
	}
	return f, nil
}
