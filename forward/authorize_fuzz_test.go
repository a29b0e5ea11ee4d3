package forward

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/warren-p2p/warren/config"
)

// FuzzAuthorize builds a random grant (exit, or up to three patterns of
// every kind) and a random target (an IPv4 or IPv6 literal, or a name
// that resolves to random addresses), and checks Authorize against an
// independent reading of the grant: nothing outside the grant is ever
// authorised, nor any always-refused address (unspecified, broadcast,
// multicast, and those carried in NAT64, 6to4 and IPv4-compatible
// forms), nor the exit's own listener, whatever the grant says.
func FuzzAuthorize(f *testing.F) {
	f.Add(true, []byte{255, 255, 255, 255, 0, 80}, []byte{})
	f.Add(false, []byte{10, 1, 2, 3, 0, 22}, []byte{1, 10, 0, 0, 0, 8, 0, 0, 255, 255})
	f.Add(false, []byte{0x20, 0x02, 224, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80}, []byte{0, 0, 0, 0, 0, 0, 0, 0, 255, 255})
	f.Add(false, []byte{1, 127, 0, 0, 1}, []byte{3, 0, 0, 0, 0, 0, 0, 0, 255, 255})
	f.Fuzz(func(t *testing.T, exit bool, target, grant []byte) {
		pats := fzPatterns(grant)
		pol, err := NewPolicy([]config.Peer{{Name: "p", Exit: exit, Targets: pats}}, nil, fzNames{target})
		if err != nil {
			t.Fatalf("patterns %q: %v", pats, err)
		}
		pol = pol.WithSelf(fzSelfPort(7780))
		host, addrs, port := fzTarget(target)
		req := TargetRequest(net.JoinHostPort(host, fmt.Sprint(port)))
		g, err := pol.Authorize(context.Background(), "p", req)
		if err != nil {
			return // refusing is always safe; allowing is what is checked
		}
		for _, ap := range g.Addrs {
			a := ap.Addr()
			if ap.Port() != port || !containsAddr(addrs, a) {
				t.Fatalf("%s granted %v, which it does not resolve to (%v)", req, ap, addrs)
			}
			if refusedAlways(a) || port == 7780 {
				t.Fatalf("%s granted %v: always refused", req, ap)
			}
			if !exit && !fzGrants(pats, host, a, port) {
				t.Fatalf("%s granted %v outside the grant %q", req, ap, pats)
			}
		}
	})
}

// fzPatterns reads up to three target patterns from b, five bytes of
// kind and address then a port range each.
func fzPatterns(b []byte) []string {
	var out []string
	for len(b) >= 10 && len(out) < 3 {
		kind, a, bits, lo, hi := b[0]%5, b[1:5], b[5], binary.BigEndian.Uint16(b[6:]), binary.BigEndian.Uint16(b[8:])
		b = b[10:]
		lo, hi = min(lo, hi), max(lo, hi)
		lo = max(lo, 1)
		hi = max(hi, lo)
		var host string
		switch kind {
		case 0:
			host = "*"
		case 1:
			host = fmt.Sprintf("%d.%d.%d.%d/%d", a[0], a[1], a[2], a[3], bits%33)
			host = netip.MustParsePrefix(host).Masked().String()
		case 2:
			v6 := netip.AddrFrom16([16]byte{a[0], a[1], a[2], a[3]})
			host = "[" + netip.PrefixFrom(v6, int(bits%129)).Masked().String() + "]"
		case 3:
			host = "a.test"
		case 4:
			host = "*.test"
		}
		out = append(out, fmt.Sprintf("%s:%d-%d", host, lo, hi))
	}
	return out
}

