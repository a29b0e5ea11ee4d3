package forward_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
)

func TestPolicy(t *testing.T) {
	peers := []config.Peer{
		{Name: "exiter", Exit: true},
		{Name: "lim", Targets: []string{
			"db.corp:5432",
			"*.web.corp:80-443",
			"10.1.0.0/16:*",
			"[fd00::/8]:22",
			"192.168.1.5:22",
		}},
		{Name: "none"},
	}
	exposes := []config.Expose{
		{Name: "rdp", Target: "127.0.0.1:3389", Peers: []string{"lim"}},
		{Name: "ssh", Target: "localhost:22", Peers: []string{"exiter", "lim"}},
		{Name: "ghost", Target: "127.0.0.1:1", Peers: []string{"nobody"}},
	}
	r := newResolver(map[string]string{
		"localhost":      "::1,127.0.0.1",
		"example.com":    "93.184.215.14,2606:2800:21f:cb07:6820:80da:af6b:8b2c",
		"db.corp":        "10.9.9.9",
		"a.web.corp":     "172.16.0.80",
		"web.corp":       "172.16.0.1",
		"inside.test":    "10.1.7.7",
		"evil.test":      "8.8.8.8",
		"mixed.test":     "8.8.8.8,10.1.5.5,::ffff:10.1.5.6",
		"mapped.test":    "::ffff:10.1.2.3",
		"mapevil.test":   "::ffff:8.8.8.8",
		"v6.test":        "fd00::beef",
		"duplicate.test": "10.1.0.1,::ffff:10.1.0.1",
	})
	pol, err := forward.NewPolicy(peers, exposes, r)
	if err != nil {
		t.Fatal(err)
	}

	tests := []authorizeCase{
		// Unknown peers get nothing.
		{"mallory", forward.ServiceRequest("rdp"), forward.CodeNotAllowed, nil},
		{"mallory", forward.TargetRequest("10.1.0.1:80"), forward.CodeNotAllowed, nil},
		{"nobody", forward.ServiceRequest("ghost"), forward.CodeNotAllowed, nil},
		// Exposes.
		{"lim", forward.ServiceRequest("rdp"), 0, []string{"127.0.0.1:3389"}},
		{"exiter", forward.ServiceRequest("rdp"), forward.CodeNotAllowed, nil},
		{"none", forward.ServiceRequest("rdp"), forward.CodeNotAllowed, nil},
		{"lim", forward.ServiceRequest("nosuch"), forward.CodeNotAllowed, nil},
		{"lim", forward.ServiceRequest("RDP"), forward.CodeNotAllowed, nil},
		{"exiter", forward.ServiceRequest("ssh"), 0, []string{"[::1]:22", "127.0.0.1:22"}},
		// Exit peers may dial anything that resolves.
		{"exiter", forward.TargetRequest("example.com:443"), 0, []string{"93.184.215.14:443", "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443"}},
		{"exiter", forward.TargetRequest("8.8.8.8:53"), 0, []string{"8.8.8.8:53"}},
		{"exiter", forward.TargetRequest("[::ffff:8.8.8.8]:53"), 0, []string{"8.8.8.8:53"}},
		{"exiter", forward.TargetRequest("nosuch.test:80"), forward.CodeHostUnreachable, nil},
		{"exiter", forward.TargetRequest("bad:port"), forward.CodeAddrNotSupported, nil},
		// Peers without exit or targets may dial nothing.
		{"none", forward.TargetRequest("10.1.0.1:80"), forward.CodeNotAllowed, nil},
		// Name patterns.
		{"lim", forward.TargetRequest("db.corp:5432"), 0, []string{"10.9.9.9:5432"}},
		{"lim", forward.TargetRequest("DB.Corp.:5432"), 0, []string{"10.9.9.9:5432"}},
		{"lim", forward.TargetRequest("db.corp:5433"), forward.CodeNotAllowed, nil},
		{"lim", forward.TargetRequest("10.9.9.9:5432"), forward.CodeNotAllowed, nil},
		// Wildcards and port ranges.
		{"lim", forward.TargetRequest("a.web.corp:443"), 0, []string{"172.16.0.80:443"}},
		{"lim", forward.TargetRequest("a.web.corp:80"), 0, []string{"172.16.0.80:80"}},
		{"lim", forward.TargetRequest("a.web.corp:444"), forward.CodeNotAllowed, nil},
		{"lim", forward.TargetRequest("web.corp:443"), forward.CodeNotAllowed, nil},
		{"lim", forward.TargetRequest("x.web.corp:443"), forward.CodeHostUnreachable, nil},
		// CIDRs and IPs.
		{"lim", forward.TargetRequest("10.1.2.3:9999"), 0, []string{"10.1.2.3:9999"}},
		{"lim", forward.TargetRequest("10.2.0.1:80"), forward.CodeNotAllowed, nil},
		{"lim", forward.TargetRequest("192.168.1.5:22"), 0, []string{"192.168.1.5:22"}},
		{"lim", forward.TargetRequest("192.168.1.5:23"), forward.CodeNotAllowed, nil},
		{"lim", forward.TargetRequest("[fd00::1]:22"), 0, []string{"[fd00::1]:22"}},
		{"lim", forward.TargetRequest("[fd00::1]:23"), forward.CodeNotAllowed, nil},
		{"lim", forward.TargetRequest("[fe80::1]:22"), forward.CodeNotAllowed, nil},
		// IPv4-mapped IPv6 is unmapped before matching and dialing.
		{"lim", forward.TargetRequest("[::ffff:10.1.2.3]:80"), 0, []string{"10.1.2.3:80"}},
		{"lim", forward.TargetRequest("[::ffff:8.8.8.8]:80"), forward.CodeNotAllowed, nil},
		{"lim", forward.TargetRequest("mapped.test:80"), 0, []string{"10.1.2.3:80"}},
		{"lim", forward.TargetRequest("mapevil.test:80"), forward.CodeNotAllowed, nil},
		{"lim", forward.TargetRequest("duplicate.test:80"), 0, []string{"10.1.0.1:80"}},
		// Names are resolved at the exit and every address is checked:
		// only the allowed ones are dialled.
		{"lim", forward.TargetRequest("inside.test:80"), 0, []string{"10.1.7.7:80"}},
		{"lim", forward.TargetRequest("evil.test:80"), forward.CodeNotAllowed, nil},
		{"lim", forward.TargetRequest("mixed.test:80"), 0, []string{"10.1.5.5:80", "10.1.5.6:80"}},
		{"lim", forward.TargetRequest("v6.test:22"), 0, []string{"[fd00::beef]:22"}},
		// Malformed targets.
		{"lim", forward.TargetRequest("10.1.2.3"), forward.CodeAddrNotSupported, nil},
		{"lim", forward.TargetRequest("10.1.2.3:0"), forward.CodeAddrNotSupported, nil},
		{"lim", forward.TargetRequest("[fe80::1%eth0]:22"), forward.CodeAddrNotSupported, nil},
	}
	checkAuthorize(t, pol, tests)
}

