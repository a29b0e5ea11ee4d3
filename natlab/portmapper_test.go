package natlab

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

// TestMiniupnpdConfig reads what each port mapper switches on, without a
// kernel; TestLabPortMapping in package portmap checks what they do.
func TestMiniupnpdConfig(t *testing.T) {
	lan := netip.MustParsePrefix("10.1.0.0/24")
	stun := netip.MustParseAddrPort("203.0.113.2:3478")
	for _, tc := range []struct {
		pm   PortMapper
		want []string
	}{
		{PortMapAll, []string{"enable_upnp=yes", "enable_natpmp=yes", "force_igd_desc_v1=no"}},
		{PortMapUPnP, []string{"enable_upnp=yes", "enable_natpmp=no", "force_igd_desc_v1=no"}},
		{PortMapUPnPv1, []string{"enable_upnp=yes", "enable_natpmp=no", "force_igd_desc_v1=yes"}},
		{PortMapNATPMP, []string{"enable_upnp=no", "enable_natpmp=yes"}},
		{PortMapPCP, []string{"enable_upnp=no", "enable_natpmp=yes"}},
	} {
		conf := miniupnpdConfig(tc.pm, lan, stun)
		for _, w := range append(tc.want, "ext_ifname=wan0", "listening_ip=lan0", "secure_mode=yes",
			"ext_stun_host=203.0.113.2", "ext_stun_port=3478", "allow 1024-65535 10.1.0.0/24 1024-65535",
			"deny 0-65535 0.0.0.0/0 0-65535") {
			if !strings.Contains(conf, w+"\n") {
				t.Errorf("%s: config lacks %q:\n%s", tc.pm, w, conf)
			}
		}
	}
	if miniupnpdConfig(PortMapAll, lan, stun) == miniupnpdConfig(PortMapAll, lan, stun) {
		t.Error("two routers got the same UUID")
	}
}

func TestPortMapperRules(t *testing.T) {
	r := portMapperRules("203.0.113.2", "203.0.113.3", 3478, "")
	for _, w := range []string{"table inet miniupnpd", "jump prerouting_miniupnpd", "priority srcnat - 1",
		"insert rule ip natlab forward ct status dnat accept",
		`ip saddr { 203.0.113.2, 203.0.113.3 } udp sport { 3478, 3479 } accept`} {
		if !strings.Contains(r, w) {
			t.Errorf("rules lack %q:\n%s", w, r)
		}
	}
	if strings.Contains(r, "@th") {
		t.Errorf("a router with every protocol drops some:\n%s", r)
	}
	if r := portMapperRules("a", "b", 1, "2"); !strings.Contains(r, `iifname "lan0" udp dport 5351 @th,64,8 2 drop`) {
		t.Errorf("NAT-PMP-only router does not drop PCP:\n%s", r)
	}
}

func stunRequest(change uint32, attrs ...[]byte) []byte {
	b := []byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if change != 0 {
		attrs = append(attrs, binary.BigEndian.AppendUint32([]byte{0, 3, 0, 4}, change))
	}
	for _, a := range attrs {
		b = append(b, a...)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-20))
	return b
}

// TestSTUNAnswer: the responder answers Binding Requests with the
// peer's endpoint (plain and XORed), reports CHANGE-REQUEST, and ignores
// anything else.
func TestSTUNAnswer(t *testing.T) {
	peer := netip.MustParseAddrPort("203.0.113.10:40000")
	resp, change, ok := stunAnswer(stunRequest(stunChangeIP|stunChangePort, []byte{0x80, 0x22, 0, 1, 'x', 0, 0, 0}), peer)
	if !ok || change != stunChangeIP|stunChangePort {
		t.Fatalf("ok %v, change %x", ok, change)
	}
	if binary.BigEndian.Uint16(resp) != stunBindSuccess || string(resp[8:20]) != string(stunRequest(0)[8:20]) {
		t.Fatalf("header % x", resp[:20])
	}
	if got := netip.AddrPortFrom(netip.AddrFrom4([4]byte(resp[28:32])), binary.BigEndian.Uint16(resp[26:])); got != peer {
		t.Fatalf("MAPPED-ADDRESS %v", got)
	}
	xport := binary.BigEndian.Uint16(resp[38:]) ^ 0x2112
	xip := binary.BigEndian.Uint32(resp[40:]) ^ stunMagic
	if xport != peer.Port() || xip != binary.BigEndian.Uint32(peer.Addr().AsSlice()) {
		t.Fatalf("XOR-MAPPED-ADDRESS % x", resp[32:])
	}
	good := stunRequest(0)
	for name, b := range map[string][]byte{
		"empty":           nil,
		"short":           good[:19],
		"a response":      append([]byte{1, 1}, good[2:]...),
		"length too long": append(good[:2:2], append([]byte{0, 8}, good[4:]...)...),
		"attribute cut":   stunRequest(0, []byte{0, 3, 0, 9, 0}),
	} {
		if _, _, ok := stunAnswer(b, peer); ok {
			t.Errorf("%s: answered", name)
		}
	}
}

// FuzzSTUNAnswer: no request crashes the responder.
func FuzzSTUNAnswer(f *testing.F) {
	f.Add(stunRequest(stunChangeIP))
	f.Add(stunRequest(0, []byte{0, 3, 0, 3, 1, 2, 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if resp, _, ok := stunAnswer(b, netip.MustParseAddrPort("203.0.113.10:1")); ok && len(resp) != 44 {
			t.Fatalf("answer of %d bytes", len(resp))
		}
	})
}
