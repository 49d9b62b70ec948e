// Package parley holds the domain types shared by every part of the server:
// users, sessions, durable events, conversations, messages and calls, and the
// one error type that the HTTP layer maps to the SPEC's error shape.
//
// Nothing here touches the network or the database, so every internal package
// can import it without cycles.
package parley

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"encoding/json"
	"strings"
	"time"
)

// Roles a user can have.
const (
	RoleClient       = "client"
	RoleProfessional = "professional"
)

// User is an account as the API shows it. Online and LastSeen are filled in by
// the presence tracker, not stored with the account.
//
// Parley's own accounts have a Username and no ExternalID; users of an app
// that signs its own tokens (SPEC §9.1) have ExternalID (the token's sub)
// and no Username. An erased account keeps only its id and role, so that
// the conversations it was in still name someone.
type User struct {
	ID          string  `json:"id"`
	Username    *string `json:"username"`
	ExternalID  *string `json:"external_id"`
	DisplayName string  `json:"display_name"`
	Role        string  `json:"role"`
	Online      bool    `json:"online"`
	LastSeen    *Time   `json:"last_seen"`
	// Bio is the user's short self-description (at most MaxBioChars), "" when unset.
	Bio string `json:"bio"`

	PasswordHash []byte    `json:"-"`
	CreatedAt    time.Time `json:"-"`
	// Erased is set once the account was erased (DELETE /api/server/users/…).
	Erased bool `json:"-"`
}

// Name is the user's username, or "" for an app's user.
func (u *User) Name() string {
	if u.Username == nil {
		return ""
	}
	return *u.Username
}

// Ptr returns a pointer to a copy of s, for the optional fields of the API.
func Ptr[T any](v T) *T { return &v }

// Session is a server-side login. A token is only honoured while its session
// is neither revoked nor idle for longer than the idle timeout.
type Session struct {
	ID         string
	UserID     string
	CreatedAt  time.Time
	LastActive time.Time
	ExpiresAt  time.Time
	Revoked    bool
}

// Event is one entry of a user's durable log, or an ephemeral event when ID is 0.
// Data is the JSON payload exactly as it is sent on the wire.
type Event struct {
	UserID string          `json:"-"`
	ID     int64           `json:"id"`
	Type   string          `json:"type"`
	Data   json.RawMessage `json:"data"`
	Time   Time            `json:"time"`
}

// Durable reports whether the event belongs to the log (it has an id).
func (e *Event) Durable() bool { return e.ID > 0 }

// Event types of SPEC §3.
const (
	EventReady          = "ready"
	EventReset          = "reset"
	EventSessionExpired = "session.expired"
	EventTyping         = "typing"
	EventPresence       = "presence"

	EventConversationCreated = "conversation.created"
	EventMessageCreated      = "message.created"
	EventMessageUpdated      = "message.updated"
	EventMessageDeleted      = "message.deleted"
	EventReceipt             = "receipt"
	EventCallRinging         = "call.ringing"
	EventCallAccepted        = "call.accepted"
	EventCallDeclined        = "call.declined"
	EventCallEnded           = "call.ended"
	EventCallMissed          = "call.missed"
	EventCallSignal          = "call.signal"
)

// NewEvent is an event to append to one user's log; the log assigns its id.
type NewEvent struct {
	UserID string
	Type   string
	Data   json.RawMessage
}

// Conversation is the SPEC's conversation object; the last four fields are
// from the point of view of the user who asked.
type Conversation struct {
	ID               string   `json:"id"`
	Client           User     `json:"client"`
	Professional     User     `json:"professional"`
	Subject          string   `json:"subject"`
	CreatedAt        Time     `json:"created_at"`
	LastMessage      *Message `json:"last_message"`
	UnreadCount      int      `json:"unread_count"`
	LastReadSeq      int64    `json:"last_read_seq"`
	PeerLastReadSeq  int64    `json:"peer_last_read_seq"`
	PeerDeliveredSeq int64    `json:"peer_delivered_seq"`

	LastSeq      int64     `json:"-"`
	LastActivity time.Time `json:"-"`
}

