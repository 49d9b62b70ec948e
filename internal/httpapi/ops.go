package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/parley-chat/parley"
)

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if a.Ready != nil {
		if err := a.Ready(ctx); err != nil {
			a.writeError(w, r, parley.Errorf(parley.EUnavailable, "not ready: %v", err))
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// clientConfig serves the settings a client needs (GET /api/config).
func (a *API) clientConfig(w http.ResponseWriter, r *http.Request) {
	c := a.Config
	m := map[string]any{
		"heartbeat_ms":             c.Heartbeat.Milliseconds(),
		"retry_ms":                 c.Retry.Milliseconds(),
		"idle_timeout_ms":          c.IdleTimeout.Milliseconds(),
		"activity_interval_ms":     time.Minute.Milliseconds(),
		"presence_grace_ms":        c.PresenceGrace.Milliseconds(),
		"call_timeout_ms":          c.CallTimeout.Milliseconds(),
		"typing_stale_ms":          6000,
		"max_streams_per_user":     c.MaxStreamsPerUser,
		"max_body_chars":           c.MaxBodyChars,
		"body_limit_bytes":         c.BodyLimit,
		"publish_body_limit_bytes": c.PublishBodyLimit,
		"poll_max_wait_s":          30,
		"poll_max_events":          500,
		"rate_limit_per_s":         c.RateLimit,
		"registration":             c.Registration,
		"ice_servers":              a.iceServers,
	}
	for _, f := range a.configs {
		f(m)
	}
	writeJSON(w, http.StatusOK, m)
}

// diagStream is SPEC §7's proxy check: a tick a second for 30 s, then done.
//
// It needs no credentials, so the streams open at once are capped
// (MaxDiagStreams): beyond, 503 with Retry-After, rather than letting anyone
// hold connections and goroutines for free.
func (a *API) diagStream(w http.ResponseWriter, r *http.Request) {
	const ticks = 30
	if n := a.diagStreams.Add(1); a.Config.MaxDiagStreams > 0 && n > int64(a.Config.MaxDiagStreams) {
		a.diagStreams.Add(-1)
		a.writeError(w, r, &parley.Error{Code: parley.EUnavailable, Message: "too many diagnostic streams open; try again later", RetryAfter: ticks * time.Second})
		return
	}
	defer a.diagStreams.Add(-1)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "retry: %d\n\n", a.Config.Retry.Milliseconds())
	_ = rc.Flush()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for n := 1; n <= ticks; n++ {
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
		b, _ := json.Marshal(map[string]any{"n": n, "time": parley.T(time.Now())})
		_ = rc.SetWriteDeadline(time.Now().Add(a.Config.WriteTimeout))
		if _, err := fmt.Fprintf(w, "event: tick\ndata: %s\n\n", b); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
	}
	fmt.Fprintf(w, "event: done\ndata: {\"ticks\":%d}\n\n", ticks)
	_ = rc.Flush()
}
