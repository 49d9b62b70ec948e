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
		{"64:ff9b::203.0.113.7", "203.0.113.7/32"},
		{"2002:cb00:7107:1::1", "2002:cb00:7107::/48"},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:4136:e378:8000:63bf:3fff:fdd2/128"},
		{"::1", "::/64"},
	} {
		if got := httpapi.LimitPrefix(netip.MustParseAddr(c.addr)).String(); got != c.want {
			t.Errorf("LimitPrefix(%s) = %s, want %s", c.addr, got, c.want)
		}
	}
}
