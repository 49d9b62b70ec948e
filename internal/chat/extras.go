package chat

import (
	"context"
	"strings"
	"unicode/utf8"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/search"
	"github.com/parley-chat/parley/internal/store"
)

// Limits of attachments and search (see docs/chat.md).
const (
	MaxAttachments        = 10
	DefaultSearchLimit    = 20
	MaxSearchLimit        = 100
	maxAttachmentIDLength = 64
)

// validOptionalBody is validBody for a body that may be empty: a message
// with attachments, or an edit of one.
func (s *Service) validOptionalBody(field, body string) error {
	if !utf8.ValidString(body) {
		return parley.Invalid(field, "%s must be valid UTF-8", field)
	}
	if strings.IndexByte(body, 0) >= 0 {
		return parley.Invalid(field, "%s must not contain NUL characters", field)
	}
	if utf8.RuneCountInString(strings.TrimSpace(body)) > s.opts.MaxBodyChars {
		return parley.Invalid(field, "%s must be at most %d characters", field, s.opts.MaxBodyChars)
	}
	return nil
}

func validAttachmentIDs(field string, ids []string) error {
	if len(ids) > MaxAttachments {
		return parley.Invalid(field, "%s may name at most %d attachments", field, MaxAttachments)
	}
	for i, id := range ids {
		if id == "" || len(id) > maxAttachmentIDLength || strings.IndexByte(id, 0) >= 0 {
			return parley.Invalid(field, "%s[%d] is not an attachment id", field, i)
		}
		for _, prev := range ids[:i] {
			if prev == id {
				return parley.Invalid(field, "%s names %q twice", field, id)
			}
		}
	}
	return nil
}

// SearchRequest is GET /api/search.
type SearchRequest struct {
	Query          string
	ConversationID string // "" = every conversation of the caller
	Limit          int
}

// Search finds messages of the caller's conversations that contain every
// word of the query, whole or as the start of a word, ignoring case and
// accents, newest first. Deleted messages and text edited away are never
// found: the index changes with the message, in its transaction.
func (s *Service) Search(ctx context.Context, userID string, req SearchRequest) (msgs []*parley.Message, more bool, err error) {
	if len(req.Query) > search.MaxQueryBytes {
		return nil, false, parley.Invalid("q", "q must be at most %d bytes", search.MaxQueryBytes)
	}
	if !utf8.ValidString(req.Query) {
		return nil, false, parley.Invalid("q", "q must be valid UTF-8")
	}
	words := search.Words(req.Query)
	switch {
	case len(words) == 0:
		return nil, false, parley.Invalid("q", "q must contain a word (letters or digits)")
	case len(words) > search.MaxQueryWords:
		return nil, false, parley.Invalid("q", "q may have at most %d words", search.MaxQueryWords)
	}
	if req.Limit <= 0 {
		req.Limit = DefaultSearchLimit
	}
	req.Limit = min(req.Limit, MaxSearchLimit)
	err = s.store.View(ctx, func(tx *store.Tx) error {
		if req.ConversationID != "" {
			if _, err := tx.Member(req.ConversationID, userID); err != nil {
				return err
			}
		}
		msgs, more, err = tx.SearchMessages(store.SearchQuery{
			UserID: userID, Words: words, ConversationID: req.ConversationID, Limit: req.Limit,
		})
		return err
	})
	return msgs, more, err
}
