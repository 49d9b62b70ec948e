package httpapi

import (
	"math"
	"net/http"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/attach"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/chat"
	"github.com/parley-chat/parley/internal/push"
)

// SearchRoutes returns GET /api/search (SPEC §4), served by svc.
func SearchRoutes(svc *chat.Service) func(mux *ServeMux, a *API) {
	return func(mux *ServeMux, a *API) {
		mux.Handle("GET /api/search", a.authed(func(w http.ResponseWriter, r *http.Request) {
			q := r.URL.Query()
			limit, err := intParam(q.Get("limit"), "limit", chat.DefaultSearchLimit, 1, math.MaxInt32)
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			msgs, more, err := svc.Search(r.Context(), Principal(r).User.ID, chat.SearchRequest{
				Query: q.Get("q"), ConversationID: q.Get("conversation_id"), Limit: int(min(limit, chat.MaxSearchLimit)),
			})
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			if msgs == nil {
				msgs = []*parley.Message{}
			}
			writeJSON(w, http.StatusOK, map[string]any{"messages": msgs, "has_more": more})
		}))
	}
}

// ProfileRoutes returns PATCH /api/me (SPEC §4): the caller's display name
// and bio.
func ProfileRoutes() func(mux *ServeMux, a *API) {
	return func(mux *ServeMux, a *API) {
		mux.Handle("PATCH /api/me", a.authed(func(w http.ResponseWriter, r *http.Request) {
			var req auth.ProfileUpdate
			if err := decode(w, r, a.Config.BodyLimit, &req); err != nil {
				a.writeError(w, r, err)
				return
			}
			u, err := a.Auth.UpdateProfile(r.Context(), Principal(r).User.ID, req)
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			a.decorate(u)
			writeJSON(w, http.StatusOK, u)
		}))
		a.addConfig(func(m map[string]any) { m["max_bio_chars"] = parley.MaxBioChars })
	}
}

// attachmentConfig tells clients the upload limits.
func attachmentConfig(svc *attach.Service) func(map[string]any) {
	return func(m map[string]any) {
		m["max_attachment_bytes"] = svc.MaxSize()
		m["max_attachments_per_message"] = chat.MaxAttachments
	}
}

// PushRoutes returns the Web Push subscription routes of the caller's
// session (docs/chat.md), and puts the VAPID public key in /api/config.
//
//	POST   /api/push/subscription  {endpoint, keys: {p256dh, auth}} → 201 (new) / 200 (already so)
//	GET    /api/push/subscription  → 200 / 404
//	DELETE /api/push/subscription  → 204
func PushRoutes(svc *push.Service) func(mux *ServeMux, a *API) {
	return func(mux *ServeMux, a *API) {
		mux.Handle("POST /api/push/subscription", a.authed(func(w http.ResponseWriter, r *http.Request) {
			var req push.Subscription
			if err := decode(w, r, a.Config.BodyLimit, &req); err != nil {
				a.writeError(w, r, err)
				return
			}
			sub, created, err := svc.Subscribe(r.Context(), Principal(r).Session, req)
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			code := http.StatusOK
			if created {
				code = http.StatusCreated
			}
			writeJSON(w, code, pushSubscriptionJSON(sub.Endpoint, sub.CreatedAt))
		}))
		mux.Handle("GET /api/push/subscription", a.authed(func(w http.ResponseWriter, r *http.Request) {
			sub, err := svc.SubscriptionOf(r.Context(), Principal(r).Session.ID)
			if err != nil {
				a.writeError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, pushSubscriptionJSON(sub.Endpoint, sub.CreatedAt))
		}))
		mux.Handle("DELETE /api/push/subscription", a.authed(func(w http.ResponseWriter, r *http.Request) {
			if err := svc.Unsubscribe(r.Context(), Principal(r).Session.ID); err != nil {
				a.writeError(w, r, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		a.addConfig(func(m map[string]any) {
			if k := svc.PublicKey(); k != "" {
				m["push_public_key"] = k
			} else {
				m["push_public_key"] = nil
			}
		})
	}
}

// pushSubscriptionJSON is a subscription as the API shows it: never its
// keys, which only the push sender needs.
func pushSubscriptionJSON(endpoint string, created time.Time) map[string]any {
	return map[string]any{"endpoint": endpoint, "created_at": parley.T(created)}
}
