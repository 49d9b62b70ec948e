package store

import (
	"fmt"

	"github.com/parley-chat/parley"
)

// UpdateProfile sets the user's display name and bio, each only when not
// nil, and returns the user as stored afterwards.
func (tx *Tx) UpdateProfile(userID string, displayName, bio *string) (*parley.User, error) {
	tx.userChanged(userID)
	if displayName != nil {
		if _, err := tx.exec(`UPDATE users SET display_name = ? WHERE id = ?`, *displayName, userID); err != nil {
			return nil, fmt.Errorf("update display name: %w", err)
		}
	}
	if bio != nil {
		if _, err := tx.exec(`UPDATE users SET bio = ? WHERE id = ?`, *bio, userID); err != nil {
			return nil, fmt.Errorf("update bio: %w", err)
		}
	}
	return tx.UserByID(userID)
}
