package httpapi_test

import (
	"net/netip"
	"testing"

	"github.com/parley-chat/parley/internal/httpapi"
)

func TestLimitPrefix(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"203.0.113.7", "203.0.113.7/32"},
		{"::ffff:203.0.113.7", "203.0.113.7/32"},
		{"2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"fe80::1%eth0", "fe80::/64"},
		{"::1", "::/64"},
	} {
		if got := httpapi.LimitPrefix(netip.MustParseAddr(c.addr)).String(); got != c.want {
			t.Errorf("LimitPrefix(%s) = %s, want %s", c.addr, got, c.want)
		}
	}
}
