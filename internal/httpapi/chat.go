package httpapi

import (
	"encoding/json"
	"math"
	"net/http"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/chat"
)

// ChatRoutes returns the routes of SPEC §4 and §5 served by svc, to be added
// to API.Routes.
func ChatRoutes(svc *chat.Service) func(mux *ServeMux, a *API) {
	return func(mux *ServeMux, a *API) {
		h := &chatHandlers{a: a, svc: svc}
		mux.Handle("POST /api/conversations", a.authed(h.open))
		mux.Handle("GET /api/conversations", a.authed(h.list))
		mux.Handle("GET /api/conversations/{id}", a.authed(h.get))
		mux.Handle("GET /api/conversations/{id}/messages", a.authed(h.history))
		mux.Handle("POST /api/conversations/{id}/messages", a.authed(h.send))
		mux.Handle("POST /api/conversations/{id}/read", a.authed(h.read))
		mux.Handle("POST /api/conversations/{id}/typing", a.authed(h.typing))
		mux.Handle("PATCH /api/messages/{id}", a.authed(h.edit))
		mux.Handle("DELETE /api/messages/{id}", a.authed(h.remove))

		mux.Handle("POST /api/conversations/{id}/calls", a.authed(h.startCall))
		mux.Handle("GET /api/calls/{id}", a.authed(h.getCall))
		mux.Handle("POST /api/calls/{id}/accept", a.authed(h.answer(parley.CallActive)))
		mux.Handle("POST /api/calls/{id}/decline", a.authed(h.answer(parley.CallDeclined)))
		mux.Handle("POST /api/calls/{id}/end", a.authed(h.endCall))
		mux.Handle("POST /api/calls/{id}/signal", a.authed(h.signal))
	}
}

type chatHandlers struct {
	a   *API
	svc *chat.Service
}

// respond writes v with code, or the error.
func (h *chatHandlers) respond(w http.ResponseWriter, r *http.Request, code int, v any, err error) {
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	if v == nil {
		w.WriteHeader(code)
		return
	}
	writeJSON(w, code, v)
}

func (h *chatHandlers) open(w http.ResponseWriter, r *http.Request) {
	p := Principal(r)
	if p.User.Role != parley.RoleClient {
		// Refused before the body is looked at: the role decides, not the input.
		h.a.writeError(w, r, parley.Errorf(parley.ERoleForbidden, "only clients open conversations"))
		return
	}
	var req chat.Opening
	if err := decode(w, r, h.a.Config.BodyLimit, &req); err != nil {
		h.a.writeError(w, r, err)
		return
	}
	c, created, err := h.svc.Open(r.Context(), p.User, req)
	code := http.StatusCreated
	if !created {
		code = http.StatusOK
	}
	h.respond(w, r, code, c, err)
}

func (h *chatHandlers) list(w http.ResponseWriter, r *http.Request) {
	limit, err := intParam(r.URL.Query().Get("limit"), "limit", chat.MaxConversations, 1, math.MaxInt32)
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	cs, err := h.svc.Conversations(r.Context(), Principal(r).User.ID, int(limit))
	h.respond(w, r, http.StatusOK, map[string]any{"conversations": cs}, err)
}

func (h *chatHandlers) get(w http.ResponseWriter, r *http.Request) {
	c, err := h.svc.Conversation(r.Context(), Principal(r).User.ID, r.PathValue("id"))
	h.respond(w, r, http.StatusOK, c, err)
}

func (h *chatHandlers) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var p chat.Page
	before, err := intParam(q.Get("before_seq"), "before_seq", 0, 1, math.MaxInt64)
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	after, err := intParam(q.Get("after_seq"), "after_seq", 0, 0, math.MaxInt64)
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	// A limit above the maximum is served as the maximum, as has_more tells
	// the client to ask again; nonsense is refused.
	limit, err := intParam(q.Get("limit"), "limit", chat.DefaultPageSize, 1, math.MaxInt32)
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	p.BeforeSeq, p.AfterSeq, p.Limit = before, after, int(min(limit, chat.MaxPageSize))
	p.Forward = q.Has("after_seq")
	msgs, more, err := h.svc.Messages(r.Context(), Principal(r).User.ID, r.PathValue("id"), p)
	if msgs == nil {
		msgs = []*parley.Message{}
	}
	h.respond(w, r, http.StatusOK, map[string]any{"messages": msgs, "has_more": more}, err)
}

