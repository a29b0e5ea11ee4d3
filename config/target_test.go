package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseTargetPattern(t *testing.T) {
	tests := []struct {
		in, canonical string // canonical "" means in is canonical
	}{
		{"*:*", ""},
		{"*:22", ""},
		{"*.lan:*", ""},
		{"*.Example.COM.:443", "*.example.com:443"},
		{"Intranet:80-90", "intranet:80-90"},
		{"10.0.0.0/8:22", ""},
		{"10.1.2.3/8:22", "10.0.0.0/8:22"},
		{"192.168.1.10:3389", ""},
		{"[fd00::/8]:80-90", ""},
		{"[::1]:22", ""},
		{"[::ffff:10.0.0.1]:22", "10.0.0.1:22"},
		{"[::ffff:10.0.0.0/104]:22", "10.0.0.0/8:22"},
		{"host:1-65535", ""},
	}
	for _, tc := range tests {
		p, err := ParseTargetPattern(tc.in)
		if err != nil {
			t.Errorf("ParseTargetPattern(%q): %v", tc.in, err)
			continue
		}
		want := tc.canonical
		if want == "" {
			want = tc.in
		}
		if got := p.String(); got != want {
			t.Errorf("ParseTargetPattern(%q).String() = %q, want %q", tc.in, got, want)
		}
	}
}

func TestParseTargetPatternErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "missing port"},
		{"host", "missing port"},
		{"fd00::/8:22", "IPv6 addresses need brackets"},
		{":22", "missing host"},
		{"host:", `port "" is not a number`},
		{"host:0", `port "0" is not a number`},
		{"host:65536", `port "65536" is not a number`},
		{"host:ssh", `port "ssh" is not a number`},
		{"host:90-80", "backwards"},
		{"host:80-", `port "" is not a number`},
		{"host:*-80", `port "*" is not a number`},
		{"10.0.0.0/33:22", "not a valid CIDR"},
		{"[10.0.0.0/8]:22", "not a valid IPv6 CIDR"},
		{"[10.0.0.1]:22", "brackets are only for IPv6"},
		{"[fe80::1%eth0]:22", "zoned"},
		{"foo*.lan:22", `"*" may only be the whole host`},
		{"*.:22", `is not "*." followed by a domain name`},
		{"*.*.lan:22", `is not "*." followed by a domain name`},
		{"bad host:22", "is not a host name, IP address or CIDR"},
		// IPv4 addresses in disguise (inet_aton forms) are no names: as
		// names they would match text, as in "127.0.0.1" for "*.0.1".
		{"10.1:22", "is not a host name, IP address or CIDR"},
		{"2130706433:22", "is not a host name, IP address or CIDR"},
		{"0x7f.1:22", "is not a host name, IP address or CIDR"},
		{"0177.0.0.1:22", "is not a host name, IP address or CIDR"},
		{"10.0.0.1.:22", "is not a host name, IP address or CIDR"},
		{"*.0.1:22", `is not "*." followed by a domain name`},
		{"*.lan.0x1f:22", `is not "*." followed by a domain name`},
	}
	for _, tc := range tests {
		p, err := ParseTargetPattern(tc.in)
		if err == nil {
			t.Errorf("ParseTargetPattern(%q) = %v, want error containing %q", tc.in, p, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"`+tc.in+`"`) {
			t.Errorf("ParseTargetPattern(%q) error = %q, want it to quote the pattern and contain %q", tc.in, err, tc.want)
		}
	}
}

func TestTargetPatternMatch(t *testing.T) {
	ip := netip.MustParseAddr
	none := netip.Addr{}
	tests := []struct {
		pattern string
		host    string
		ip      netip.Addr
		port    uint16
		want    bool
	}{
		{"*:*", "anything", none, 1, true},
		{"*:*", "10.0.0.1", ip("10.0.0.1"), 65535, true},
		{"*:22", "host", none, 23, false},

		{"host.lan:22", "host.lan", none, 22, true},
		{"host.lan:22", "HOST.Lan.", none, 22, true},
		{"host.lan:22", "host.lan", none, 2222, false},
		{"host.lan:22", "other.lan", none, 22, false},
		{"host.lan:22", "sub.host.lan", none, 22, false},

		{"*.example.com:*", "sub.example.com", none, 443, true},
		{"*.example.com:*", "a.b.example.com", none, 443, true},
		{"*.example.com:*", "SUB.EXAMPLE.COM.", none, 443, true},
		{"*.example.com:*", "example.com", none, 443, false},
		{"*.example.com:*", "badexample.com", none, 443, false},
		{"*.example.com:*", ".example.com", none, 443, false},

		{"10.0.0.0/8:22", "10.1.2.3", ip("10.1.2.3"), 22, true},
		{"10.0.0.0/8:22", "10.1.2.3", ip("10.1.2.3"), 80, false},
		{"10.0.0.0/8:22", "11.0.0.1", ip("11.0.0.1"), 22, false},
		{"10.0.0.0/8:22", "::ffff:10.0.0.1", ip("::ffff:10.0.0.1"), 22, true},
		{"10.0.0.0/8:22", "internal", none, 22, false},
		{"10.0.0.0/8:22", "internal", ip("10.9.9.9"), 22, true}, // resolved by the caller
		{"10.0.0.1:22", "10.0.0.1", ip("10.0.0.1"), 22, true},
		{"10.0.0.1:22", "10.0.0.2", ip("10.0.0.2"), 22, false},
		{"[::ffff:10.0.0.1]:22", "10.0.0.1", ip("10.0.0.1"), 22, true},

		{"[fd00::/8]:80-90", "fd12::1", ip("fd12::1"), 80, true},
		{"[fd00::/8]:80-90", "fd12::1", ip("fd12::1"), 90, true},
		{"[fd00::/8]:80-90", "fd12::1", ip("fd12::1"), 91, false},
		{"[fd00::/8]:80-90", "fd12::1", ip("fd12::1"), 79, false},
		{"[fd00::/8]:80-90", "fe80::1", ip("fe80::1"), 80, false},
		{"[fe80::/10]:22", "fe80::1%eth0", ip("fe80::1%eth0"), 22, true},
		{"[::1]:22", "::1", ip("::1"), 22, true},
		{"[::1]:22", "127.0.0.1", ip("127.0.0.1"), 22, false},

		// A name pattern is about names: it does not match an IP that
		// happens to be spelled like it, nor does an IP pattern match a name.
		{"localhost:22", "127.0.0.1", ip("127.0.0.1"), 22, false},
		{"127.0.0.1:22", "localhost", none, 22, false},
	}
	for _, tc := range tests {
		p, err := ParseTargetPattern(tc.pattern)
		if err != nil {
			t.Fatalf("ParseTargetPattern(%q): %v", tc.pattern, err)
		}
		if got := p.Match(tc.host, tc.ip, tc.port); got != tc.want {
			t.Errorf("%q.Match(%q, %v, %d) = %v, want %v", tc.pattern, tc.host, tc.ip, tc.port, got, tc.want)
		}
	}
}

func TestZeroTargetPatternMatchesNothing(t *testing.T) {
	var p TargetPattern
	if p.Match("host", netip.MustParseAddr("10.0.0.1"), 22) {
		t.Error("zero TargetPattern matched")
	}
}

func TestValidHostname(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"example.com", true},
		{"Example.COM.", true},
		{"host1", true},
		{"1host", true},
		{"10.0.0.1.example", true},
		{"0x7f.example", true},
		{"under_score.test", true},
		{"a-b.0xg", true}, // not hex
		{"0x", false},     // "0x" is a number to inet_aton and WHATWG
		{"1", false},
		{"127.1", false},
		{"0x7f.1", false},
		{"127.0.0.0x1", false},
		{"2130706433", false},
		{"0177.0.0.1", false},
		{"010.0.0.1", false},
		{"10.0.0.1.", false},
		{"example.0XFF", false},
		{"", false},
		{".", false},
		{"a..b", false},
		{"a b", false},
	}
	for _, tc := range tests {
		if got := ValidHostname(tc.in); got != tc.want {
			t.Errorf("ValidHostname(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