func TestPolicyNoLookupWhenDenied(t *testing.T) {
	r := newResolver(nil)
	pol, err := forward.NewPolicy([]config.Peer{{Name: "none"}}, nil, r)
	if err != nil {
		t.Fatal(err)
	}
	pol.Authorize(context.Background(), "none", forward.TargetRequest("a.test:80"))
	pol.Authorize(context.Background(), "mallory", forward.TargetRequest("b.test:80"))
	if calls := r.Calls(); len(calls) != 0 {
		t.Errorf("resolver called for denied peers: %v", calls)
	}
}

func TestPolicyBadPattern(t *testing.T) {
	_, err := forward.NewPolicy([]config.Peer{{Name: "p", Targets: []string{"10.0.0.0/33:*"}}}, nil, nil)
	if err == nil {
		t.Fatal("NewPolicy accepted a bad pattern")
	}
}

var _ forward.Resolver = newResolver(nil)

// authorizeCase is one request to Policy.Authorize and its verdict.
type authorizeCase struct {
	peer  string
	req   forward.Request
	code  byte     // 0: allowed
	addrs []string // when allowed
}

// checkAuthorize asks pol each case's request, as a subtest, and checks
// the refusal code, or the exact addresses granted.
func checkAuthorize(t *testing.T, pol *forward.Policy, tests []authorizeCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.peer, tt.req), func(t *testing.T) {
			g, err := pol.Authorize(context.Background(), tt.peer, tt.req)
			if tt.code != 0 {
				if err == nil {
					t.Fatalf("allowed %v, want code %d", g.Addrs, tt.code)
				}
				if code := refusalCode(t, err); code != tt.code {
					t.Fatalf("code %d (%v), want %d", code, err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			var got []string
			for _, a := range g.Addrs {
				got = append(got, a.String())
			}
			if !slices.Equal(got, tt.addrs) {
				t.Fatalf("addrs %v, want %v", got, tt.addrs)
			}
		})
	}
}

