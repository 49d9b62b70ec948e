package httpapi

import (
	"errors"
	"net/http"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
)

// ServerRoutes returns the server API of SPEC §9.2, for the app's backend:
// its users by the app's own ids, Parley tokens for them, and system
// messages. Every route takes an API key, as /api/publish does; a user's
// token is refused with 401.
func ServerRoutes(svc *chat.Service) func(mux *ServeMux, a *API) {
	return func(mux *ServeMux, a *API) {
		h := &serverHandlers{a: a, svc: svc}
		mux.Handle("PUT /api/server/users/{external_id}", a.keyed(h.putUser))
		mux.Handle("GET /api/server/users/{external_id}", a.keyed(h.getUser))
		mux.Handle("DELETE /api/server/users/{external_id}", a.keyed(h.eraseUser))
		mux.Handle("POST /api/server/users/{external_id}/logout", a.keyed(h.logoutUser))
		mux.Handle("POST /api/server/tokens", a.keyed(h.mint))
		mux.Handle("POST /api/server/conversations/{id}/messages", a.keyed(h.systemMessage))
	}
}

// keyed requires one of the configured API keys.
func (a *API) keyed(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.apiKey(r) {
			a.writeError(w, r, parley.Errorf(parley.EUnauthorized, "an API key is required"))
			return
		}
		h(w, r)
	})
}

type serverHandlers struct {
	a   *API
	svc *chat.Service
}

// appUser loads the user the request's {external_id} names. A user whose
// erasure began is not found, except by the erasure itself (to finish it).
func (h *serverHandlers) appUser(r *http.Request) (*parley.User, error) {
	ext := r.PathValue("external_id")
	if !auth.ValidExternalID(ext) {
		return nil, parley.NotFound
	}
	u, err := h.a.Auth.AppUser(r.Context(), ext)
	if err == nil && u.Erased && r.Method != http.MethodDelete {
		return nil, parley.NotFound
	}
	return u, err
}

func (h *serverHandlers) putUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		DisplayName *string `json:"display_name"`
		Role        string  `json:"role"`
	}
	if err := decode(w, r, h.a.Config.BodyLimit, &req); err != nil {
		h.a.writeError(w, r, err)
		return
	}
	u, created, err := h.a.Auth.UpsertAppUser(r.Context(), r.PathValue("external_id"), req.DisplayName, req.Role)
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	h.a.decorate(u)
	writeJSON(w, code, u)
}

func (h *serverHandlers) getUser(w http.ResponseWriter, r *http.Request) {
	u, err := h.appUser(r)
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	h.a.decorate(u)
	writeJSON(w, http.StatusOK, u)
}

// kick tells the open streams of the ended sessions, on every node.
func (h *serverHandlers) kick(userID string, sessions []string) {
	if h.a.Streams == nil {
		return
	}
	for _, sid := range sessions {
		h.a.Streams.Hub.KickSession(userID, sid)
	}
}

func (h *serverHandlers) eraseUser(w http.ResponseWriter, r *http.Request) {
	u, err := h.appUser(r)
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	sessions, err := h.svc.Erase(r.Context(), u.ID)
	h.kick(u.ID, sessions)
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *serverHandlers) logoutUser(w http.ResponseWriter, r *http.Request) {
	u, err := h.appUser(r)
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	sessions, err := h.a.Auth.LogoutUser(r.Context(), u.ID)
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	h.kick(u.ID, sessions)
	w.WriteHeader(http.StatusNoContent)
}

// maxTokenTTL bounds ttl_seconds of a minted token: a year.
const maxTokenTTL = 365 * 24 * time.Hour

func (h *serverHandlers) mint(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ExternalID *string `json:"external_id"`
		TTLSeconds *int64  `json:"ttl_seconds"`
	}
	if err := decode(w, r, h.a.Config.BodyLimit, &req); err != nil {
		h.a.writeError(w, r, err)
		return
	}
	if req.ExternalID == nil || *req.ExternalID == "" {
		h.a.writeError(w, r, parley.Invalid("external_id", "external_id is required"))
		return
	}
	var ttl time.Duration
	if req.TTLSeconds != nil {
		if *req.TTLSeconds < 1 || *req.TTLSeconds > int64(maxTokenTTL/time.Second) {
			h.a.writeError(w, r, parley.Invalid("ttl_seconds", "ttl_seconds must be from 1 to %d", int64(maxTokenTTL/time.Second)))
			return
		}
		ttl = time.Duration(*req.TTLSeconds) * time.Second
	}
	var u *parley.User
	var err error
	if auth.ValidExternalID(*req.ExternalID) {
		u, err = h.a.Auth.AppUser(r.Context(), *req.ExternalID)
		if err == nil && u.Erased {
			err = parley.NotFound
		}
	} else {
		err = parley.NotFound
	}
	if errors.Is(err, parley.NotFound) {
		h.a.writeError(w, r, parley.Errorf(parley.ENotFound, "no user with that external_id"))
		return
	}
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	g, err := h.a.Auth.Mint(r.Context(), u.ID, ttl)
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	h.a.decorate(g.User)
	writeJSON(w, http.StatusCreated, map[string]any{"token": g.Token, "expires_at": parley.T(g.ExpiresAt), "user": g.User})
}

func (h *serverHandlers) systemMessage(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Body     string `json:"body"`
		ClientID string `json:"client_id"`
	}
	if err := decode(w, r, h.a.Config.BodyLimit, &req); err != nil {
		h.a.writeError(w, r, err)
		return
	}
	m, created, err := h.svc.SystemMessage(r.Context(), r.PathValue("id"), chat.Message{Body: req.Body, ClientID: req.ClientID})
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	code := http.StatusCreated
	if !created {
		code = http.StatusOK
	}
	writeJSON(w, code, m)
}
