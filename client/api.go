package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Register creates an account and a session. On success the Client keeps the
// new token for later requests.
func (c *Client) Register(ctx context.Context, r Register) (*Auth, error) {
	var out Auth
	if _, err := c.do(ctx, http.MethodPost, "/api/auth/register", r, &out, authNone); err != nil {
		return nil, err
	}
	c.SetToken(out.Token)
	return &out, nil
}

// Login opens a session. On success the Client keeps the new token for later
// requests.
func (c *Client) Login(ctx context.Context, username, password string) (*Auth, error) {
	body := struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}{username, password}
	var out Auth
	if _, err := c.do(ctx, http.MethodPost, "/api/auth/login", body, &out, authNone); err != nil {
		return nil, err
	}
	c.SetToken(out.Token)
	return &out, nil
}

// Logout revokes the current session; its open streams receive
// "session.expired". The Client forgets its token.
func (c *Client) Logout(ctx context.Context) error {
	if _, err := c.do(ctx, http.MethodPost, "/api/auth/logout", nil, nil, authToken); err != nil {
		return err
	}
	c.SetToken("")
	return nil
}

// Activity marks the session as in use, deferring idle logout.
func (c *Client) Activity(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodPost, "/api/auth/activity", nil, nil, authToken)
	return err
}

// Me returns the caller's own account.
func (c *Client) Me(ctx context.Context) (*User, error) {
	var out User
	if _, err := c.do(ctx, http.MethodGet, "/api/me", nil, &out, authToken); err != nil {
		return nil, err
	}
	return &out, nil
}

// Users lists users, filtered by role when role is not "".
func (c *Client) Users(ctx context.Context, role string) ([]User, error) {
	path := "/api/users"
	if role != "" {
		path += "?role=" + url.QueryEscape(role)
	}
	var out struct {
		Users []User `json:"users"`
	}
	if _, err := c.do(ctx, http.MethodGet, path, nil, &out, authToken); err != nil {
		return nil, err
	}
	return out.Users, nil
}

// User returns one user by id.
func (c *Client) User(ctx context.Context, id string) (*User, error) {
	var out User
	if _, err := c.do(ctx, http.MethodGet, "/api/users/"+pathEscape(id), nil, &out, authToken); err != nil {
		return nil, err
	}
	return &out, nil
}

// Publish appends one durable event of type typ (which must start with
// "app.") to the log of each user in userIDs, authenticated with the API key.
// data is encoded as JSON (a json.RawMessage is sent as is). It returns the
// event id assigned in each user's log.
func (c *Client) Publish(ctx context.Context, userIDs []string, typ string, data any) (map[string]int64, error) {
	body := struct {
		UserIDs []string `json:"user_ids"`
		Type    string   `json:"type"`
		Data    any      `json:"data"`
	}{userIDs, typ, data}
	var out struct {
		IDs map[string]int64 `json:"ids"`
	}
	if _, err := c.do(ctx, http.MethodPost, "/api/publish", body, &out, authKey); err != nil {
		return nil, err
	}
	return out.IDs, nil
}

// CreateConversation opens a conversation with a professional and posts its
// first message. Only users with role "client" may do this.
func (c *Client) CreateConversation(ctx context.Context, r CreateConversation) (*Conversation, error) {
	var out Conversation
	if _, err := c.do(ctx, http.MethodPost, "/api/conversations", r, &out, authToken); err != nil {
		return nil, err
	}
	return &out, nil
}

// Conversations lists the caller's conversations, newest activity first.
func (c *Client) Conversations(ctx context.Context) ([]Conversation, error) {
	var out struct {
		Conversations []Conversation `json:"conversations"`
	}
	if _, err := c.do(ctx, http.MethodGet, "/api/conversations", nil, &out, authToken); err != nil {
		return nil, err
	}
	return out.Conversations, nil
}

// Conversation returns one of the caller's conversations.
func (c *Client) Conversation(ctx context.Context, id string) (*Conversation, error) {
	var out Conversation
	if _, err := c.do(ctx, http.MethodGet, "/api/conversations/"+pathEscape(id), nil, &out, authToken); err != nil {
		return nil, err
	}
	return &out, nil
}

