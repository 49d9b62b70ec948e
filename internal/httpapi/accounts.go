package httpapi

import (
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/store"
)

const sessionCookie = "parley_session"

func (a *API) register(w http.ResponseWriter, r *http.Request) {
	if a.Config.Registration == config.RegistrationClosed {
		// The app Parley is part of signs its users in (SPEC §9.1).
		a.writeError(w, r, parley.Errorf(parley.EForbidden, "registration is closed; sign in through the app"))
		return
	}
	if !a.limiter.allow(a.limitKey(r)) {
		a.writeError(w, r, &parley.Error{Code: parley.ERateLimited, Message: "too many requests", RetryAfter: time.Second})
		return
	}
	var req auth.Registration
	if err := decode(w, r, a.Config.BodyLimit, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	g, err := a.Auth.Register(r.Context(), req)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.grant(w, r, http.StatusCreated, g)
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	if !a.limiter.allow(a.limitKey(r)) {
		a.writeError(w, r, &parley.Error{Code: parley.ERateLimited, Message: "too many requests", RetryAfter: time.Second})
		return
	}
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := decode(w, r, a.Config.BodyLimit, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	if wait := a.logins.begin(req.Username, time.Now()); wait > 0 {
		a.writeError(w, r, &parley.Error{Code: parley.ERateLimited, Message: "too many failed logins for this account; try again later", RetryAfter: wait})
		return
	}
	g, err := a.Auth.Login(r.Context(), req.Username, req.Password)
	if err == nil {
		a.logins.succeeded(req.Username)
	} else if parley.ErrorCode(err) == parley.EUnauthorized {
		a.Logger.Info("failed login", "username", loginKey(req.Username), "client", a.clientIP(r))
	}
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.grant(w, r, http.StatusOK, g)
}

// grant answers a login with the token and sets it as the session cookie.
func (a *API) grant(w http.ResponseWriter, r *http.Request, code int, g *auth.Grant) {
	a.decorate(g.User)
	http.SetCookie(w, a.sessionCookieFor(r, &http.Cookie{Value: g.Token, Expires: g.ExpiresAt}))
	writeJSON(w, code, map[string]any{"user": g.User, "token": g.Token, "expires_at": parley.T(g.ExpiresAt)})
}

func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	p := Principal(r)
	if err := a.Auth.Logout(r.Context(), p.Session.ID); err != nil {
		a.writeError(w, r, err)
		return
	}
	a.Streams.Hub.KickSession(p.User.ID, p.Session.ID)
	http.SetCookie(w, a.sessionCookieFor(r, &http.Cookie{MaxAge: -1}))
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) activity(w http.ResponseWriter, r *http.Request) {
	// authed has already counted the request; make sure it is written even
	// if the last write was recent, since this is the page's explicit ping.
	if err := a.Auth.Touch(r.Context(), Principal(r).Session.ID); err != nil {
		a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) me(w http.ResponseWriter, r *http.Request) {
	u := Principal(r).User
	a.decorate(u)
	writeJSON(w, http.StatusOK, u)
}

func (a *API) users(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	role := q.Get("role")
	if role != "" && role != parley.RoleClient && role != parley.RoleProfessional {
		a.writeError(w, r, parley.Invalid("role", "role must be client or professional"))
		return
	}
	limit, err := intParam(q.Get("limit"), "limit", 100, 1, 500)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	viewer := Principal(r).User.ID
	var users []*parley.User
	var contacts []string
	err = a.Store.View(r.Context(), func(tx *store.Tx) (err error) {
		if users, err = tx.Users(viewer, role, int(limit)); err != nil {
			return err
		}
		contacts, err = tx.Contacts(viewer)
		return err
	})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if users == nil {
		users = []*parley.User{}
	}
	a.decorate(users...)
	for _, u := range users {
		if u.ID != viewer && !slices.Contains(contacts, u.ID) {
			hidePresence(u)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": users})
}

// hidePresence blanks what only the people who share a conversation with u
// may know: whether u is online and when u was last seen. Presence events
// go only to them, and the directory must not tell anyone else either.
func hidePresence(u *parley.User) {
	u.Online, u.LastSeen = false, nil
}

func (a *API) user(w http.ResponseWriter, r *http.Request) {
	viewer := Principal(r).User.ID
	var u *parley.User
	var shares bool
	err := a.Store.View(r.Context(), func(tx *store.Tx) (err error) {
		if u, err = tx.VisibleUser(viewer, r.PathValue("id")); err != nil {
			return err
		}
		shares, err = tx.Shares(viewer, u.ID)
		return err
	})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	a.decorate(u)
	if u.ID != viewer && !shares {
		hidePresence(u)
	}
	writeJSON(w, http.StatusOK, u)
}

func (a *API) decorate(users ...*parley.User) {
	if a.Presence != nil {
		a.Presence.Decorate(users...)
	}
}

// intParam parses an optional integer query parameter within [lo, hi].
func intParam(s, name string, def, lo, hi int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < lo || n > hi {
		return 0, parley.Invalid(name, "%s must be an integer from %d to %d", name, lo, hi)
	}
	return n, nil
}
