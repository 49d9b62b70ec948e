// Package chat is the business of SPEC §4 and §5: conversations between a
// client and a professional, their messages, read and delivered receipts,
// typing, and call signalling.
//
// Every change goes through store.Update together with the durable events it
// causes, appended to both participants' logs in the same transaction, so an
// event exists if and only if its change does. Typing is the one thing that
// is not stored: it goes to open streams through a Notifier.
package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// Notifier sends ephemeral events (no id, never in the log) to the open
// streams of users. *stream.Hub is one; a multi-node setup passes one that
// also forwards over its bus.
type Notifier interface {
	Ephemeral(typ string, data []byte, userIDs ...string)
}

// Presence fills in users' online and last_seen.
type Presence interface {
	Decorate(users ...*parley.User)
}

// Options are the limits and timers of the service.
type Options struct {
	// MaxBodyChars bounds a message body, in characters after trimming; 4000.
	MaxBodyChars int
	// CallTimeout is how long a call rings before it is missed; 30s.
	CallTimeout time.Duration
	// MaxSignalBytes bounds the call.signal payload bytes each party of a
	// call may write to the log (the events are durable); 1 MiB, some
	// twenty times what a negotiation with renegotiations takes.
	MaxSignalBytes int64
	// TypingThrottle is how soon a repeated typing start is forwarded again; 2.5s.
	TypingThrottle time.Duration
	// Files removes the stored bytes of attachments whose rows a deletion
	// removed, once it has committed; nil when the store keeps them in the
	// database.
	Files Files
	// Webhooks are the webhooks changes write into the outbox; none by default.
	Webhooks Webhooks
}

// Files is where a store that keeps attachments outside the database
// (SQLite: files in the data dir) removes them.
type Files interface {
	Remove(ids []string)
}

// Limits of request fields the SPEC leaves open (see docs/chat.md).
const (
	MaxSubjectChars  = 200
	MaxClientIDBytes = 200
	MaxSignalPayload = 64 << 10
	// DefaultMaxSignalBytes is Options.MaxSignalBytes unless set.
	DefaultMaxSignalBytes = 1 << 20
	DefaultPageSize       = 50
	MaxPageSize           = 200
	MaxConversations      = 500
	defaultTypingWait     = 2500 * time.Millisecond
)

// Service runs the chat rules. Its methods are safe for concurrent use.
type Service struct {
	store    store.Store
	notify   Notifier
	presence Presence
	log      *slog.Logger
	opts     Options

	typing    typingThrottle
	delivered deliveredQueue
	resumes   resumeQueue
}

