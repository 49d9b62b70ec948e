package auth

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// ProfileUpdate is the body of PATCH /api/me: each field is changed only
// when present.
type ProfileUpdate struct {
	DisplayName *string `json:"display_name"`
	Bio         *string `json:"bio"`
}

// UpdateProfile changes the user's display name and bio and returns the
// user. A display name is trimmed and must keep 1–64 characters; a bio is
// trimmed, may be empty and holds at most parley.MaxBioChars characters.
// Neither may hold control (bar line breaks in a bio), bidirectional or
// zero-width characters, which would let a name pass for another.
func (s *Service) UpdateProfile(ctx context.Context, userID string, req ProfileUpdate) (*parley.User, error) {
	if req.DisplayName != nil {
		name, err := parley.DisplayName(*req.DisplayName)
		if err != nil {
			return nil, err
		}
		req.DisplayName = &name
	}
	if req.Bio != nil {
		bio := strings.TrimSpace(strings.ReplaceAll(*req.Bio, "\r\n", "\n"))
		if err := checkText("bio", bio, true); err != nil {
			return nil, err
		}
		if utf8.RuneCountInString(bio) > parley.MaxBioChars {
			return nil, parley.Invalid("bio", "bio must be at most %d characters", parley.MaxBioChars)
		}
		req.Bio = &bio
	}
	var u *parley.User
	err := s.Store.Update(ctx, func(tx *store.Tx) (err error) {
		u, err = tx.UpdateProfile(userID, req.DisplayName, req.Bio)
		return err
	})
	return u, err
}

// checkText refuses invalid UTF-8 and the characters parley.UnsafeRune
// names; newlines only when allowed.
func checkText(field, s string, newlines bool) error {
	if !utf8.ValidString(s) {
		return parley.Invalid(field, "%s must be valid UTF-8", field)
	}
	for _, r := range s {
		if r == '\n' && newlines {
			continue
		}
		if parley.UnsafeRune(r) {
			return parley.Invalid(field, "%s must not contain control, bidirectional or zero-width characters", field)
		}
	}
	return nil
}
