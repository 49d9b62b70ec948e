package httpapi_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/server"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestProfile: PATCH /api/me changes the display name and bio, each only
// when given; the bio is then part of user everywhere (me, users, the
// conversation's participants), "" for users who never set one.
func TestProfile(t *testing.T) {
	p := newConvPair(t)
	var u parley.User
	bio := strings.Repeat("é", 279) + "\n"
	res := p.n.Do(t, "PATCH", "/api/me", p.pro.Token, map[string]any{"display_name": "  Dr. Zoë Ngata ", "bio": bio}, &u)
	if res.StatusCode != http.StatusOK || u.DisplayName != "Dr. Zoë Ngata" || u.Bio != strings.Repeat("é", 279) || u.ID != p.pro.ID {
		t.Fatalf("patch: %d %s", res.StatusCode, res.Body)
	}
	// Only what is given changes; unknown and server-owned fields are ignored.
	res = p.n.Do(t, "PATCH", "/api/me", p.pro.Token, map[string]any{"bio": "GP, London.\nMon–Fri.", "id": "u_x", "role": "client"}, &u)
	if res.StatusCode != http.StatusOK || u.DisplayName != "Dr. Zoë Ngata" || u.Bio != "GP, London.\nMon–Fri." || u.Role != parley.RoleProfessional {
		t.Fatalf("patch bio only: %d %s", res.StatusCode, res.Body)
	}

	has := func(where string, got parley.User) {
		t.Helper()
		if got.Bio != "GP, London.\nMon–Fri." || got.DisplayName != "Dr. Zoë Ngata" {
			t.Fatalf("%s: %+v", where, got)
		}
	}
	var me parley.User
	p.n.Do(t, "GET", "/api/me", p.pro.Token, nil, &me)
	has("GET /api/me", me)
	var one parley.User
	p.n.Do(t, "GET", "/api/users/"+p.pro.ID, p.client.Token, nil, &one)
	has("GET /api/users/{id}", one)
	var list struct {
		Users []parley.User `json:"users"`
	}
	p.n.Do(t, "GET", "/api/users?role=professional", p.client.Token, nil, &list)
	has("GET /api/users", list.Users[0])
	var c parley.Conversation
	p.n.Do(t, "GET", "/api/conversations/"+p.conv, p.client.Token, nil, &c)
	has("conversation.professional", c.Professional)
	// Another user's bio is there and empty.
	var raw map[string]json.RawMessage
	p.n.Do(t, "GET", "/api/users/"+p.client.ID, p.pro.Token, nil, &raw)
	if string(raw["bio"]) != `""` {
		t.Fatalf("a user without a bio has bio %s", raw["bio"])
	}
}

// TestProfileLimits: a bio of 281 characters, an empty or 65-character
// display name, and text with NUL, control, bidi-override or zero-width
// characters are refused with 400 naming the field, and nothing changes.
// Bodies that are not JSON are 415, as everywhere.
func TestProfileLimits(t *testing.T) {
	n := servertest.Start(t)
	u := n.Register(t, "p", parley.RoleProfessional)
	bad := []struct {
		field string
		value string
	}{
		{"bio", strings.Repeat("a", 281)},
		{"bio", "nul\x00"},
		{"bio", "bell\a"},
		{"bio", "rtl \u202e override"},
		{"bio", "zero\u200bwidth"},
		{"display_name", ""},
		{"display_name", "   "},
		{"display_name", strings.Repeat("n", 65)},
		{"display_name", "Ann\nSmith"},
		{"display_name", "admin\u202e"},
		{"display_name", "\u2066Ann"},
		{"display_name", "An\u200dn"},
		{"display_name", "\ufeffAnn"},
	}
	for _, c := range bad {
		res := n.Do(t, "PATCH", "/api/me", u.Token, map[string]any{c.field: c.value}, nil)
		wantField(t, res, c.field)
	}
	var me parley.User
	n.Do(t, "GET", "/api/me", u.Token, nil, &me)
	if me.Bio != "" || me.DisplayName != u.Username {
		t.Fatalf("a refused change changed the profile: %+v", me)
	}
	if res := n.Do(t, "PATCH", "/api/me", u.Token, map[string]any{"bio": strings.Repeat("a", 280), "display_name": strings.Repeat("n", 64)}, nil); res.StatusCode != http.StatusOK {
		t.Fatalf("at the limits: %d %s", res.StatusCode, res.Body)
	}
	req := newRequest(t, n, "PATCH", "/api/me", `bio=x`)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+u.Token)
	wantError(t, send(t, req), http.StatusUnsupportedMediaType, "unsupported_media_type")
	wantError(t, n.Do(t, "PATCH", "/api/me", "", map[string]any{"bio": "x"}, nil), http.StatusUnauthorized, "unauthorized")
	var cfg map[string]any
	n.Do(t, "GET", "/api/config", "", nil, &cfg)
	if cfg["max_bio_chars"] != float64(280) {
		t.Fatalf("max_bio_chars = %v", cfg["max_bio_chars"])
	}
}

// TestICEServersInConfig: /api/config has ice_servers: [] by default and
// the configured servers as given; an invalid setting stops the server at
// start with a message naming it.
func TestICEServersInConfig(t *testing.T) {
	n := servertest.Start(t)
	var cfg map[string]json.RawMessage
	n.Do(t, "GET", "/api/config", "", nil, &cfg)
	if string(cfg["ice_servers"]) != "[]" {
		t.Fatalf("default ice_servers = %s", cfg["ice_servers"])
	}
	const ice = `[{"urls": "stun:stun.example.org:3478"},
		{"urls": ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349"], "username": "u", "credential": "p"}]`
	n2 := servertest.Start(t, func(c *config.Config) { c.ICEServers = ice })
	n2.Do(t, "GET", "/api/config", "", nil, &cfg)
	var got []map[string]any
	if err := json.Unmarshal(cfg["ice_servers"], &got); err != nil || len(got) != 2 || got[0]["urls"] != "stun:stun.example.org:3478" || got[1]["username"] != "u" {
		t.Fatalf("configured ice_servers = %s", cfg["ice_servers"])
	}
	c := servertest.Config(t)
	c.ICEServers = `[{"urls": "http://example.org"}]`
	if srv, err := server.New(context.Background(), c, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "ice-servers") {
		if srv != nil {
			srv.Shutdown(context.Background())
		}
		t.Fatalf("a server started with invalid ice-servers: %v", err)
	}
}
