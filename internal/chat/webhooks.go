package chat

import (
	"context"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// Webhook types (SPEC §9.3): the event types they share with the stream,
// and message.unread, which only a webhook carries. config.WebhookTypes
// lists them for the settings.
const (
	WebhookConversationCreated = parley.EventConversationCreated
	WebhookMessageCreated      = parley.EventMessageCreated
	WebhookMessageUpdated      = parley.EventMessageUpdated
	WebhookMessageDeleted      = parley.EventMessageDeleted
	WebhookCallMissed          = parley.EventCallMissed
	WebhookMessageUnread       = store.WebhookMessageUnread
)

// Webhooks says which changes write a webhook into the outbox (store
// migration 00013). The zero value writes none.
type Webhooks struct {
	// Types are the webhook types written; nil or empty = none (no URL).
	Types []string
	// UnreadAfter is the delay of message.unread; 0 = never.
	UnreadAfter time.Duration
}

func (w *Webhooks) on(typ string) bool {
	for _, t := range w.Types {
		if t == typ {
			return true
		}
	}
	return false
}

// webhook writes a webhook of typ into the outbox inside tx, the
// transaction of the change, when that type is configured.
func (s *Service) webhook(tx *store.Tx, typ, convID string, data any) error {
	if !s.opts.Webhooks.on(typ) {
		return nil
	}
	// The message whose text the webhook carries, for DropMessageWebhooks.
	msgID := ""
	switch d := data.(type) {
	case *parley.Message:
		if typ != WebhookMessageDeleted {
			msgID = d.ID
		}
	case *parley.Conversation:
		if d.LastMessage != nil {
			msgID = d.LastMessage.ID
		}
	}
	return tx.InsertWebhook(typ, convID, msgID, data)
}

// lockForWebhooks takes the row locks of the conversations a change is
// about to write webhooks of type typ for, before its first write
// (store.Tx.InsertWebhook says why); nothing when that type is off. With
// typ "" the change drops or rewrites webhooks (deleted), which it does
// whenever the outbox holds rows, webhooks on or off, so it always locks:
// an erasure's scrub rewrites the same rows. A send needs none: it takes
// its conversation's lock first anyway.
func (s *Service) lockForWebhooks(tx *store.Tx, typ string, convIDs ...string) error {
	if typ != "" && !s.opts.Webhooks.on(typ) {
		return nil
	}
	return tx.LockConversations(convIDs...)
}

// messageCreated writes the webhooks of a new message: message.created,
// and the message.unread watch of each recipient (both participants for a
// system message, which nobody sent).
func (s *Service) messageCreated(tx *store.Tx, m *parley.Message, recipients ...string) error {
	if err := s.webhook(tx, WebhookMessageCreated, m.ConversationID, m); err != nil {
		return err
	}
	if s.opts.Webhooks.UnreadAfter <= 0 || !s.opts.Webhooks.on(WebhookMessageUnread) {
		return nil
	}
	due := time.Now().Add(s.opts.Webhooks.UnreadAfter)
	for _, u := range recipients {
		if err := tx.ArmUnread(m.ConversationID, u, m.ID, due); err != nil {
			return err
		}
	}
	return nil
}

// UnreadData is the data of a message.unread webhook.
type UnreadData struct {
	User           *parley.User    `json:"user"`
	ConversationID string          `json:"conversation_id"`
	Message        *parley.Message `json:"message"`
	UnreadCount    int64           `json:"unread_count"`
}

const unreadBatch = 100

// FireUnread writes message.unread for every watch that is due: a message
// its recipient has still not read after Webhooks.UnreadAfter. Each watch
// fires once, until the recipient reads the conversation (MarkRead clears
// it). It is safe to run on every node: firing is conditional on the watch
// not having fired, so exactly one node writes the webhook.
func (s *Service) FireUnread(ctx context.Context) {
	if s.opts.Webhooks.UnreadAfter <= 0 || !s.opts.Webhooks.on(WebhookMessageUnread) {
		return
	}
	var due bool
	err := s.store.View(ctx, func(tx *store.Tx) error {
		ws, err := tx.DueUnread(time.Now(), 1)
		due = len(ws) > 0
		return err
	})
	if err != nil || !due {
		if err != nil {
			s.log.Warn("message.unread sweep", "err", err)
		}
		return
	}
	for {
		n := 0
		err := s.store.Update(ctx, func(tx *store.Tx) error {
			ws, err := tx.DueUnread(time.Now(), unreadBatch)
			n = len(ws)
			if err != nil {
				return err
			}
			convs := make([]string, len(ws))
			for i, w := range ws {
				convs[i] = w.ConversationID
			}
			if err := s.lockForWebhooks(tx, WebhookMessageUnread, convs...); err != nil {
				return err
			}
			for _, w := range ws {
				if err := s.fireUnread(tx, w); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			s.log.Warn("message.unread sweep", "err", err)
			return
		}
		if n < unreadBatch {
			return
		}
	}
}

func (s *Service) fireUnread(tx *store.Tx, w store.UnreadWatch) error {
	ok, err := tx.FireUnread(w.ConversationID, w.UserID)
	if err != nil || !ok {
		return err
	}
	c, err := tx.ConversationView(w.ConversationID, w.UserID)
	if err != nil {
		// The user or conversation is gone (an erasure): nothing to tell.
		return tx.ClearUnread(w.ConversationID, w.UserID)
	}
	erased, err := tx.Erased(w.UserID)
	if err != nil {
		return err
	}
	if erased {
		// Nothing is told about an erased user, nor, while the erasure
		// runs, with their name and external id still in the row.
		return tx.ClearUnread(w.ConversationID, w.UserID)
	}
	m, err := tx.MessageByID(w.MessageID)
	if err == nil && m.Deleted {
		// Nothing may follow its message.deleted: the webhook tells of
		// the newest message instead, if that one is still unread (and
		// not the recipient's own).
		m = c.LastMessage
		if m != nil && m.SentBy(w.UserID) {
			m = nil
		}
	}
	if err != nil || m == nil || m.Deleted || m.Seq <= c.LastReadSeq || c.UnreadCount == 0 {
		// Read meanwhile by a path that did not clear the watch.
		return tx.ClearUnread(w.ConversationID, w.UserID)
	}
	user := &c.Client
	if c.Professional.ID == w.UserID {
		user = &c.Professional
	}
	return tx.InsertWebhook(WebhookMessageUnread, w.ConversationID, m.ID, UnreadData{
		User: user, ConversationID: w.ConversationID, Message: m, UnreadCount: int64(c.UnreadCount),
	})
}
