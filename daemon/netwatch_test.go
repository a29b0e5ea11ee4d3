package daemon

import (
	"net/netip"
	"slices"
	"testing"
)

func TestMissing(t *testing.T) {
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		slices.SortFunc(out, netip.Addr.Compare)
		return out
	}
	for _, tc := range []struct {
		name       string
		a, b, want []netip.Addr
	}{
		{"same", addrs("10.0.0.2", "::1"), addrs("10.0.0.2", "::1"), nil},
		{"renumbered", addrs("10.0.0.2", "127.0.0.1"), addrs("10.0.0.201", "127.0.0.1"), addrs("10.0.0.2")},
		{"all gone", addrs("10.0.0.2", "fd00::2"), nil, addrs("10.0.0.2", "fd00::2")},
		{"only added", addrs("10.0.0.2"), addrs("10.0.0.2", "192.168.1.5"), nil},
	} {
		if got := missing(tc.a, tc.b); !slices.Equal(got, tc.want) {
			t.Errorf("%s: missing = %v, want %v", tc.name, got, tc.want)
		}
	}
}