// Messages returns a page of a conversation's messages in ascending seq order.
func (c *Client) Messages(ctx context.Context, convID string, q MessagesQuery) (*MessagePage, error) {
	v := url.Values{}
	if q.BeforeSeq > 0 {
		v.Set("before_seq", strconv.FormatInt(q.BeforeSeq, 10))
	}
	if q.AfterSeq > 0 {
		v.Set("after_seq", strconv.FormatInt(q.AfterSeq, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	path := "/api/conversations/" + pathEscape(convID) + "/messages"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out MessagePage
	if _, err := c.do(ctx, http.MethodGet, path, nil, &out, authToken); err != nil {
		return nil, err
	}
	return &out, nil
}

// SendMessage posts a message. Retrying with the same ClientID is safe: the
// server answers with the original message and emits no second event.
func (c *Client) SendMessage(ctx context.Context, convID string, m SendMessage) (*Message, error) {
	var out Message
	if _, err := c.do(ctx, http.MethodPost, "/api/conversations/"+pathEscape(convID)+"/messages", m, &out, authToken); err != nil {
		return nil, err
	}
	return &out, nil
}

// EditMessage replaces the body of one of the caller's messages.
func (c *Client) EditMessage(ctx context.Context, msgID, body string) (*Message, error) {
	in := struct {
		Body string `json:"body"`
	}{body}
	var out Message
	if _, err := c.do(ctx, http.MethodPatch, "/api/messages/"+pathEscape(msgID), in, &out, authToken); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteMessage deletes one of the caller's messages and returns its tombstone.
func (c *Client) DeleteMessage(ctx context.Context, msgID string) (*Message, error) {
	var out Message
	if _, err := c.do(ctx, http.MethodDelete, "/api/messages/"+pathEscape(msgID), nil, &out, authToken); err != nil {
		return nil, err
	}
	return &out, nil
}

// MarkRead moves the caller's read marker of a conversation forward to upToSeq.
func (c *Client) MarkRead(ctx context.Context, convID string, upToSeq int64) error {
	in := struct {
		UpToSeq int64 `json:"up_to_seq"`
	}{upToSeq}
	_, err := c.do(ctx, http.MethodPost, "/api/conversations/"+pathEscape(convID)+"/read", in, nil, authToken)
	return err
}

// Typing announces that the caller started ("start") or stopped ("stop") typing.
func (c *Client) Typing(ctx context.Context, convID, state string) error {
	in := struct {
		State string `json:"state"`
	}{state}
	_, err := c.do(ctx, http.MethodPost, "/api/conversations/"+pathEscape(convID)+"/typing", in, nil, authToken)
	return err
}

// StartCall rings the other participant of a conversation; media is "audio" or "video".
func (c *Client) StartCall(ctx context.Context, convID, media string) (*Call, error) {
	in := struct {
		Media string `json:"media"`
	}{media}
	var out Call
	if _, err := c.do(ctx, http.MethodPost, "/api/conversations/"+pathEscape(convID)+"/calls", in, &out, authToken); err != nil {
		return nil, err
	}
	return &out, nil
}

// AcceptCall accepts a ringing call (callee only).
func (c *Client) AcceptCall(ctx context.Context, callID string) (*Call, error) {
	return c.callAction(ctx, callID, "accept")
}

// DeclineCall declines a ringing call (callee only).
func (c *Client) DeclineCall(ctx context.Context, callID string) (*Call, error) {
	return c.callAction(ctx, callID, "decline")
}

// EndCall ends a ringing or active call (either party).
func (c *Client) EndCall(ctx context.Context, callID string) (*Call, error) {
	return c.callAction(ctx, callID, "end")
}

func (c *Client) callAction(ctx context.Context, callID, action string) (*Call, error) {
	var out Call
	if _, err := c.do(ctx, http.MethodPost, "/api/calls/"+pathEscape(callID)+"/"+action, nil, &out, authToken); err != nil {
		return nil, err
	}
	return &out, nil
}

// Signal relays a WebRTC payload (offer, answer, ICE candidate…) to the other
// party of a call as a "call.signal" event. payload is encoded as JSON.
func (c *Client) Signal(ctx context.Context, callID string, payload any) error {
	in := struct {
		Payload any `json:"payload"`
	}{payload}
	_, err := c.do(ctx, http.MethodPost, "/api/calls/"+pathEscape(callID)+"/signal", in, nil, authToken)
	return err
}

// Config returns the server's public client settings (heartbeat, idle logout,
// limits) as the JSON object the server sends.
func (c *Client) Config(ctx context.Context) (map[string]json.RawMessage, error) {
	var out map[string]json.RawMessage
	if _, err := c.do(ctx, http.MethodGet, "/api/config", nil, &out, authNone); err != nil {
		return nil, err
	}
	return out, nil
}

// Poll returns the durable events after id after, waiting up to wait (rounded
// up to whole seconds; the server caps it at 30 s) when there are none. wait 0
// uses the server's default of 25 s and a negative wait asks for an immediate
// answer. ctx must allow for the wait.
func (c *Client) Poll(ctx context.Context, after int64, wait time.Duration) (*PollResult, error) {
	v := url.Values{}
	v.Set("after", strconv.FormatInt(after, 10))
	switch {
	case wait < 0:
		v.Set("wait", "0")
	case wait > 0:
		secs := int64((wait + time.Second - 1) / time.Second)
		v.Set("wait", strconv.FormatInt(secs, 10))
	}
	var out PollResult
	if _, err := c.do(ctx, http.MethodGet, "/api/events/poll?"+v.Encode(), nil, &out, authToken); err != nil {
		return nil, err
	}
	return &out, nil
}

// Ready reports whether the server answers GET /readyz with 200, that is its
// store is reachable (a bus outage shows in /metrics, not here).
func (c *Client) Ready(ctx context.Context) error {
	_, err := c.do(ctx, http.MethodGet, "/readyz", nil, nil, authNone)
	return err
}
