package client

import (
	"encoding/json"
	"time"
)

// Roles of a user.
const (
	RoleClient       = "client"
	RoleProfessional = "professional"
)

// User is a Parley account as other users see it. Parley's own accounts
// have a Username; users of the app Parley is part of have an ExternalID
// (the app's id for them) and Username "" (null on the wire).
type User struct {
	ID          string     `json:"id"`
	Username    string     `json:"username"`
	ExternalID  string     `json:"external_id"`
	DisplayName string     `json:"display_name"`
	Role        string     `json:"role"`
	Online      bool       `json:"online"`
	LastSeen    *time.Time `json:"last_seen"`
}

// Auth is the answer to Register and Login.
type Auth struct {
	User      User      `json:"user"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Register is the body of POST /api/auth/register.
type Register struct {
	Username    string `json:"username"`
	Password    string `json:"password"`
	DisplayName string `json:"display_name,omitempty"`
	Role        string `json:"role"`
}

// ReplyTo is the quoted message a message answers. SenderID is "" when it
// quotes a system message.
type ReplyTo struct {
	ID       string `json:"id"`
	SenderID string `json:"sender_id"`
	Preview  string `json:"preview"`
}

// Message kinds.
const (
	KindUser   = "user"
	KindSystem = "system"
)

// Message is one message of a conversation. A system message (Kind
// KindSystem, posted by the app's backend) has SenderID "" (null on the
// wire).
type Message struct {
	ID             string     `json:"id"`
	ConversationID string     `json:"conversation_id"`
	Seq            int64      `json:"seq"`
	Kind           string     `json:"kind"`
	SenderID       string     `json:"sender_id"`
	Body           string     `json:"body"`
	ClientID       string     `json:"client_id,omitempty"`
	ReplyTo        *ReplyTo   `json:"reply_to"`
	CreatedAt      time.Time  `json:"created_at"`
	EditedAt       *time.Time `json:"edited_at"`
	Deleted        bool       `json:"deleted"`
}

// Conversation is a conversation between a client and a professional, with the
// read state seen from the caller's side.
type Conversation struct {
	ID               string    `json:"id"`
	Client           User      `json:"client"`
	Professional     User      `json:"professional"`
	Subject          string    `json:"subject"`
	CreatedAt        time.Time `json:"created_at"`
	LastMessage      *Message  `json:"last_message"`
	UnreadCount      int64     `json:"unread_count"`
	LastReadSeq      int64     `json:"last_read_seq"`
	PeerLastReadSeq  int64     `json:"peer_last_read_seq"`
	PeerDeliveredSeq int64     `json:"peer_delivered_seq"`
}

// NewMessage is the first message posted with CreateConversation.
type NewMessage struct {
	Body     string `json:"body"`
	ClientID string `json:"client_id,omitempty"`
}

// CreateConversation is the body of POST /api/conversations. The
// professional is named by ProfessionalID or, for the app's users, by
// ProfessionalExternalID.
type CreateConversation struct {
	ProfessionalID         string     `json:"professional_id,omitempty"`
	ProfessionalExternalID string     `json:"professional_external_id,omitempty"`
	Subject                string     `json:"subject,omitempty"`
	Message                NewMessage `json:"message"`
}

// AppUser is the body of PUT /api/server/users/{external_id}: DisplayName
// "" leaves the name as it is (on creation, the external id stands in).
type AppUser struct {
	DisplayName string `json:"display_name,omitempty"`
	Role        string `json:"role"`
}

// SendMessage is the body of POST /api/conversations/{id}/messages. ClientID
// makes the send idempotent: the same sender and ClientID again returns the
// original message.
type SendMessage struct {
	Body      string `json:"body"`
	ClientID  string `json:"client_id,omitempty"`
	ReplyToID string `json:"reply_to_id,omitempty"`
}

// MessagesQuery selects a page of messages. Zero fields are left out, so the
// server's defaults apply (the newest 50).
type MessagesQuery struct {
	BeforeSeq int64
	AfterSeq  int64
	Limit     int
}

// MessagePage is a page of messages in ascending seq order.
type MessagePage struct {
	Messages []Message `json:"messages"`
	HasMore  bool      `json:"has_more"`
}

// Call states and media.
const (
	CallRinging  = "ringing"
	CallActive   = "active"
	CallDeclined = "declined"
	CallEnded    = "ended"
	CallMissed   = "missed"

	MediaAudio = "audio"
	MediaVideo = "video"
)

// Call is the signalling state of an audio or video call.
type Call struct {
	ID             string     `json:"id"`
	ConversationID string     `json:"conversation_id"`
	CallerID       string     `json:"caller_id"`
	CalleeID       string     `json:"callee_id"`
	Media          string     `json:"media"`
	State          string     `json:"state"`
	CreatedAt      time.Time  `json:"created_at"`
	AnsweredAt     *time.Time `json:"answered_at"`
	EndedAt        *time.Time `json:"ended_at"`
}

// Receipt is the data of a "receipt" event.
type Receipt struct {
	ConversationID string    `json:"conversation_id"`
	UserID         string    `json:"user_id"`
	Kind           string    `json:"kind"` // "delivered" or "read"
	UpToSeq        int64     `json:"up_to_seq"`
	At             time.Time `json:"at"`
}

// CallSignal is the data of a "call.signal" event.
type CallSignal struct {
	CallID     string          `json:"call_id"`
	FromUserID string          `json:"from_user_id"`
	Payload    json.RawMessage `json:"payload"`
}

// Typing is the data of a "typing" event.
type Typing struct {
	ConversationID string `json:"conversation_id"`
	UserID         string `json:"user_id"`
	State          string `json:"state"` // "start" or "stop"
}

// Presence is the data of a "presence" event.
type Presence struct {
	UserID   string     `json:"user_id"`
	Online   bool       `json:"online"`
	LastSeen *time.Time `json:"last_seen"`
}

// Ready is the data of the "ready" event that opens every stream.
type Ready struct {
	UserID     string    `json:"user_id"`
	LastID     int64     `json:"last_id"`
	ServerTime time.Time `json:"server_time"`
}

// Reset is the data of a "reset" event: the resume point could not be served
// and the stream continues live after LastID. Re-read state over REST.
type Reset struct {
	Reason string `json:"reason"`
	LastID int64  `json:"last_id"`
}

// PollEvent is one durable event returned by Poll.
type PollEvent struct {
	ID   int64           `json:"id"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
	Time time.Time       `json:"time"`
}

// PollResult is the answer to Poll. LastID is the resume point for the next
// poll. Reset is set when after lay outside the log (older than what is kept,
// or past its head): the events in between are not coming, so re-read state
// over REST before polling on from LastID.
type PollResult struct {
	Events []PollEvent `json:"events"`
	LastID int64       `json:"last_id"`
	Reset  *Reset      `json:"reset,omitempty"`
}

// Event types of the stream.
const (
	EventReady               = "ready"
	EventReset               = "reset"
	EventSessionExpired      = "session.expired"
	EventTyping              = "typing"
	EventPresence            = "presence"
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
