package httpapi_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/servertest"
)

// TestUsersVisibility: GET /api/users and /api/users/{id} show the
// professionals (the directory), the people the caller shares a
// conversation with, and the caller; online and last_seen only for those
// who share a conversation with the caller. Anyone else is not found.
func TestUsersVisibility(t *testing.T) {
	n := servertest.Start(t)
	alice := n.Register(t, "va", parley.RoleClient)
	stranger := n.Register(t, "vs", parley.RoleClient)
	pro := n.Register(t, "vp", parley.RoleProfessional)
	other := n.Register(t, "vq", parley.RoleProfessional)
	if res := n.Do(t, "POST", "/api/conversations", alice.Token, map[string]any{"professional_id": pro.ID,
		"message": map[string]any{"body": "hello"}}, nil); res.StatusCode != http.StatusCreated {
		t.Fatalf("open: %d %s", res.StatusCode, res.Body)
	}
	// Everyone online, so that a leak would show.
	for _, u := range []servertest.User{alice, stranger, pro, other} {
		s := n.OpenStream(t, u.Token, -1)
		s.NextOf(t, "ready", 5*time.Second)
		defer s.Close()
	}

	list := func(viewer servertest.User, query string) map[string]parley.User {
		t.Helper()
		var out struct{ Users []parley.User }
		if res := n.Do(t, "GET", "/api/users?limit=500"+query, viewer.Token, nil, &out); res.StatusCode != 200 {
			t.Fatalf("list: %d %s", res.StatusCode, res.Body)
		}
		m := map[string]parley.User{}
		for _, u := range out.Users {
			m[u.ID] = u
		}
		return m
	}
	seen := func(u parley.User) bool { return u.Online || u.LastSeen != nil }

	for _, c := range []struct {
		viewer       servertest.User
		query        string
		visible      []servertest.User
		withPresence []servertest.User
		hidden       []servertest.User
	}{
		{alice, "", []servertest.User{alice, pro, other}, []servertest.User{alice, pro}, []servertest.User{stranger}},
		{alice, "&role=professional", []servertest.User{pro, other}, []servertest.User{pro}, []servertest.User{stranger, alice}},
		{alice, "&role=client", []servertest.User{alice}, []servertest.User{alice}, []servertest.User{stranger, pro}},
		{pro, "", []servertest.User{alice, pro, other}, []servertest.User{alice, pro}, []servertest.User{stranger}},
		{pro, "&role=client", []servertest.User{alice}, []servertest.User{alice}, []servertest.User{stranger}},
		{stranger, "", []servertest.User{stranger, pro, other}, []servertest.User{stranger}, []servertest.User{alice}},
	} {
		got := list(c.viewer, c.query)
		for _, u := range c.visible {
			if _, ok := got[u.ID]; !ok {
				t.Errorf("%s%s: %s missing", c.viewer.Username, c.query, u.Username)
			}
		}
		for _, u := range c.hidden {
			if _, ok := got[u.ID]; ok {
				t.Errorf("%s%s: %s listed", c.viewer.Username, c.query, u.Username)
			}
		}
		for id, u := range got {
			want := false
			for _, w := range c.withPresence {
				want = want || w.ID == id
			}
			if seen(u) != want {
				t.Errorf("%s%s: %s online=%v last_seen=%v, want presence shown %v", c.viewer.Username, c.query, u.DisplayName, u.Online, u.LastSeen, want)
			}
		}
	}

	one := func(viewer, u servertest.User) (*servertest.Response, parley.User) {
		var got parley.User
		res := n.Do(t, "GET", "/api/users/"+u.ID, viewer.Token, nil, &got)
		return res, got
	}
	if res, u := one(alice, pro); res.StatusCode != 200 || !u.Online {
		t.Errorf("alice reads her professional: %d online=%v", res.StatusCode, u.Online)
	}
	if res, u := one(alice, other); res.StatusCode != 200 || seen(u) {
		t.Errorf("alice reads another professional: %d online=%v last_seen=%v", res.StatusCode, u.Online, u.LastSeen)
	}
	wantError(t, n.Do(t, "GET", "/api/users/"+stranger.ID, alice.Token, nil, nil), http.StatusNotFound, parley.ENotFound)
	wantError(t, n.Do(t, "GET", "/api/users/"+alice.ID, stranger.Token, nil, nil), http.StatusNotFound, parley.ENotFound)
	if res, u := one(pro, alice); res.StatusCode != 200 || !u.Online {
		t.Errorf("the professional reads their client: %d online=%v", res.StatusCode, u.Online)
	}
}
