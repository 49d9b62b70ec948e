package store

import (
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley"
)

// ErrFull is what a write gets when the disk, or the database's own size
// limit, is full: 503, so that clients retry later and keep what they
// were sending, rather than a 500 that reads as a bug. Nothing committed
// before is lost; the write that failed was rolled back whole.
var ErrFull = &parley.Error{Code: parley.EUnavailable, Message: "the server's storage is full; try again later", RetryAfter: 30 * time.Second}

// Space remembers whether writes have been failing for lack of room, so that
// readiness can say so until a write succeeds again. The zero value is a
// store with room.
type Space struct {
	full atomic.Bool
}

// Seen classifies the result of a write: an error isFull recognises becomes
// ErrFull and marks the store full; a success marks it as having room.
// Other errors are returned as they are.
func (s *Space) Seen(err error, isFull func(error) bool, log *slog.Logger) error {
	switch {
	case err == nil:
		if s.full.CompareAndSwap(true, false) {
			log.Warn("store: writes succeed again, storage has room")
		}
		return nil
	case errors.Is(err, ErrFull):
		return err
	case isFull(err):
		if !s.full.Swap(true) {
			log.Error("store: storage full, writes answer 503 until there is room again", "err", err)
		}
		return ErrFull
	}
	return err
}

// Full reports whether the last writes failed for lack of room.
func (s *Space) Full() bool { return s.full.Load() }

// probeBytes is the size of ProbeSpace's write: a few pages, so that a
// store with a page or two free is not declared to have room.
const probeBytes = 16 << 10

// ProbeSpace writes and deletes a few KiB, to learn whether a store that ran
// out of room has some again (Ping, for /readyz, while no other write
// succeeds).
func (tx *Tx) ProbeSpace() error {
	if _, err := tx.exec(`INSERT INTO space_probe (b) VALUES (?)`, make([]byte, probeBytes)); err != nil {
		return err
	}
	_, err := tx.exec(`DELETE FROM space_probe`)
	return err
}
