package httpapi_test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/servertest"
)

// convPair is a node with a client and a professional who share a
// conversation, and an outsider who shares none with them.
type convPair struct {
	n        *servertest.Node
	client   servertest.User
	pro      servertest.User
	outsider servertest.User
	conv     string
}

func newConvPair(t *testing.T, opts ...servertest.Option) *convPair {
	t.Helper()
	n := servertest.Start(t, opts...)
	p := &convPair{
		n: n, client: n.Register(t, "c", parley.RoleClient), pro: n.Register(t, "p", parley.RoleProfessional),
		outsider: n.Register(t, "o", parley.RoleClient),
	}
	p.conv = p.open(t, p.client, p.pro, "hello")
	return p
}

// open opens a conversation from client to pro and returns its id.
func (p *convPair) open(t *testing.T, client, pro servertest.User, body string) string {
	t.Helper()
	var c parley.Conversation
	res := p.n.Do(t, "POST", "/api/conversations", client.Token,
		map[string]any{"professional_id": pro.ID, "message": map[string]any{"body": body}}, &c)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("open conversation: %d %s", res.StatusCode, res.Body)
	}
	return c.ID
}

// upload posts a file as the raw body.
func (p *convPair) upload(t *testing.T, u servertest.User, convID, name, ctype string, body []byte) (*servertest.Response, parley.Attachment) {
	t.Helper()
	req := newRequest(t, p.n, "POST", "/api/conversations/"+url.PathEscape(convID)+"/attachments?name="+url.QueryEscape(name), body)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Authorization", "Bearer "+u.Token)
	var a parley.Attachment
	res := servertest.Send(t, req, &a)
	return res, a
}

// mustUpload is upload that requires 201.
func (p *convPair) mustUpload(t *testing.T, u servertest.User, convID, name, ctype string, body []byte) parley.Attachment {
	t.Helper()
	res, a := p.upload(t, u, convID, name, ctype, body)
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("upload %q: %d %s", name, res.StatusCode, res.Body)
	}
	return a
}

// post sends a message body of any shape.
func (p *convPair) post(t *testing.T, u servertest.User, convID string, msg map[string]any) (*servertest.Response, parley.Message) {
	t.Helper()
	var m parley.Message
	res := p.n.Do(t, "POST", "/api/conversations/"+convID+"/messages", u.Token, msg, &m)
	return res, m
}

// say sends a text message and requires 201.
func (p *convPair) say(t *testing.T, u servertest.User, convID, body string) parley.Message {
	t.Helper()
	res, m := p.post(t, u, convID, map[string]any{"body": body})
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("send %q: %d %s", body, res.StatusCode, res.Body)
	}
	return m
}

// fetch GETs an attachment as u.
func (p *convPair) fetch(t *testing.T, u servertest.User, id string) *servertest.Response {
	t.Helper()
	return p.n.Do(t, "GET", "/api/attachments/"+url.PathEscape(id), u.Token, nil, nil)
}

// pngBytes is a valid 1×1 PNG.
var pngBytes = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89" +
	"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")

// sqlDB opens the node's PostgreSQL database, or returns nil for SQLite.
func sqlDB(t *testing.T, n *servertest.Node) *sql.DB {
	t.Helper()
	if !strings.HasPrefix(n.Config.DatabaseURL, "postgres") {
		return nil
	}
	return openDB(t, n)
}

// openDB opens the node's database to look at what it keeps: PostgreSQL,
// or the embedded database read-only (WAL lets a reader in beside the
// server).
func openDB(t *testing.T, n *servertest.Node) *sql.DB {
	t.Helper()
	if !strings.HasPrefix(n.Config.DatabaseURL, "postgres") {
		db, err := sql.Open("sqlite", "file:"+filepath.Join(n.Config.DataDir, "parley.db")+"?mode=ro")
		if err != nil {
			t.Fatalf("open database: %v", err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	u, err := url.Parse(n.Config.DatabaseURL)
	if err != nil {
		t.Fatalf("database url: %v", err)
	}
	q := u.Query()
	q.Del("pool_max_conns") // the store's own parameter, not PostgreSQL's
	u.RawQuery = q.Encode()
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// decodeJSON decodes b into v or fails.
func decodeJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}
