package httpapi

import (
	"math"
	"net/http"
	"time"
)

// events serves GET /api/events. Credentials may also come from the token
// query parameter here, since EventSource cannot set headers. Opening a
// stream is not activity for the idle logout.
func (a *API) events(w http.ResponseWriter, r *http.Request) {
	turn, err := a.Streams.Admit(r.Context())
	if err != nil {
		return // the client left while waiting
	}
	defer turn.End()
	p, err := a.authenticate(r, false, true)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if err := a.Streams.Serve(w, r, p.User.ID, p.Session.ID, turn); err != nil {
		a.writeError(w, r, err)
	}
}

// poll serves GET /api/events/poll.
func (a *API) poll(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, err := intParam(q.Get("after"), "after", 0, 0, math.MaxInt64)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	wait, err := intParam(q.Get("wait"), "wait", 25, 0, 30)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	res, err := a.Streams.Poll(r.Context(), Principal(r).User.ID, after, time.Duration(wait)*time.Second)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}
