package httpapi

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

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
	if err := decodeOpaque(w, r, a.Config.PublishBodyLimit, &req); err != nil {
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
	release, err := a.publishSlot(r.Context(), int64(len(data)+deliveryOverhead)*int64(len(users)))
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	defer release()
	evs := make([]parley.NewEvent, len(users))
	for i, u := range users {
		evs[i] = parley.NewEvent{UserID: u, Type: req.Type, Data: data}
	}
	if a.Streams != nil {
		awaitDelivery(r.Context(), a.Streams.Lag)
	}
	var stored []parley.Event
	err = a.Store.Update(r.Context(), func(tx *store.Tx) error {
		// All or nothing: Append fails naming unknown users, and the
		// transaction then writes no event.
		var err error
		stored, err = tx.Append(evs...)
		return err
	})
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeRawJSON(w, http.StatusAccepted, publishedIDs(stored))
}

// deliveryOverhead is what a delivery costs besides its payload: the
// event and its frame, the id, the log's entry.
const deliveryOverhead = 256

// publishSlot holds weight bytes of PublishInFlight for a publish until
// release. 128 concurrent publishes of 10,000 users each peaked at 2.17 GB
// RSS without it: the memory a fan-out takes is its payload times its
// recipients (events, frames, the log's batch), and nothing bounded how
// many ran at once. A publish heavier than the whole bound runs alone.
func (a *API) publishSlot(ctx context.Context, weight int64) (release func(), err error) {
	if a.publishing == nil {
		return func() {}, nil
	}
	weight = min(weight, a.Config.PublishInFlight)
	release = func() { a.publishing.Release(weight) }
	// Most publishes find room: the deadline below is a context and a
	// timer per call, a tenth of the bytes a private event allocated.
	if a.publishing.TryAcquire(weight) {
		return release, nil
	}
	ctx, cancel := context.WithTimeout(ctx, a.Config.PublishWait)
	defer cancel()
	if err := a.publishing.Acquire(ctx, weight); err != nil {
		return nil, &parley.Error{Code: parley.EUnavailable, Message: "too many publishes in flight; try again shortly", RetryAfter: time.Second}
	}
	return release, nil
}

// A backend that publishes fan-outs faster than the streams can take them
// would otherwise queue deliveries up to each stream's buffer: on one core,
// delivery p99 was 6-10 s (BENCHMARKS.md, eighth sitting). A publish is
// held back instead while delivery runs behind, so users' latency stays
// bounded (p99 0.7-0.8 s there) and the backend sees the overload in its
// own calls. Two cores at saturation stay under the bound (p99 0.3-0.5 s),
// and a 50 ms bound cost them a third to a half more CPU per delivery.
const (
	maxDeliveryLag  = 400 * time.Millisecond
	maxDeliveryWait = time.Second
)

// awaitDelivery waits while lag is above maxDeliveryLag, for at most
// maxDeliveryWait: a publish is slowed down, never refused.
func awaitDelivery(ctx context.Context, lag func() time.Duration) {
	if lag() <= maxDeliveryLag {
		return
	}
	t := time.NewTimer(maxDeliveryWait)
	defer t.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for lag() > maxDeliveryLag {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-tick.C:
		}
	}
}

// publishedIDs encodes the answer {"ids": {"<user_id>": <id>, …}} in the
// order of the request. Written by hand because encoding/json sorts a map's
// keys: for a 10,000-user publish that was half of the handler's CPU.
func publishedIDs(stored []parley.Event) []byte {
	b := make([]byte, 0, 16+len(stored)*32)
	b = append(b, `{"ids":{`...)
	for i, e := range stored {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, e.UserID)
		b = append(b, ':')
		b = strconv.AppendInt(b, e.ID, 10)
	}
	return append(b, "}}"...)
}

// appendJSONString appends s as a JSON string. User ids are plain ASCII
// (parley.NewID), which is copied as is; anything else goes through
// encoding/json, whose escaping stays the one rule for the API.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
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
