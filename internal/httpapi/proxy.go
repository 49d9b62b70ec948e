package httpapi

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/parley-chat/parley"
	"github.com/parley-chat/parley/internal/config"
)

// peerAddr is the TCP peer of a request.
func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// trustedAddr reports whether a is one of the configured reverse proxies.
func (a *API) trustedAddr(addr netip.Addr) bool {
	if !addr.IsValid() {
		return false
	}
	for _, p := range a.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// viaTrustedProxy reports whether the request reached us from a configured
// reverse proxy, whose forwarding headers may then be believed.
func (a *API) viaTrustedProxy(r *http.Request) bool {
	return len(a.trusted) > 0 && a.trustedAddr(peerAddr(r))
}

// clientAddr is the address of the client a request comes from: the TCP
// peer, or when the peer is a trusted proxy, the rightmost address of
// X-Forwarded-For that is not itself a trusted proxy (addresses to its left
// were written by the client and prove nothing), else X-Real-IP. A header
// from any other peer is ignored, so a client cannot choose its own address
// to escape the per-address limits. It is invalid when the peer's address
// cannot be read.
func (a *API) clientAddr(r *http.Request) netip.Addr {
	peer := peerAddr(r)
	if !peer.IsValid() || !a.viaTrustedProxy(r) {
		return peer
	}
	var hops []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(h, ",")...)
	}
	var leftmost netip.Addr
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(stripPort(hops[i])))
		if err != nil {
			// A hop we cannot read: the chain past it is not to be
			// trusted, so the last proxy's peer is the client.
			break
		}
		hop = hop.Unmap()
		if !a.trustedAddr(hop) {
			return hop
		}
		leftmost = hop
	}
	if len(hops) == 0 {
		if real, err := netip.ParseAddr(strings.TrimSpace(r.Header.Get("X-Real-IP"))); err == nil {
			return real.Unmap()
		}
	}
	if leftmost.IsValid() {
		return leftmost
	}
	return peer
}

// clientIP is clientAddr for logs: the TCP peer as Go gave it when its
// address cannot be read.
func (a *API) clientIP(r *http.Request) string {
	if addr := a.clientAddr(r); addr.IsValid() {
		return addr.String()
	}
	return r.RemoteAddr
}

// limitKey is the key of the request's client in the per-address rate
// limits (LimitPrefix).
func (a *API) limitKey(r *http.Request) string {
	if addr := a.clientAddr(r); addr.IsValid() {
		return "ip:" + LimitPrefix(addr).String()
	}
	return "ip:" + r.RemoteAddr
}

// LimitPrefix is what the per-address limits count an address under: an
// IPv4 address alone, an IPv6 address with the rest of its /64, the block
// a network gives one subscriber. Counted one by one, IPv6 addresses would
// give a client a fresh budget for each of its 2^64. Addresses that carry
// an IPv4 client's address are counted by that: NAT64's 64:ff9b::/96 by
// the address itself, a 6to4 site (2002::/16) by its /48, and a Teredo
// client (2001::/32), whose /64 is its relay's, by the whole address.
func LimitPrefix(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap().WithZone("")
	bits := 64
	switch {
	case addr.Is4():
		bits = 32
	case nat64.Contains(addr):
		b := addr.As16()
		addr, bits = netip.AddrFrom4([4]byte(b[12:])), 32
	case sixToFour.Contains(addr):
		bits = 48
	case teredo.Contains(addr):
		bits = 128
	}
	p, _ := addr.Prefix(bits) // valid for every length up to the address's
	return p
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
	teredo    = netip.MustParsePrefix("2001::/32")
)

// stripPort removes a port some proxies add to X-Forwarded-For entries
// ("203.0.113.7:51234", "[2001:db8::1]:443").
func stripPort(s string) string {
	s = strings.TrimSpace(s)
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return s
}

// overTLS reports whether the client's request reached the server encrypted:
// directly over TLS, or through a trusted proxy that says so with
// X-Forwarded-Proto: https (its first value, the client-facing hop).
func (a *API) overTLS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if !a.viaTrustedProxy(r) {
		return false
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	return strings.EqualFold(strings.TrimSpace(proto), "https")
}

// secureCookie is the session cookie's Secure attribute (--cookie-secure).
func (a *API) secureCookie(r *http.Request) bool {
	switch a.Config.CookieSecure {
	case config.CookieSecureAlways:
		return true
	case config.CookieSecureNever:
		return false
	}
	return a.overTLS(r)
}

// sessionCookieFor is the parley_session cookie carrying token until
// expires; an empty token clears it.
func (a *API) sessionCookieFor(r *http.Request, c *http.Cookie) *http.Cookie {
	c.Name, c.Path, c.HttpOnly, c.SameSite = sessionCookie, "/", true, http.SameSiteLaxMode
	c.Secure = a.secureCookie(r)
	return c
}

// sameOrigin refuses state-changing requests that carry the session cookie
// but come from another site. SameSite=Lax keeps the cookie off cross-site
// POSTs from other sites only; a sibling subdomain is the "same site" and
// would get through, and a bodiless POST (logout, activity, call accept)
// needs no Content-Type to be forged as a form. So with cookie credentials
// (and no Authorization header, which a page of another site cannot set
// without a CORS preflight) a POST, PUT, PATCH or DELETE must come from this
// server's own origin or one of --cors-origins, as told by Sec-Fetch-Site,
// else (older browsers) by Origin compared with the host asked for. A
// request carrying neither header is not from a browser that could be
// tricked, and passes.
func (a *API) sameOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
			next.ServeHTTP(w, r)
			return
		}
		if r.Header.Get("Authorization") != "" {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(sessionCookie); err != nil || c.Value == "" {
			next.ServeHTTP(w, r)
			return
		}
		if !a.fromOwnOrigin(r) {
			a.writeError(w, r, parley.Errorf(parley.EForbidden, "cross-site request refused: a request with the session cookie must come from this server's own pages or an allowed origin"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *API) fromOwnOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin != "" && containsFold(a.Config.CORSOrigins, origin) {
		return true
	}
	// Sec-Fetch-Site is written by the browser itself (pages cannot set
	// it) and compares origins as the browser saw them, so it holds behind
	// any proxy, whatever Host the proxy passes on.
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none": // none: typed in the address bar, a bookmark
		return true
	case "same-site", "cross-site":
		return false
	}
	// Browsers without Sec-Fetch-Site (before 2023 for Safari) send Origin.
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // "null" and the like: a sandboxed or opaque origin
	}
	return strings.EqualFold(u.Host, a.requestHost(r))
}

// requestHost is the host the client asked for: Host, or the trusted
// proxy's X-Forwarded-Host.
func (a *API) requestHost(r *http.Request) string {
	if a.viaTrustedProxy(r) {
		if h, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ","); strings.TrimSpace(h) != "" {
			return strings.TrimSpace(h)
		}
	}
	return r.Host
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(strings.TrimSuffix(v, "/"), s) {
			return true
		}
	}
	return false
}