// TestPolicyAlwaysRefused is the broadcast and multicast half of issue
// 15's finding 11: exit = true and the broadest patterns name hosts, never
// every host of a network at once, nor the exit's own listeners.
func TestPolicyAlwaysRefused(t *testing.T) {
	peers := []config.Peer{
		{Name: "exiter", Exit: true},
		{Name: "broad", Targets: []string{"0.0.0.0/0:*", "[::/0]:*", "*:*"}},
	}
	r := newResolver(map[string]string{
		"bcast.test": "255.255.255.255",
		"mcast.test": "239.1.2.3,10.0.0.7",
	})
	pol, err := forward.NewPolicy(peers, nil, r)
	if err != nil {
		t.Fatal(err)
	}
	pol = pol.WithSelf(fakeSelf{netip.MustParseAddrPort("127.0.0.1:7780"): true, netip.MustParseAddrPort("10.0.0.7:1080"): true})
	var tests []authorizeCase
	for _, peer := range []string{"exiter", "broad"} {
		tests = append(tests,
			authorizeCase{peer, forward.TargetRequest("255.255.255.255:80"), forward.CodeNotAllowed, nil},
			authorizeCase{peer, forward.Request{Kind: forward.KindUDPTarget, Payload: "255.255.255.255:67"}, forward.CodeNotAllowed, nil},
			authorizeCase{peer, forward.Request{Kind: forward.KindUDPTarget, Payload: "224.0.0.251:5353"}, forward.CodeNotAllowed, nil},
			authorizeCase{peer, forward.TargetRequest("239.255.255.250:1900"), forward.CodeNotAllowed, nil},
			authorizeCase{peer, forward.Request{Kind: forward.KindUDPTarget, Payload: "[ff02::1]:9"}, forward.CodeNotAllowed, nil},
			authorizeCase{peer, forward.TargetRequest("[64:ff9b::ffff:ffff]:80"), forward.CodeNotAllowed, nil},
			authorizeCase{peer, forward.TargetRequest("[2002:e000:0001::1]:80"), forward.CodeNotAllowed, nil},
			authorizeCase{peer, forward.TargetRequest("bcast.test:80"), forward.CodeNotAllowed, nil},
			authorizeCase{peer, forward.TargetRequest("mcast.test:80"), 0, []string{"10.0.0.7:80"}},
			// The exit's own listeners, as Self names them.
			authorizeCase{peer, forward.TargetRequest("127.0.0.1:7780"), forward.CodeNotAllowed, nil},
			authorizeCase{peer, forward.TargetRequest("mcast.test:1080"), forward.CodeNotAllowed, nil},
			authorizeCase{peer, forward.Request{Kind: forward.KindUDPTarget, Payload: "127.0.0.1:7780"}, 0, []string{"127.0.0.1:7780"}},
			authorizeCase{peer, forward.TargetRequest("127.0.0.1:7781"), 0, []string{"127.0.0.1:7781"}},
		)
	}
	checkAuthorize(t, pol, tests)
}

// fakeSelf reserves its TCP addresses.
type fakeSelf map[netip.AddrPort]bool

func (s fakeSelf) Reserved(network string, a netip.AddrPort) bool { return network == "tcp" && s[a] }
