package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// WebhookRoutes returns the routes of the webhooks that ran out of retries
// (SPEC §9.3), for the app's backend, with an API key like the rest of the
// server API: the list, and a manual retry of one. kick, when not nil,
// wakes the sender after a retry so it goes out at once.
func WebhookRoutes(kick func()) func(mux *ServeMux, a *API) {
	return func(mux *ServeMux, a *API) {
		mux.Handle("GET /api/server/webhooks/failed", a.keyed(a.failedWebhooks))
		mux.Handle("POST /api/server/webhooks/{id}/retry", a.keyed(func(w http.ResponseWriter, r *http.Request) {
			a.retryWebhook(w, r, kick)
		}))
	}
}

// webhookView is a webhook as the server API shows it.
type webhookView struct {
	ID             string          `json:"id"`
	Type           string          `json:"type"`
	ConversationID string          `json:"conversation_id"`
	State          string          `json:"state"`
	Attempts       int             `json:"attempts"`
	LastStatus     *int            `json:"last_status"`
	LastError      string          `json:"last_error"`
	CreatedAt      parley.Time     `json:"created_at"`
	NextAttemptAt  *parley.Time    `json:"next_attempt_at"`
	Payload        json.RawMessage `json:"payload"`
}

func viewWebhook(w *store.Webhook) webhookView {
	v := webhookView{ID: w.ID, Type: w.Type, ConversationID: w.ConversationID, State: w.State, Attempts: w.Attempts,
		LastError: w.LastError, CreatedAt: parley.T(w.CreatedAt), Payload: w.Body}
	if w.LastStatus != 0 {
		s := w.LastStatus
		v.LastStatus = &s
	}
	if w.State == store.WebhookPending {
		v.NextAttemptAt = parley.TP(w.NextAt)
	}
	return v
}

func (a *API) failedWebhooks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := intParam(q.Get("limit"), "limit", 100, 1, 500)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	var ws []*store.Webhook
	err = a.Store.View(r.Context(), func(tx *store.Tx) error {
		var err error
		ws, err = tx.FailedWebhooks(q.Get("after"), int(limit)+1)
		return err
	})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	more := len(ws) > int(limit)
	if more {
		ws = ws[:limit]
	}
	out := make([]webhookView, len(ws))
	for i, wh := range ws {
		out[i] = viewWebhook(wh)
	}
	writeJSON(w, http.StatusOK, map[string]any{"webhooks": out, "has_more": more})
}

func (a *API) retryWebhook(w http.ResponseWriter, r *http.Request, kick func()) {
	var wh *store.Webhook
	err := a.Store.Update(r.Context(), func(tx *store.Tx) error {
		var err error
		wh, err = tx.RetryWebhook(r.PathValue("id"), time.Now())
		return err
	})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if kick != nil {
		kick()
	}
	writeJSON(w, http.StatusAccepted, viewWebhook(wh))
}
