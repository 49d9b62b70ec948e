package chat

import (
	"context"
	"errors"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// SystemMessage posts a message from the app's backend into a conversation
// (POST /api/server/conversations/{id}/messages): kind system, no sender,
// delivered to both participants like any message. A retry with the same
// client_id answers the original with created false and writes no event.
func (s *Service) SystemMessage(ctx context.Context, convID string, req Message) (msg *parley.Message, created bool, err error) {
	req.ReplyToID = ""
	if err := s.validMessage("", &req); err != nil {
		return nil, false, err
	}
	retry := func(tx *store.Tx) error {
		prev, err := tx.MessageByClientID(nil, req.ClientID)
		if err != nil {
			return err
		}
		if prev.ConversationID != convID {
			return parley.Errorf(parley.EConflict, "client_id was already used in another conversation")
		}
		msg, created = prev, false
		return nil
	}
	err = s.store.Update(ctx, func(tx *store.Tx) error {
		msg, created = nil, false
		client, pro, err := tx.Participants(convID)
		if err != nil {
			return err
		}
		if req.ClientID != "" {
			if err := retry(tx); !errors.Is(err, parley.NotFound) {
				return err
			}
		}
		m, err := s.insertMessage(tx, convID, nil, &req, nil, store.Now())
		if err != nil {
			return err
		}
		if err := tx.AppendJSON(parley.EventMessageCreated, m, client, pro); err != nil {
			return err
		}
		if err := s.messageCreated(tx, m, client, pro); err != nil {
			return err
		}
		msg, created = m, true
		return nil
	})
	if errors.Is(err, store.ErrDuplicate) {
		err = s.store.View(ctx, retry)
	}
	if err != nil {
		return nil, false, err
	}
	return msg, created, nil
}

// eraseChunk is how many messages one transaction of an erasure tombstones.
const eraseChunk = 500

// Erase removes a user (DELETE /api/server/users/{external_id}): their
// sessions end, each message they sent becomes a tombstone through the one
// delete path (so every copy of its text that a delete redacts is redacted
// here too) with message.deleted to the peer, their event log is deleted,
// and the account keeps only its id and role, so the peer's conversations
// still name someone. It returns the ids of the sessions it ended, whose
// open streams the caller tells.
//
// The steps commit one after another. The first marks the account erased,
// so no token gets it a session again while the rest runs (a message sent
// after the tombstones would escape them); a crash in between leaves it
// marked, refused everywhere and still found by its external id, and
// erasing again finishes.
func (s *Service) Erase(ctx context.Context, userID string) (sessions []string, err error) {
	err = s.store.Update(ctx, func(tx *store.Tx) (err error) {
		if err := tx.MarkErased(userID, store.Now()); err != nil {
			return err
		}
		sessions, err = tx.RevokeUserSessions(userID)
		return err
	})
	if err != nil {
		return nil, err
	}
	for {
		var more bool
		var files []string
		err := s.store.Update(ctx, func(tx *store.Tx) error {
			msgs, err := tx.LiveMessagesBy(userID, eraseChunk)
			if err != nil {
				return err
			}
			more = len(msgs) == eraseChunk
			ids := make([]string, len(msgs))
			convs := make([]string, len(msgs))
			for i, m := range msgs {
				ids[i], convs[i] = m.ID, m.ConversationID
			}
			if err := s.lockForWebhooks(tx, "", convs...); err != nil { // it drops the messages' webhooks
				return err
			}
			var tombs []*parley.Message
			tombs, files, err = Tombstone(tx, ids...)
			if err != nil {
				return err
			}
			return s.deleted(tx, tombs)
		})
		if err != nil {
			return sessions, err
		}
		if len(files) > 0 && s.opts.Files != nil {
			s.opts.Files.Remove(files)
		}
		if !more {
			break
		}
	}
	// The embedded store's newest events sit in a tail that RemoveLog
	// merges whole; drained in steps first, its transaction finds little.
	for range 1000 {
		var more bool
		if err := s.store.Update(ctx, func(tx *store.Tx) (err error) {
			more, err = tx.MergeTailStep(4096)
			return err
		}); err != nil {
			return sessions, err
		}
		if !more {
			break
		}
	}
	// The last step, in one transaction: a crash before it leaves the
	// account marked and found by its external id, to erase again. The
	// unsent webhooks are scrubbed here rather than earlier so that none
	// written meanwhile (a message.unread from the users row as it still
	// was) escapes; whether webhooks are on or not, since failed ones may
	// be left from when they were.
	err = s.store.Update(ctx, func(tx *store.Tx) error {
		convs, err := tx.ConversationIDsOf(userID)
		if err != nil {
			return err
		}
		// Before the log heads' locks (RemoveLog): docs/architecture.md.
		if err := tx.LockConversations(convs...); err != nil {
			return err
		}
		if err := tx.ScrubWebhooksOf(userID, time.Now()); err != nil {
			return err
		}
		if err := tx.RemoveLog(userID); err != nil {
			return err
		}
		return tx.EraseUser(userID, store.Now())
	})
	return sessions, err
}
