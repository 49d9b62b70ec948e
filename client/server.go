package client

import (
	"context"
	"net/http"
	"time"
)

// The server API (for the backend of the app Parley is part of): users by
// the app's own ids, Parley tokens for them, and system messages. Every
// call uses the API key (WithAPIKey); user tokens are refused.

// PutUser creates or updates the app's user with externalID (the sub of
// the tokens the app signs for them) and reports whether it was created.
func (c *Client) PutUser(ctx context.Context, externalID string, u AppUser) (user *User, created bool, err error) {
	var out User
	code, err := c.do(ctx, http.MethodPut, "/api/server/users/"+pathEscape(externalID), u, &out, authKey)
	if err != nil {
		return nil, false, err
	}
	return &out, code == http.StatusCreated, nil
}

// GetUser returns the app's user with externalID (404 if there is none).
func (c *Client) GetUser(ctx context.Context, externalID string) (*User, error) {
	var out User
	if _, err := c.do(ctx, http.MethodGet, "/api/server/users/"+pathEscape(externalID), nil, &out, authKey); err != nil {
		return nil, err
	}
	return &out, nil
}

// EraseUser erases the app's user: their sessions end, their messages
// become tombstones, their event log and account are removed.
func (c *Client) EraseUser(ctx context.Context, externalID string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/server/users/"+pathEscape(externalID), nil, nil, authKey)
	return err
}

// LogoutUser ends every session of the app's user at once; their open
// streams receive "session.expired".
func (c *Client) LogoutUser(ctx context.Context, externalID string) error {
	_, err := c.do(ctx, http.MethodPost, "/api/server/users/"+pathEscape(externalID)+"/logout", nil, nil, authKey)
	return err
}

// MintToken returns a Parley token for an existing app user, valid for ttl
// (0: the lifetime of a login; whole seconds).
func (c *Client) MintToken(ctx context.Context, externalID string, ttl time.Duration) (*Auth, error) {
	body := struct {
		ExternalID string `json:"external_id"`
		TTLSeconds int64  `json:"ttl_seconds,omitempty"`
	}{externalID, int64(ttl / time.Second)}
	var out Auth
	if _, err := c.do(ctx, http.MethodPost, "/api/server/tokens", body, &out, authKey); err != nil {
		return nil, err
	}
	return &out, nil
}

// SystemMessage posts a message of kind "system" (no sender) into a
// conversation; both participants receive it. The same ClientID again
// returns the original message. ReplyToID is ignored.
func (c *Client) SystemMessage(ctx context.Context, convID string, m SendMessage) (*Message, error) {
	m.ReplyToID = ""
	var out Message
	if _, err := c.do(ctx, http.MethodPost, "/api/server/conversations/"+pathEscape(convID)+"/messages", m, &out, authKey); err != nil {
		return nil, err
	}
	return &out, nil
}