// New returns a Service. notify and presence may be nil (no typing events,
// everyone shown offline).
func New(st store.Store, notify Notifier, presence Presence, opts Options, logger *slog.Logger) *Service {
	if opts.MaxBodyChars <= 0 {
		opts.MaxBodyChars = 4000
	}
	if opts.MaxSignalBytes <= 0 {
		opts.MaxSignalBytes = DefaultMaxSignalBytes
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 30 * time.Second
	}
	if opts.TypingThrottle <= 0 {
		opts.TypingThrottle = defaultTypingWait
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Service{
		store: st, notify: notify, presence: presence, log: logger, opts: opts,
		typing:    typingThrottle{every: opts.TypingThrottle, last: make(map[typingKey]typingMark)},
		delivered: deliveredQueue{pending: make(map[deliveredKey]int64)},
	}
}

// Message is the body of a new message: POST …/messages, and the first
// message of POST /api/conversations.
type Message struct {
	Body      string `json:"body"`
	ClientID  string `json:"client_id"`
	ReplyToID string `json:"reply_to_id"`
	// AttachmentIDs are uploads of the sender to the conversation (at
	// most MaxAttachments, each sent once); with any, Body may be empty.
	AttachmentIDs []string `json:"attachment_ids"`
}

// Opening is the body of POST /api/conversations. The professional is
// named by Parley's id or, for an app's users, by the app's own id
// (professional_external_id, SPEC §9.1); one of the two is required.
type Opening struct {
	ProfessionalID         string   `json:"professional_id"`
	ProfessionalExternalID string   `json:"professional_external_id"`
	Subject                string   `json:"subject"`
	Message                *Message `json:"message"`
}

// professional finds the professional an opening names, or answers 404.
func (req *Opening) professional(tx *store.Tx) (*parley.User, error) {
	var pro *parley.User
	var err error
	if req.ProfessionalID != "" {
		pro, err = tx.UserByID(req.ProfessionalID)
	} else {
		pro, err = tx.UserByExternalID(req.ProfessionalExternalID)
	}
	if errors.Is(err, parley.NotFound) || (err == nil && (pro.Role != parley.RoleProfessional || pro.Erased)) {
		return nil, parley.Errorf(parley.ENotFound, "no professional with that id")
	}
	return pro, err
}

// validBody applies the SPEC's body rule: 1–MaxBodyChars characters once
// surrounding white space is trimmed. The body itself is kept as sent.
func (s *Service) validBody(field, body string) error {
	if !utf8.ValidString(body) {
		return parley.Invalid(field, "%s must be valid UTF-8", field)
	}
	if strings.IndexByte(body, 0) >= 0 {
		// PostgreSQL cannot store NUL in TEXT; refusing it everywhere keeps
		// the two stores answering alike.
		return parley.Invalid(field, "%s must not contain NUL characters", field)
	}
	n := utf8.RuneCountInString(strings.TrimSpace(body))
	if n == 0 {
		return parley.Invalid(field, "%s must not be empty", field)
	}
	if n > s.opts.MaxBodyChars {
		return parley.Invalid(field, "%s must be at most %d characters", field, s.opts.MaxBodyChars)
	}
	return nil
}

func validClientID(field, id string) error {
	if len(id) > MaxClientIDBytes || strings.IndexByte(id, 0) >= 0 {
		return parley.Invalid(field, "%s must be at most %d bytes without NUL", field, MaxClientIDBytes)
	}
	return nil
}

func (s *Service) validMessage(prefix string, m *Message) error {
	if err := validAttachmentIDs(prefix+"attachment_ids", m.AttachmentIDs); err != nil {
		return err
	}
	if len(m.AttachmentIDs) > 0 {
		if err := s.validOptionalBody(prefix+"body", m.Body); err != nil {
			return err
		}
	} else if err := s.validBody(prefix+"body", m.Body); err != nil {
		return err
	}
	if err := validClientID(prefix+"client_id", m.ClientID); err != nil {
		return err
	}
	if strings.IndexByte(m.ReplyToID, 0) >= 0 {
		return parley.Invalid(prefix+"reply_to_id", "reply_to_id must name a message of this conversation")
	}
	return nil
}

// Open starts a conversation from a client with a professional together
// with its first message. A retry with the first message's client_id
// answers the conversation it created (created is false then).
func (s *Service) Open(ctx context.Context, caller *parley.User, req Opening) (c *parley.Conversation, created bool, err error) {
	if caller.Role != parley.RoleClient {
		return nil, false, parley.Errorf(parley.ERoleForbidden, "only clients open conversations")
	}
	switch {
	case req.ProfessionalID == "" && req.ProfessionalExternalID == "":
		return nil, false, parley.Invalid("professional_id", "professional_id or professional_external_id is required")
	case req.Message == nil:
		return nil, false, parley.Invalid("message", "message is required")
	case utf8.RuneCountInString(req.Subject) > MaxSubjectChars || strings.IndexByte(req.Subject, 0) >= 0:
		return nil, false, parley.Invalid("subject", "subject must be at most %d characters", MaxSubjectChars)
	}
	if req.Message.ReplyToID != "" {
		return nil, false, parley.Invalid("message.reply_to_id", "the first message cannot reply to another")
	}
	if len(req.Message.AttachmentIDs) > 0 {
		// Uploads go to a conversation, which does not exist yet.
		return nil, false, parley.Invalid("message.attachment_ids", "the first message cannot carry attachments")
	}
	if err := s.validMessage("message.", req.Message); err != nil {
		return nil, false, err
	}
	subject := strings.TrimSpace(req.Subject)

	err = s.store.Update(ctx, func(tx *store.Tx) error {
		c, created = nil, false
		pro, err := req.professional(tx)
		if err != nil {
			return err
		}
		if id := req.Message.ClientID; id != "" {
			if prev, err := tx.MessageByClientID(&caller.ID, id); err == nil {
				c, err = s.openRetry(tx, caller.ID, pro.ID, prev)
				return err
			} else if !errors.Is(err, parley.NotFound) {
				return err
			}
		}
		now := store.Now()
		row := &store.ConversationRow{ID: parley.NewID("conv"), ClientID: caller.ID, ProfessionalID: pro.ID, Subject: subject, CreatedAt: now}
		if err := tx.CreateConversation(row); err != nil {
			return err
		}
		msg, err := s.insertMessage(tx, row.ID, &caller.ID, req.Message, nil, now)
		if err != nil {
			return err
		}
		// Each participant gets the conversation from their own point of
		// view (unread count, markers), then its first message like any other.
		views := make([]*parley.Conversation, 2)
		evs := make([]parley.NewEvent, 0, 4)
		for i, u := range []string{caller.ID, pro.ID} {
			if views[i], err = tx.ConversationView(row.ID, u); err != nil {
				return err
			}
			s.decorate(views[i])
			b, err := json.Marshal(views[i])
			if err != nil {
				return fmt.Errorf("marshal conversation: %w", err)
			}
			evs = append(evs, parley.NewEvent{UserID: u, Type: parley.EventConversationCreated, Data: b})
		}
		mb, err := json.Marshal(msg)
		if err != nil {
			return fmt.Errorf("marshal message: %w", err)
		}
		evs = append(evs, parley.NewEvent{UserID: caller.ID, Type: parley.EventMessageCreated, Data: mb},
			parley.NewEvent{UserID: pro.ID, Type: parley.EventMessageCreated, Data: mb})
		if _, err := tx.AppendLive(evs...); err != nil {
			return err
		}
		// The webhooks carry the client's view, the one that opened it.
		if err := s.webhook(tx, WebhookConversationCreated, row.ID, views[0]); err != nil {
			return err
		}
		if err := s.messageCreated(tx, msg, pro.ID); err != nil {
			return err
		}
		c, created = views[0], true
		return nil
	})
	if errors.Is(err, store.ErrDuplicate) {
		// A concurrent retry won the race for the client_id; answer what it made.
		err = s.store.View(ctx, func(tx *store.Tx) error {
			prev, err := tx.MessageByClientID(&caller.ID, req.Message.ClientID)
			if err != nil {
				return err
			}
			pro, err := req.professional(tx)
			if err != nil {
				return err
			}
			c, err = s.openRetry(tx, caller.ID, pro.ID, prev)
			return err
		})
		created = false
	}
	if err != nil {
		return nil, false, err
	}
	return c, created, nil
}

// openRetry answers an opening whose first message's client_id was already
// used: the same opening again gets its conversation, anything else is a
// conflict.
func (s *Service) openRetry(tx *store.Tx, clientID, proID string, prev *parley.Message) (*parley.Conversation, error) {
	c, err := tx.ConversationView(prev.ConversationID, clientID)
	if err != nil {
		return nil, err
	}
	if prev.Seq != 1 || c.Professional.ID != proID {
		return nil, parley.Errorf(parley.EConflict, "client_id was already used for another message")
	}
	s.decorate(c)
	return c, nil
}

// insertMessage allocates the next seq and stores a message; a nil sender
// makes it a system message. Validation and the membership check are the
// caller's.
func (s *Service) insertMessage(tx *store.Tx, convID string, senderID *string, m *Message, reply *parley.Reply, now time.Time) (*parley.Message, error) {
	seq, err := tx.NextSeq(convID, now)
	if err != nil {
		return nil, err
	}
	return s.insertMessageAt(tx, convID, senderID, m, reply, now, seq)
}

// insertMessageAt is insertMessage with the seq allocated already.
func (s *Service) insertMessageAt(tx *store.Tx, convID string, senderID *string, m *Message, reply *parley.Reply, now time.Time, seq int64) (*parley.Message, error) {
	var err error
	kind := parley.MessageUser
	if senderID == nil {
		kind = parley.MessageSystem
	}
	msg := &parley.Message{
		ID: parley.NewTimeID("msg"), ConversationID: convID, Seq: seq, Kind: kind, SenderID: senderID,
		Body: m.Body, ReplyTo: reply, CreatedAt: parley.T(now),
	}
	if m.ClientID != "" {
		id := m.ClientID
		msg.ClientID = &id
	}
	if len(m.AttachmentIDs) > 0 {
		if senderID == nil {
			// Uploads are a participant's; a system message has no sender.
			return nil, parley.Invalid("attachment_ids", "a system message cannot carry attachments")
		}
		// Before the insert, which stores the list with the message.
		if msg.Attachments, err = tx.AttachToMessage(m.AttachmentIDs, msg.ID, convID, *senderID); err != nil {
			return nil, err
		}
	}
	if err := tx.InsertMessage(msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// Send posts a message to a conversation the sender is in. A retry with the
// same client_id answers the original message with created false and writes
// no event.
func (s *Service) Send(ctx context.Context, senderID, convID string, req Message) (msg *parley.Message, created bool, err error) {
	msg, _, created, err = s.send(ctx, senderID, convID, req)
	return msg, created, err
}

// SendEncoded is Send for an answer on the wire: the message as JSON. A new
// message's is the data of its message.created events, encoded once.
func (s *Service) SendEncoded(ctx context.Context, senderID, convID string, req Message) (json.RawMessage, bool, error) {
	msg, data, created, err := s.send(ctx, senderID, convID, req)
	if err != nil || data != nil {
		return data, created, err
	}
	data, err = json.Marshal(msg)
	return data, created, err
}

// send is Send, with the new message's encoding (nil for a retry).
func (s *Service) send(ctx context.Context, senderID, convID string, req Message) (msg *parley.Message, data json.RawMessage, created bool, err error) {
	if err := s.validMessage("", &req); err != nil {
		return nil, nil, false, err
	}
	retry := func(tx *store.Tx) error {
		prev, err := tx.MessageByClientID(&senderID, req.ClientID)
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
		msg, data, created = nil, nil, false
		// The seq first, with the membership check: the conversation's
		// row stays locked to the commit either way (NextSeq says why).
		now := store.Now()
		peerID, seq, err := tx.MemberNextSeq(convID, senderID, now)
		if err != nil {
			return err
		}
		// A retry of a plain message is caught by the unique index on
		// (sender, client_id) at the insert, the first step that can fail
		// for it: one statement fewer per message. A retry with a quote or
		// attachments is looked up first, since the checks before the
		// insert would fail for it (its attachments are taken, its quote
		// may be gone) where the answer must be the original message.
		if req.ClientID != "" && (req.ReplyToID != "" || len(req.AttachmentIDs) > 0) {
			switch err := retry(tx); {
			case err == nil:
				// Answered below, once the seq taken above is rolled back.
				return store.ErrDuplicate
			case !errors.Is(err, parley.NotFound):
				return err
			}
		}
		var reply *parley.Reply
		if req.ReplyToID != "" {
			q, err := tx.MessageByID(req.ReplyToID)
			switch {
			case errors.Is(err, parley.NotFound) || (err == nil && q.ConversationID != convID):
				return parley.Invalid("reply_to_id", "reply_to_id must name a message of this conversation")
			case err != nil:
				return err
			case q.Deleted:
				return parley.Invalid("reply_to_id", "the message replied to was deleted")
			}
			reply = &parley.Reply{ID: q.ID, SenderID: q.SenderID, Preview: parley.ReplyPreview(q.Body)}
		}
		m, err := s.insertMessageAt(tx, convID, &senderID, &req, reply, now, seq)
		if err != nil {
			return err
		}
		b, err := json.Marshal(m)
		if err != nil {
			return fmt.Errorf("marshal message: %w", err)
		}
		if err := tx.AppendEncoded(parley.EventMessageCreated, b, senderID, peerID); err != nil {
			return err
		}
		if err := s.messageCreated(tx, m, peerID); err != nil {
			return err
		}
		msg, data, created = m, b, true
		return nil
	})
	if errors.Is(err, store.ErrDuplicate) {
		// On PostgreSQL the insert goes out with the COMMIT, so the
		// duplicate shows after fn returned: what it encoded was never
		// stored.
		data = nil
		err = s.store.View(ctx, retry)
	}
	if err != nil {
		return nil, nil, false, err
	}
	return msg, data, created, nil
}

// ownMessage loads a message for a change by its sender: a non-participant
// gets 404, the other participant 403 (they can see the message, so hiding
// it would be pointless), and a deleted message 409 unless allowDeleted.
func ownMessage(tx *store.Tx, userID, msgID string) (*parley.Message, *store.Member, error) {
	m, err := tx.MessageByID(msgID)
	if err != nil {
		return nil, nil, err
	}
	mem, err := tx.Member(m.ConversationID, userID)
	if err != nil {
		return nil, nil, err
	}
	if !m.SentBy(userID) {
		return nil, nil, parley.Errorf(parley.EForbidden, "only the sender can change a message")
	}
	return m, mem, nil
}

// Edit replaces the body of the caller's own message. A message with
// attachments may be left with an empty body.
func (s *Service) Edit(ctx context.Context, userID, msgID, body string) (*parley.Message, error) {
	if err := s.validOptionalBody("body", body); err != nil {
		return nil, err
	}
	var out *parley.Message
	err := s.store.Update(ctx, func(tx *store.Tx) error {
		m, mem, err := ownMessage(tx, userID, msgID)
		if err != nil {
			return err
		}
		if err := s.lockForWebhooks(tx, WebhookMessageUpdated, m.ConversationID); err != nil {
			return err
		}
		if m.Deleted {
			return parley.Errorf(parley.EConflict, "the message was deleted")
		}
		if len(m.Attachments) == 0 {
			if err := s.validBody("body", body); err != nil {
				return err
			}
		}
		now := store.Now()
		if err := tx.EditMessage(m.ID, body, now); err != nil {
			return err
		}
		m.Body, m.EditedAt = body, parley.TP(now)
		out = m
		if err := tx.AppendJSON(parley.EventMessageUpdated, m, userID, mem.PeerID); err != nil {
			return err
		}
		return s.webhook(tx, WebhookMessageUpdated, m.ConversationID, m)
	})
	return out, err
}

// Delete turns the caller's own message into a tombstone, and deletes its
// attachments: their rows in the same transaction, their files (if the
// store keeps files) once it has committed. Deleting a tombstone again
// answers it without a new event.
func (s *Service) Delete(ctx context.Context, userID, msgID string) (*parley.Message, error) {
	var out *parley.Message
	var files []string
	err := s.store.Update(ctx, func(tx *store.Tx) error {
		files = nil
		m, _, err := ownMessage(tx, userID, msgID)
		if err != nil {
			return err
		}
		if err := s.lockForWebhooks(tx, "", m.ConversationID); err != nil { // it drops the message's webhooks
			return err
		}
		out = m
		tombs, gone, err := Tombstone(tx, m.ID)
		if err == nil && len(tombs) == 1 {
			out, files = tombs[0], gone
		}
		if err != nil {
			return err
		}
		return s.deleted(tx, tombs)
	})
	if err == nil && len(files) > 0 && s.opts.Files != nil {
		s.opts.Files.Remove(files)
	}
	return out, err
}

// Tombstone is the one path by which a message loses its text: inside tx
// it turns the messages named by ids into tombstones and appends
// message.deleted to both participants' logs for each, and returns the
// tombstones. Messages already deleted are left as they are, with no
// event. A sender's delete and an erasure (Erase) both come through here,
// so whatever a delete redacts, an erasure redacts too. That includes the
// messages' attachments: their rows go here, and the ids of the ones whose
// bytes are files are returned for the caller to remove (Files.Remove) once
// tx has committed.
func Tombstone(tx *store.Tx, ids ...string) ([]*parley.Message, []string, error) {
	var out []*parley.Message
	var files []string
	peers := map[string]string{}
	for _, id := range ids {
		m, err := tx.MessageByID(id)
		if err != nil {
			return nil, nil, err
		}
		if m.Deleted || m.SenderID == nil {
			continue
		}
		peer, ok := peers[m.ConversationID]
		if !ok {
			mem, err := tx.Member(m.ConversationID, *m.SenderID)
			if err != nil {
				return nil, nil, fmt.Errorf("participants of %s: %w", m.ConversationID, err)
			}
			peer, peers[m.ConversationID] = mem.PeerID, mem.PeerID
		}
		if err := tx.DeleteMessage(m.ID); err != nil {
			return nil, nil, err
		}
		gone, err := tx.DeleteMessageAttachments(m.ID)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, gone...)
		m.Body, m.Deleted, m.ReplyTo, m.Attachments = "", true, nil, parley.Attachments{}
		if err := tx.AppendJSON(parley.EventMessageDeleted, m, *m.SenderID, peer); err != nil {
			return nil, nil, err
		}
		out = append(out, m)
	}
	return out, files, nil
}

// deleted writes the message.deleted webhooks of tombstones, and drops the
// unsent webhooks that still carry their text. Those may be left from when
// webhooks were on, so the drop runs whenever the outbox holds any.
func (s *Service) deleted(tx *store.Tx, tombs []*parley.Message) error {
	unsent, err := tx.AnyWebhooks()
	if err != nil {
		return err
	}
	now := time.Now()
	for _, m := range tombs {
		if unsent {
			if err := tx.DropMessageWebhooks(m, now); err != nil {
				return err
			}
		}
		if err := s.webhook(tx, WebhookMessageDeleted, m.ConversationID, m); err != nil {
			return err
		}
	}
	return nil
}

// Page selects a slice of a conversation's history.
type Page struct {
	BeforeSeq int64 // only messages below it; 0 = no bound
	AfterSeq  int64 // with Forward, only messages above it
	Forward   bool  // page up from AfterSeq; else the newest (below BeforeSeq)
	Limit     int
}

// Messages returns a page of history in ascending seq and whether more
// messages lie beyond it in the paging direction.
func (s *Service) Messages(ctx context.Context, userID, convID string, p Page) (msgs []*parley.Message, more bool, err error) {
	if p.Limit <= 0 {
		p.Limit = DefaultPageSize
	}
	p.Limit = min(p.Limit, MaxPageSize)
	err = s.store.View(ctx, func(tx *store.Tx) error {
		if _, err := tx.Member(convID, userID); err != nil {
			return err
		}
		msgs, more, err = tx.Messages(convID, p.BeforeSeq, p.AfterSeq, p.Forward, p.Limit)
		return err
	})
	return msgs, more, err
}

// Conversation returns one conversation from the caller's point of view.
func (s *Service) Conversation(ctx context.Context, userID, convID string) (*parley.Conversation, error) {
	var c *parley.Conversation
	err := s.store.View(ctx, func(tx *store.Tx) (err error) {
		c, err = tx.ConversationView(convID, userID)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.decorate(c)
	return c, nil
}

// Conversations lists the caller's conversations, newest activity first.
func (s *Service) Conversations(ctx context.Context, userID string, limit int) ([]*parley.Conversation, error) {
	if limit <= 0 || limit > MaxConversations {
		limit = MaxConversations
	}
	var cs []*parley.Conversation
	err := s.store.View(ctx, func(tx *store.Tx) (err error) {
		cs, err = tx.ConversationsOf(userID, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.decorate(cs...)
	return cs, nil
}

func (s *Service) decorate(cs ...*parley.Conversation) {
	if s.presence == nil {
		return
	}
	users := make([]*parley.User, 0, 2*len(cs))
	for _, c := range cs {
		users = append(users, &c.Client, &c.Professional)
	}
	s.presence.Decorate(users...)
}

// Typing forwards a typing state to both participants' open streams. A
// start renewed within the throttle is dropped: clients renew start every
// few seconds while the person types, and forwarding each renewal would only
// add traffic. A stop is always forwarded: behind a load balancer the start
// it ends may have gone through another node, and a dropped stop leaves the
// peer showing "typing…" until the start goes stale, whereas a needless one
// costs one ephemeral event.
func (s *Service) Typing(ctx context.Context, userID, convID, state string) error {
	if state != "start" && state != "stop" {
		return parley.Invalid("state", "state must be start or stop")
	}
	var peer string
	err := s.store.View(ctx, func(tx *store.Tx) error {
		mem, err := tx.Member(convID, userID)
		if err == nil {
			peer = mem.PeerID
		}
		return err
	})
	if err != nil {
		return err
	}
	if s.notify == nil || !s.typing.allow(typingKey{userID, convID}, state, time.Now()) {
		return nil
	}
	b, _ := json.Marshal(map[string]string{"conversation_id": convID, "user_id": userID, "state": state})
	s.notify.Ephemeral(parley.EventTyping, b, peer, userID)
	return nil
}

type typingKey struct{ user, conv string }

type typingMark struct {
	state string
	at    time.Time
}

// TypingSeen takes a typing event another node forwarded (data as sent to
// the streams), so that this node's throttle knows of it: a start there
// makes a renewal here within the throttle redundant, and a stop there
// means the next start here is news to the peer and goes through at once.
// Without it a start that follows a stop sent through another node would
// wait for the next renewal.
func (s *Service) TypingSeen(data []byte) {
	var ev struct {
		ConversationID string `json:"conversation_id"`
		UserID         string `json:"user_id"`
		State          string `json:"state"`
	}
	if json.Unmarshal(data, &ev) != nil || ev.UserID == "" || ev.ConversationID == "" {
		return
	}
	s.typing.seen(typingKey{ev.UserID, ev.ConversationID}, ev.State, time.Now())
}

// typingThrottle remembers when a start was last forwarded per (user,
// conversation), by this node or (TypingSeen) another. Entries older than
// the SPEC's 6 s staleness are dropped now and then, so the map only holds
// people typing right now.
type typingThrottle struct {
	every time.Duration
	mu    sync.Mutex
	last  map[typingKey]typingMark
	swept time.Time
}

const typingStale = 6 * time.Second

// allow reports whether a typing state should be forwarded: every stop,
// and a start unless one was forwarded within the throttle.
func (t *typingThrottle) allow(k typingKey, state string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	if state == "stop" {
		delete(t.last, k)
		return true
	}
	if prev, ok := t.last[k]; ok && now.Sub(prev.at) < t.every {
		return false
	}
	t.last[k] = typingMark{state: state, at: now}
	return true
}

// seen records a typing state forwarded by another node.
func (t *typingThrottle) seen(k typingKey, state string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sweep(now)
	switch state {
	case "stop":
		delete(t.last, k)
	case "start":
		t.last[k] = typingMark{state: state, at: now}
	}
}

func (t *typingThrottle) sweep(now time.Time) {
	if now.Sub(t.swept) <= typingStale {
		return
	}
	for key, m := range t.last {
		if now.Sub(m.at) > typingStale {
			delete(t.last, key)
		}
	}
	t.swept = now
}
