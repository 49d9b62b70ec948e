// Package client is a Go client for the Parley messaging server.
//
// It covers the whole HTTP contract: accounts and sessions, conversations and
// messages, calls, the server-side publish API, long polling and the
// Server-Sent Events stream. A Client is safe for concurrent use.
//
//	c := client.New("http://127.0.0.1:8080")
//	auth, err := c.Login(ctx, "alice", "secret-password") // c now carries the token
//	err = c.Subscribe(ctx, 0, func(ev client.Event) error {
//		fmt.Println(ev.ID, ev.Type, string(ev.Data))
//		return nil
//	})
//
// Backends that push events to their users use an API key instead, for the
// publish API and the server API (the app's users by its own ids, tokens
// for them, system messages):
//
//	c := client.New(url, client.WithAPIKey(key))
//	ids, err := c.Publish(ctx, []string{userID}, "app.invoice_paid", data)
//	pro, created, err := c.PutUser(ctx, "app-user-42", client.AppUser{Role: client.RoleProfessional})
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client talks to one Parley server. The zero value is not usable; call New.
// Copies made with WithToken share the underlying HTTP client.
type Client struct {
	base   string // without trailing slash
	hc     *http.Client
	apiKey string

	mu    sync.RWMutex
	token string
}

// Option configures a Client built by New.
type Option func(*options)

type options struct {
	hc        *http.Client
	token     string
	apiKey    string
	localAddr net.IP
}

// WithHTTPClient makes the Client use hc for every request. It takes precedence
// over WithLocalAddr. hc should have no overall Timeout if it is used for event
// streams or long polls; request lifetimes are bounded by their contexts.
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.hc = hc } }

// WithToken sets the session token (a JWT from Login or Register) sent as
// "Authorization: Bearer" on user requests.
func WithToken(token string) Option { return func(o *options) { o.token = token } }

// WithAPIKey sets the API key used by Publish and the server API.
func WithAPIKey(key string) Option { return func(o *options) { o.apiKey = key } }

// WithLocalAddr binds outgoing connections to the given local IP address, for
// example 127.0.0.2, so that a load generator can open more connections to one
// server than a single source address has ephemeral ports.
func WithLocalAddr(ip net.IP) Option { return func(o *options) { o.localAddr = ip } }

// New returns a Client for the server at baseURL (for example
// "http://127.0.0.1:8080"). Without WithHTTPClient it uses its own transport
// built by NewTransport.
func New(baseURL string, opts ...Option) *Client {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	hc := o.hc
	if hc == nil {
		hc = &http.Client{Transport: NewTransport(o.localAddr)}
	}
	return &Client{
		base:   strings.TrimRight(baseURL, "/"),
		hc:     hc,
		apiKey: o.apiKey,
		token:  o.token,
	}
}

// NewTransport returns an HTTP transport suitable for Parley: proxies from the
// environment, no transparent compression (it would only add buffering to event
// streams), generous idle connection reuse, and, when localIP is not nil,
// connections bound to that source address.
func NewTransport(localIP net.IP) *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	if localIP != nil {
		d.LocalAddr = &net.TCPAddr{IP: localIP}
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
	}
}

// BaseURL returns the server address the Client was built with.
func (c *Client) BaseURL() string { return c.base }

// HTTPClient returns the underlying HTTP client.
func (c *Client) HTTPClient() *http.Client { return c.hc }

// Token returns the current session token, or "" if there is none.
func (c *Client) Token() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.token
}

// SetToken replaces the session token used by subsequent requests.
func (c *Client) SetToken(token string) {
	c.mu.Lock()
	c.token = token
	c.mu.Unlock()
}

// WithToken returns a copy of c that uses token and shares c's HTTP client and
// API key. It is the cheap way to act as many users over one connection pool.
func (c *Client) WithToken(token string) *Client {
	return &Client{base: c.base, hc: c.hc, apiKey: c.apiKey, token: token}
}

// Error is a non-2xx answer from the server, decoded from the SPEC's
// {"error": {"code", "message"}} body.
type Error struct {
	Status     int           // HTTP status code
	Code       string        // machine code such as "not_found"; "" if the body had none
	Message    string        // human text from the server, or the status text
	RetryAfter time.Duration // from the Retry-After header (429, 503); 0 if absent
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("parley: %d %s", e.Status, e.Message)
	}
	return fmt.Sprintf("parley: %d %s: %s", e.Status, e.Code, e.Message)
}

// StatusCode returns the HTTP status of err if it is (or wraps) an *Error, else 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// ErrorCode returns the machine code of err if it is (or wraps) an *Error, else "".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 64 << 10

// parseError builds an *Error from a non-2xx response. It does not close the body.
func parseError(resp *http.Response) *Error {
	e := &Error{Status: resp.StatusCode, RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var wire struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &wire) == nil && wire.Error.Code != "" {
		e.Code, e.Message = wire.Error.Code, wire.Error.Message
		return e
	}
	e.Message = http.StatusText(resp.StatusCode)
	if s := strings.TrimSpace(string(body)); s != "" {
		if len(s) > 200 {
			s = s[:200] + "…"
		}
		e.Message += ": " + s
	}
	return e
}

// parseRetryAfter reads a Retry-After value given either as delay seconds or
// as an HTTP date. It returns 0 when v is empty or malformed.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// auth selects the credentials of a request.
type auth int

const (
	authToken auth = iota // the session token, if any
	authKey               // the API key
	authNone              // nothing
)

// newRequest builds a request for path (which may carry a query string) with
// body encoded as JSON when not nil.
func (c *Client) newRequest(ctx context.Context, method, path string, body any, a auth) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("parley: encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	switch a {
	case authToken:
		if tok := c.Token(); tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	case authKey:
		if c.apiKey != "" {
			req.Header.Set("Authorization", "Bearer "+c.apiKey)
		}
	}
	return req, nil
}

// do sends a JSON request and decodes a 2xx answer into out (unless out is nil
// or the answer has no body). It returns the status code of successful answers.
func (c *Client) do(ctx context.Context, method, path string, body, out any, a auth) (int, error) {
	req, err := c.newRequest(ctx, method, path, body, a)
	if err != nil {
		return 0, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, parseError(resp)
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("parley: decode %s %s: %w", method, path, err)
		}
	}
	// Drain what is left so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	return resp.StatusCode, nil
}

// pathEscape escapes one path segment (ids are opaque strings).
func pathEscape(s string) string { return url.PathEscape(s) }
