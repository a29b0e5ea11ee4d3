package e2e

import "strings"

// gridTransports are the transports each grid cell is run over, alone.
var gridTransports = []string{"tcp", "udp"}

// gridExpect is the least each grid cell must reach over each transport:
// "direct", "relay", or "fail"; "tcp udp" when the two differ. It only
// ever tightens. Pairs of two symmetric NATs where one is random have no
// direct path to expect and relay through the rendezvous server; so do
// the sequential pairs with a busy NAT, where the busy side's other users
// shift one side's port sequence against the other's (UDP prediction on
// both sides assumes they stay in step), unless punching wins within the
// relay's 3s head start. TCP between two NATs that answer unsolicited SYNs
// with RST needs both SYNs to cross within one round trip (each RST also
// closes the sender's own mapping), which the lab's zero-delay path rarely
// gives; UDP connects that pair directly.
var gridExpect = map[string]string{
	"open/open": "direct", "open/cone": "direct", "open/cone-rst": "direct",
	"open/symseq": "direct", "open/symseq-busy": "direct", "open/symrand": "direct",
	"cone/open": "direct", "cone/cone": "direct", "cone/cone-rst": "direct",
	"cone/symseq": "direct", "cone/symseq-busy": "direct", "cone/symrand": "relay direct",
	"cone-rst/open": "direct", "cone-rst/cone": "direct", "cone-rst/cone-rst": "relay direct",
	"cone-rst/symseq": "direct", "cone-rst/symseq-busy": "direct", "cone-rst/symrand": "relay direct",
	"symseq/open": "direct", "symseq/cone": "direct", "symseq/cone-rst": "direct",
	"symseq/symseq": "relay direct", "symseq/symseq-busy": "relay", "symseq/symrand": "relay",
	"symseq-busy/open": "direct", "symseq-busy/cone": "direct", "symseq-busy/cone-rst": "direct",
	"symseq-busy/symseq": "relay", "symseq-busy/symseq-busy": "relay", "symseq-busy/symrand": "relay",
	"symrand/open": "direct", "symrand/cone": "relay direct", "symrand/cone-rst": "relay direct",
	"symrand/symseq": "relay", "symrand/symseq-busy": "relay", "symrand/symrand": "relay",
	"same-nat (cone)":               "direct",
	"double-nat (cone+cone)/cone":   "direct",
	"double-nat (symseq+cone)/open": "direct",
	// A port mapping of the shared port (TCP and UDP) lets the other side
	// connect to it, or ping the session socket that holds it.
	"symrand+upnp/symrand": "direct", "symrand+natpmp/symrand": "direct", "symrand+pcp/symrand": "direct",
	// Networks that let out only TCP 443, or only an HTTP proxy: the
	// relay, through the server's 443 listener (restricted_test.go).
	"https-only/cone": "relay",
	"proxy-only/cone": "relay",
	// Dual-stack sites, both IPv4 NATs symrand, each behind a stateful
	// IPv6 firewall; and a site with IPv6 alone: direct over IPv6.
	"symrand6/symrand6": "direct", "v6only/symrand6": "direct",
}

// expectation returns the least a cell must reach over transport; a
// single word applies to every transport.
func expectation(cell, transport string) string {
	f := strings.Fields(gridExpect[cell])
	switch {
	case len(f) == 1:
		return f[0]
	case len(f) == 2 && transport == "tcp":
		return f[0]
	case len(f) == 2 && transport == "udp":
		return f[1]
	}
	return ""
}
