// Package httpapi is Parley's HTTP surface: routing, credentials, limits,
// body decoding and the error shape of SPEC §1, in front of the services
// that do the work.
package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/auth"
	"github.com/parley-chat/parley/internal/config"
	"github.com/parley-chat/parley/internal/metrics"
	"github.com/parley-chat/parley/internal/store"
	"github.com/parley-chat/parley/internal/stream"
	"golang.org/x/sync/semaphore"
)

// Presence decorates users with their online state and last_seen.
type Presence interface {
	Decorate(users ...*parley.User)
}

// API holds what the handlers need. Fields are set by the server wiring.
type API struct {
	Config  config.Config
	Auth    *auth.Service
	Store   store.Store
	Streams *stream.Server
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// Ready reports whether the store answers, for /readyz.
	Ready func(ctx context.Context) error
	// Presence may be nil, in which case everyone is shown offline.
	Presence Presence
	// Web serves the browser app and SDK at every path outside /api/.
	Web http.Handler
	// Routes lets other parts (chat) add their handlers to the mux.
	Routes []func(mux *ServeMux, a *API)

	limiter *limiter
	// publishing holds the bytes of publishes in flight (PublishInFlight).
	publishing *semaphore.Weighted
	logins     *loginGuard
	// diagStreams counts open /api/diag/stream streams.
	diagStreams atomic.Int64
	trusted     []netip.Prefix
	patterns    []string
	// configs add route groups' settings to GET /api/config.
	configs []func(map[string]any)
	// iceServers is Config.ICEServers parsed, for GET /api/config.
	iceServers json.RawMessage
}

// addConfig lets a route group add its settings to GET /api/config. It is
// called while Handler builds the routes, before anything is served.
func (a *API) addConfig(f func(map[string]any)) { a.configs = append(a.configs, f) }

// ServeMux is the route table: an http.ServeMux that also records each
// pattern registered on it, so that the routes the server serves can be
// listed (Patterns) and checked against the OpenAPI document. Every route,
// the ones other parts add through API.Routes included, is registered here.
type ServeMux struct {
	mux      *http.ServeMux
	patterns []string
}

// Handle registers h for pattern, as http.ServeMux.Handle does.
func (m *ServeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.mux.Handle(pattern, h)
}

// HandleFunc registers f for pattern, as http.ServeMux.HandleFunc does.
func (m *ServeMux) HandleFunc(pattern string, f func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(f))
}

// Patterns returns the patterns Handler registered, in order: the route
// table as served.
func (a *API) Patterns() []string { return slices.Clone(a.patterns) }

// Handler builds the HTTP handler.
func (a *API) Handler() http.Handler {
	a.limiter = newLimiter(a.Config.RateLimit)
	a.logins = &loginGuard{}
	if a.Config.PublishInFlight > 0 {
		a.publishing = semaphore.NewWeighted(a.Config.PublishInFlight)
	}
	// Checked when the server was built, as below.
	a.trusted, _ = config.ParsePrefixes(a.Config.TrustedProxies)
	a.configs = nil
	// Checked when the server was built; an invalid value is served as none.
	if ice, err := config.ParseICEServers(a.Config.ICEServers); err == nil {
		a.iceServers = ice
	} else {
		a.iceServers = json.RawMessage("[]")
	}
	mux := &ServeMux{mux: http.NewServeMux()}

	mux.HandleFunc("POST /api/auth/register", a.register)
	mux.HandleFunc("POST /api/auth/login", a.login)
	mux.Handle("POST /api/auth/logout", a.authed(a.logout))
	mux.Handle("POST /api/auth/activity", a.authed(a.activity))
	mux.Handle("GET /api/me", a.authed(a.me))
	mux.Handle("GET /api/users", a.authed(a.users))
	mux.Handle("GET /api/users/{id}", a.authed(a.user))

	mux.HandleFunc("GET /api/events", a.noHead(a.events))
	mux.Handle("GET /api/events/poll", a.passive(a.poll))
	mux.HandleFunc("POST /api/publish", a.publish)

	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", a.Metrics.Handler())
	mux.HandleFunc("GET /api/config", a.clientConfig)
	mux.HandleFunc("GET /api/diag/stream", a.noHead(a.diagStream))
	mux.HandleFunc("GET /api/openapi.json", a.openAPI)
	for _, add := range a.Routes {
		add(mux, a)
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) { a.unrouted(w, r, allowed(mux.mux, r)) })
	// The web app takes every other path, but not another method of a
	// route above (POST /healthz is a 405 here, not the web app's 404).
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if a.Web != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			a.Web.ServeHTTP(w, r)
			return
		}
		if allow := allowed(mux.mux, r); len(allow) > 0 || a.Web == nil {
			a.unrouted(w, r, allow)
			return
		}
		a.Web.ServeHTTP(w, r)
	})
	a.patterns = mux.patterns
	return a.recover(a.observe(a.deadlines(a.cors(a.sameOrigin(mux.mux)))))
}