func (h *chatHandlers) send(w http.ResponseWriter, r *http.Request) {
	var req chat.Message
	if err := decode(w, r, h.a.Config.BodyLimit, &req); err != nil {
		h.a.writeError(w, r, err)
		return
	}
	m, created, err := h.svc.SendEncoded(r.Context(), Principal(r).User.ID, r.PathValue("id"), req)
	if err != nil {
		h.a.writeError(w, r, err)
		return
	}
	code := http.StatusCreated
	if !created {
		code = http.StatusOK
	}
	writeRawJSON(w, code, m)
}

func (h *chatHandlers) edit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Body *string `json:"body"`
	}
	if err := decode(w, r, h.a.Config.BodyLimit, &req); err != nil {
		h.a.writeError(w, r, err)
		return
	}
	if req.Body == nil {
		h.a.writeError(w, r, parley.Invalid("body", "body is required"))
		return
	}
	m, err := h.svc.Edit(r.Context(), Principal(r).User.ID, r.PathValue("id"), *req.Body)
	h.respond(w, r, http.StatusOK, m, err)
}

func (h *chatHandlers) remove(w http.ResponseWriter, r *http.Request) {
	m, err := h.svc.Delete(r.Context(), Principal(r).User.ID, r.PathValue("id"))
	h.respond(w, r, http.StatusOK, m, err)
}

func (h *chatHandlers) read(w http.ResponseWriter, r *http.Request) {
	var req struct {
		UpToSeq *int64 `json:"up_to_seq"`
	}
	if err := decode(w, r, h.a.Config.BodyLimit, &req); err != nil {
		h.a.writeError(w, r, err)
		return
	}
	if req.UpToSeq == nil {
		h.a.writeError(w, r, parley.Invalid("up_to_seq", "up_to_seq is required"))
		return
	}
	err := h.svc.MarkRead(r.Context(), Principal(r).User.ID, r.PathValue("id"), *req.UpToSeq)
	h.respond(w, r, http.StatusNoContent, nil, err)
}

func (h *chatHandlers) typing(w http.ResponseWriter, r *http.Request) {
	var req struct {
		State string `json:"state"`
	}
	if err := decode(w, r, h.a.Config.BodyLimit, &req); err != nil {
		h.a.writeError(w, r, err)
		return
	}
	err := h.svc.Typing(r.Context(), Principal(r).User.ID, r.PathValue("id"), req.State)
	h.respond(w, r, http.StatusNoContent, nil, err)
}

func (h *chatHandlers) startCall(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Media string `json:"media"`
	}
	if err := decode(w, r, h.a.Config.BodyLimit, &req); err != nil {
		h.a.writeError(w, r, err)
		return
	}
	c, err := h.svc.StartCall(r.Context(), Principal(r).User.ID, r.PathValue("id"), req.Media)
	h.respond(w, r, http.StatusCreated, c, err)
}

func (h *chatHandlers) getCall(w http.ResponseWriter, r *http.Request) {
	c, err := h.svc.Call(r.Context(), Principal(r).User.ID, r.PathValue("id"))
	h.respond(w, r, http.StatusOK, c, err)
}

func (h *chatHandlers) answer(to string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := h.svc.Answer(r.Context(), Principal(r).User.ID, r.PathValue("id"), to)
		h.respond(w, r, http.StatusOK, c, err)
	}
}

func (h *chatHandlers) endCall(w http.ResponseWriter, r *http.Request) {
	c, err := h.svc.End(r.Context(), Principal(r).User.ID, r.PathValue("id"))
	h.respond(w, r, http.StatusOK, c, err)
}

func (h *chatHandlers) signal(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Payload json.RawMessage `json:"payload"`
	}
	// The body may carry a full 64 KiB payload plus its envelope even when the
	// general body limit is set lower.
	limit := max(h.a.Config.BodyLimit, chat.MaxSignalPayload+4<<10)
	if err := decodeOpaque(w, r, limit, &req); err != nil {
		h.a.writeError(w, r, err)
		return
	}
	err := h.svc.Signal(r.Context(), Principal(r).User.ID, r.PathValue("id"), req.Payload)
	h.respond(w, r, http.StatusAccepted, nil, err)
}
