package httpapi

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/store"
)

// maxPublishUsers is the most users one publish may address (SPEC §6).
const maxPublishUsers = 10000

var appTypeRE = regexp.MustCompile(`^app\.[A-Za-z0-9_.:-]{1,100}$`)

// publish serves POST /api/publish: durable app events from a backend.
func (a *API) publish(w http.ResponseWriter, r *http.Request) {
	if !a.apiKey(r) {
		a.writeError(w, r, parley.Errorf(parley.EUnauthorized, "an API key is required"))
		return
	}
	var req struct {
		UserIDs []string        `json:"user_ids"`
		Type    string          `json:"type"`
		Data    json.RawMessage `json:"data"`
	}
	if err := decode(w, r, a.Config.PublishBodyLimit, &req); err != nil {
		a.writeError(w, r, err)
		return
	}
	switch {
	case len(req.UserIDs) == 0:
		a.writeError(w, r, parley.Invalid("user_ids", "user_ids must name at least one user"))
		return
	case len(req.UserIDs) > maxPublishUsers:
		a.writeError(w, r, parley.Invalid("user_ids", "user_ids must name at most %d users", maxPublishUsers))
		return
	case !appTypeRE.MatchString(req.Type):
		a.writeError(w, r, parley.Invalid("type", "type must be app.<name> (letters, digits, _ . : -)"))
		return
	}
	// The wire format needs one-line JSON; compacting also normalises what
	// the backend sent without changing its meaning.
	data := []byte("{}")
	if len(req.Data) > 0 && !bytes.Equal(req.Data, []byte("null")) {
		var buf bytes.Buffer
		if err := json.Compact(&buf, req.Data); err != nil {
			a.writeError(w, r, parley.Invalid("data", "data must be JSON"))
			return
		}
		data = buf.Bytes()
	}
	users := make([]string, 0, len(req.UserIDs))
	seen := make(map[string]bool, len(req.UserIDs))
	for _, u := range req.UserIDs {
		if !seen[u] {
			seen[u] = true
			users = append(users, u)
		}
	}
	evs := make([]parley.NewEvent, len(users))
	for i, u := range users {
		evs[i] = parley.NewEvent{UserID: u, Type: req.Type, Data: data}
	}
	ids := make(map[string]int64, len(users))
	err := a.Store.Update(r.Context(), func(tx *store.Tx) error {
		// All or nothing: Append fails naming unknown users, and the
		// transaction then writes no event.
		stored, err := tx.Append(evs...)
		if err != nil {
			return err
		}
		for _, e := range stored {
			ids[e.UserID] = e.ID
		}
		return nil
	})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"ids": ids})
}

// apiKey reports whether the request carries one of the configured keys.
// Every key is compared in constant time so timing does not reveal a prefix.
func (a *API) apiKey(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if len(h) < 8 || !strings.EqualFold(h[:7], "Bearer ") {
		return false
	}
	got := []byte(strings.TrimSpace(h[7:]))
	ok := false
	for _, k := range a.Config.APIKeys {
		if subtle.ConstantTimeCompare(got, []byte(k)) == 1 {
			ok = true
		}
	}
	return ok
}