// PprofHandler serves /debug/pprof/. The server gives it a listener of its
// own (--pprof-addr, loopback by default), never the public one: profiles
// show memory contents and cost CPU, so they are for the operator only.
func PprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// unrouted answers a request no route took: 405 with Allow when the path
// exists for the methods allow, else 404, both in the SPEC's shape.
func (a *API) unrouted(w http.ResponseWriter, r *http.Request, allow []string) {
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		a.writeError(w, r, parley.Errorf(parley.EMethod, "method %s is not allowed here", r.Method))
		return
	}
	a.writeError(w, r, parley.NotFound)
}

// noHead refuses HEAD, which a GET pattern also takes, on a stream: a
// stream has no headers-only form, and the event loop writes to the
// connection itself, past net/http's dropping of HEAD bodies.
func (a *API) noHead(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			a.unrouted(w, r, []string{http.MethodGet})
			return
		}
		h(w, r)
	}
}

// allowed returns the methods a route of mux serves r's path with, the
// catch-alls aside.
func allowed(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodPut} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := mux.Handler(probe); pattern != "/api/" && pattern != "/" && pattern != "" {
			allow = append(allow, m)
		}
	}
	return allow
}

type principalKey struct{}

// Principal returns the authenticated caller of a request passed through authed.
func Principal(r *http.Request) *auth.Principal {
	p, _ := r.Context().Value(principalKey{}).(*auth.Principal)
	return p
}

// authed requires credentials and counts the request as activity.
func (a *API) authed(h http.HandlerFunc) http.Handler { return a.withAuth(h, true, false) }

// passive requires credentials without counting as activity (the poll).
func (a *API) passive(h http.HandlerFunc) http.Handler { return a.withAuth(h, false, false) }

func (a *API) withAuth(h http.HandlerFunc, activity, queryToken bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.authenticate(r, activity, queryToken)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}

func (a *API) authenticate(r *http.Request, activity, queryToken bool) (*auth.Principal, error) {
	tok := credential(r, queryToken)
	if tok == "" {
		return nil, parley.Errorf(parley.EUnauthorized, "credentials required")
	}
	p, err := a.Auth.Authenticate(r.Context(), tok, activity)
	if err != nil {
		return nil, err
	}
	if !a.limiter.allow(p.User.ID) {
		return nil, &parley.Error{Code: parley.ERateLimited, Message: "too many requests", RetryAfter: time.Second}
	}
	return p, nil
}

// credential finds the token in the SPEC's order: bearer header, session
// cookie, and for the event stream only the token query parameter.
func credential(r *http.Request, queryToken bool) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "Bearer ") {
			return strings.TrimSpace(h[7:])
		}
		return ""
	}
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		return c.Value
	}
	if queryToken {
		return r.URL.Query().Get("token")
	}
	return ""
}

// recover turns a panic into a logged 500 so one bad request cannot take the
// process down.
func (a *API) recover(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				a.Logger.Error("panic", "method", r.Method, "path", r.URL.Path, "panic", p)
				a.writeError(w, r, parley.Errorf(parley.EInternal, "internal error"))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// observe records request counts and latencies by route pattern.
func (a *API) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		method := metricMethod(r.Method)
		a.Metrics.Requests.WithLabelValues(method, route, statusText(rec.code)).Inc()
		if route != "GET /api/events" && route != "GET /api/diag/stream" {
			a.Metrics.RequestTime.WithLabelValues(method, route).Observe(time.Since(start).Seconds())
		}
		if a.Logger.Enabled(r.Context(), slog.LevelDebug) {
			a.Logger.Debug("request", "method", r.Method, "route", route, "code", rec.code, "dur", time.Since(start), "client", a.clientIP(r))
		}
	})
}

// metricMethod is the method as a metric label. A label value is a series
// kept for the life of the process, and the method is whatever string the
// client sent: 5,000 requests with made-up methods grew /metrics from 55 KB
// to 306 MB. Routes are already bounded (a pattern, or "unmatched").
func metricMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

func statusText(code int) string {
	const digits = "0123456789"
	return string([]byte{digits[code/100%10], digits[code/10%10], digits[code%10]})
}

// recorder remembers the status code; Unwrap keeps http.ResponseController
// (flush, write deadlines) working through it.
type recorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// cors answers preflights and marks responses for the configured origins
// only; other origins get no CORS headers, so browsers keep them out.
func (a *API) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := origin != "" && slices.Contains(a.Config.CORSOrigins, origin)
		if allowed {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Add("Vary", "Origin")
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			if allowed {
				h := w.Header()
				h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE, OPTIONS")
				h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID")
				h.Set("Access-Control-Max-Age", "600")
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
