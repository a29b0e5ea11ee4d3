package e2e

import (
	"strings"
	"testing"

	"github.com/warren-p2p/warren/natlab"
)

// TestPMTUBlackhole links two sites whose uplinks carry at most 1280-byte
// packets and drop the ICMP "fragmentation needed" that would say so (the
// blackhole-mtu profile), over each kind of link, and checks a transfer
// through a forward. Before warren's TCP connections announced a small
// MSS, none came up: the rendezvous connection's TLS ClientHello alone is
// larger than such a path carries in one packet; and quic-go's first
// packets (1,280 bytes of UDP payload) did not fit either. Plain TCP
// between such sites stalls (BenchmarkLossy's baseline on this profile
// carries nothing): the profile is a real black hole.
func TestPMTUBlackhole(t *testing.T) {
	prof, err := natlab.LookupProfile("blackhole-mtu")
	if err != nil {
		t.Fatal(err)
	}
	cells := cellsByName()
	for _, p := range []struct{ name, cell, transports, link string }{
		{"direct-tcp", "cone/cone", "tcp", ""},
		{"direct-udp (QUIC)", "cone/cone", "udp", `udp_stream = "quic"`},
		{"direct-udp (KCP)", "cone/cone", "udp", `udp_stream = "kcp"`},
		{"relay", "symrand/symrand", "tcp,udp", ""},
	} {
		t.Run(p.name, func(t *testing.T) {
			r := runCellWith(t, cells[p.cell], cellOptions{transports: p.transports, linkExtra: p.link,
				size: 4 << 20, profile: prof})
			if want := strings.Fields(p.name)[0]; r.outcome != want {
				t.Fatalf("%s: path %s, want %s (%s)", p.cell, r.outcome, want, r.note)
			}
			t.Logf("%s over %s: first byte %v, 4 MiB at %.0f Mbit/s", p.name, p.cell, r.firstByte, r.mbps)
		})
	}
}