// Peer returns the id of the other participant, or "" if userID is not one.
func (c *Conversation) Peer(userID string) string {
	switch userID {
	case c.Client.ID:
		return c.Professional.ID
	case c.Professional.ID:
		return c.Client.ID
	}
	return ""
}

// Message kinds: a participant's message, or one the app's backend posted
// (SPEC §9.2), which has no sender.
const (
	MessageUser   = "user"
	MessageSystem = "system"
)

// Message is one message of a conversation. A deleted message keeps its seq
// with an empty body. A system message has Kind MessageSystem and no SenderID.
type Message struct {
	ID             string  `json:"id"`
	ConversationID string  `json:"conversation_id"`
	Seq            int64   `json:"seq"`
	Kind           string  `json:"kind"`
	SenderID       *string `json:"sender_id"`
	Body           string  `json:"body"`
	ClientID       *string `json:"client_id"`
	ReplyTo        *Reply  `json:"reply_to"`
	CreatedAt      Time    `json:"created_at"`
	EditedAt       *Time   `json:"edited_at"`
	Deleted        bool    `json:"deleted"`
	// Attachments are the files sent with the message, in the order the
	// sender gave them; always an array on the wire, empty once deleted.
	Attachments Attachments `json:"attachments"`
}

// SentBy reports whether userID sent the message (never for a system message).
func (m *Message) SentBy(userID string) bool { return m.SenderID != nil && *m.SenderID == userID }

// Reply is the quoted preview of the message a message answers; SenderID is
// nil when it quotes a system message.
type Reply struct {
	ID       string  `json:"id"`
	SenderID *string `json:"sender_id"`
	Preview  string  `json:"preview"`
}

// ReplyPreviewChars is how much of the quoted body a reply shows.
const ReplyPreviewChars = 140

// ReplyPreview is a reply's preview of the body it quotes: its first
// ReplyPreviewChars characters.
func ReplyPreview(body string) string {
	n := 0
	for i := range body {
		if n == ReplyPreviewChars {
			return body[:i]
		}
		n++
	}
	return body
}

// Receipt is the data of a receipt event.
type Receipt struct {
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	Kind           string `json:"kind"`
	UpToSeq        int64  `json:"up_to_seq"`
	At             Time   `json:"at"`
}

// Receipt kinds.
const (
	ReceiptDelivered = "delivered"
	ReceiptRead      = "read"
)

// Call is a call between the two participants of a conversation.
type Call struct {
	ID             string `json:"id"`
	ConversationID string `json:"conversation_id"`
	CallerID       string `json:"caller_id"`
	CalleeID       string `json:"callee_id"`
	Media          string `json:"media"`
	State          string `json:"state"`
	CreatedAt      Time   `json:"created_at"`
	AnsweredAt     *Time  `json:"answered_at"`
	EndedAt        *Time  `json:"ended_at"`
}

// Call states.
const (
	CallRinging  = "ringing"
	CallActive   = "active"
	CallDeclined = "declined"
	CallEnded    = "ended"
	CallMissed   = "missed"
)

// NewID returns a new opaque id: prefix, underscore, 20 random base32 characters
// (100 bits), so ids are unguessable and never collide in practice.
func NewID(prefix string) string {
	var b [13]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return prefix + "_" + strings.ToLower(idEncoding.EncodeToString(b[:])[:20])
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTimeID is NewID for rows written in time order, such as messages: the
// same shape, but the characters sort as the bytes do and the first 48 bits
// are the time in milliseconds (52 random bits follow). An index on the id
// then grows at its end, where a random id dirtied a page of its own (a
// page write at each commit) for every row inserted.
func NewTimeID(prefix string) string {
	var b [13]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16) // 48 bits
	_, _ = rand.Read(b[6:])
	return prefix + "_" + timeIDEncoding.EncodeToString(b[:])[:20]
}

// timeIDEncoding is base32 with NewID's characters in ASCII order.
var timeIDEncoding = base32.NewEncoding("234567abcdefghijklmnopqrstuvwxyz").WithPadding(base32.NoPadding)