// fzTarget reads the target from b: a kind byte, then for an IPv4 or
// IPv6 literal its address, or for a name the addresses it resolves to
// (fzNames), and a port.
func fzTarget(b []byte) (host string, addrs []netip.Addr, port uint16) {
	if len(b) < 3 {
		return "a.test", nil, 1
	}
	port = max(binary.BigEndian.Uint16(b[len(b)-2:]), 1)
	body := b[:len(b)-2]
	switch {
	case len(body) == 4:
		a := netip.AddrFrom4([4]byte(body))
		return a.String(), []netip.Addr{a}, port
	case len(body) == 16:
		a := netip.AddrFrom16([16]byte(body)).Unmap()
		return a.String(), []netip.Addr{a}, port
	}
	names := []string{"a.test", "b.a.test", "b.test"}
	return names[int(body[0])%len(names)], fzResolve(body[1:]), port
}

// fzResolve reads addresses from b, four bytes each.
func fzResolve(b []byte) []netip.Addr {
	var out []netip.Addr
	for ; len(b) >= 4; b = b[4:] {
		a := netip.AddrFrom4([4]byte(b[:4]))
		if b[0]&1 == 1 && len(b) >= 16 { // now and then an IPv6 address
			a, b = netip.AddrFrom16([16]byte(b[:16])).Unmap(), b[12:]
		}
		if !containsAddr(out, a) && a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

// fzNames resolves every name to the addresses fzTarget reads.
type fzNames struct{ target []byte }

func (r fzNames) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	_, addrs, _ := fzTarget(r.target)
	if len(addrs) == 0 {
		return nil, &net.DNSError{Err: "no such host", IsNotFound: true}
	}
	return addrs, nil
}

// fzSelfPort reserves one TCP port on every address.
type fzSelfPort uint16

func (s fzSelfPort) Reserved(network string, a netip.AddrPort) bool {
	return network == "tcp" && a.Port() == uint16(s)
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// refusedAlways is the independent reading of the addresses no grant
// reaches: unspecified, limited broadcast, multicast, and IPv6 forms that
// carry such an IPv4 address.
func refusedAlways(a netip.Addr) bool {
	b := a.As16()
	if a.Is4() {
		v := a.As4()
		return v == [4]byte{} || v == [4]byte{255, 255, 255, 255} || v[0] >= 224 && v[0] <= 239
	}
	if a == netip.IPv6Unspecified() || b[0] == 0xff {
		return true
	}
	if v4, ok := fzEmbedded(a); ok {
		return refusedAlways(v4)
	}
	return false
}

// fzEmbedded is the independent reading of the IPv4 address an IPv6
// address carries: NAT64 64:ff9b::/96, 6to4 2002::/16, IPv4-compatible
// ::/96 but for :: and ::1.
func fzEmbedded(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	zero := func(s []byte) bool { return strings.Trim(string(s), "\x00") == "" }
	switch {
	case b[0] == 0 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b && zero(b[4:12]):
		return netip.AddrFrom4([4]byte(b[12:])), true
	case b[0] == 0x20 && b[1] == 0x02:
		return netip.AddrFrom4([4]byte(b[2:6])), true
	case zero(b[:12]) && !(zero(b[12:15]) && b[15] <= 1):
		return netip.AddrFrom4([4]byte(b[12:])), true
	}
	return netip.Addr{}, false
}

// fzGrants is the independent reading of a targets list: some pattern
// matches host or a on port, and so does one for the IPv4 address a
// carries, if any.
func fzGrants(pats []string, host string, a netip.Addr, port uint16) bool {
	match := func(a netip.Addr) bool {
		for _, p := range pats {
			h, ports, _ := strings.Cut(p, ":")
			if i := strings.LastIndex(p, ":"); strings.HasPrefix(p, "[") {
				h, ports = p[1:strings.Index(p, "]")], p[i+1:]
			}
			var lo, hi uint16
			fmt.Sscanf(ports, "%d-%d", &lo, &hi)
			if port < lo || port > hi {
				continue
			}
			switch {
			case h == "*":
				return true
			case h == "a.test":
				if host == "a.test" {
					return true
				}
			case h == "*.test":
				if strings.HasSuffix(host, ".test") {
					return true
				}
			default:
				if pr, err := netip.ParsePrefix(h); err == nil && pr.Contains(a) {
					return true
				}
			}
		}
		return false
	}
	if !match(a) {
		return false
	}
	if v4, ok := fzEmbedded(a); ok {
		return match(v4)
	}
	return true
}
