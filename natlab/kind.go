package natlab

import (
	"fmt"
	"slices"
	"strings"
)

// Kind is the behaviour of a site's NAT (RFC 4787 terms: how it maps an
// inside endpoint to a public one, and which inbound packets it lets
// through).
type Kind string

const (
	// Open is no NAT: the host sits on the internet segment with a public
	// address and no filtering.
	Open Kind = "open"
	// Cone is a port-restricted cone ("NAT3"): endpoint-independent
	// mapping, address-and-port-dependent filtering, ports preserved where
	// free (as in Linux, a second inside host using the same local port
	// gets another public port). Unsolicited inbound packets to the WAN
	// address are dropped silently, TCP SYNs included.
	Cone Kind = "cone"
	// ConeRST is Cone, except that unsolicited inbound TCP to the WAN
	// address is answered with a RST instead of silence, as some home
	// routers do.
	ConeRST Kind = "cone-rst"
	// SymSeq is symmetric with sequential ports: a new mapping for every
	// new flow (so per destination), taking public ports SeqPortBase,
	// SeqPortBase+1, ... in order; address-and-port-dependent filtering.
	SymSeq Kind = "symseq"
	// SymSeqBusy is SymSeq with a background host behind the same NAT that
	// opens a new flow every 75 ms, like the other users of a carrier NAT:
	// consecutive mappings of one host increase, but with gaps.
	SymSeqBusy Kind = "symseq-busy"
	// SymRand is symmetric with random ports ("NAT4"): a new mapping per
	// flow, on a random public port; address-and-port-dependent filtering.
	SymRand Kind = "symrand"
)

// Public ports of the SymSeq kinds: new flows get SeqPortBase +
// (n mod SeqPortCount) for the n-th flow since the router was made.
const (
	SeqPortBase  = 20000
	SeqPortCount = 10000
)

// Kinds returns every Kind, in a fixed order.
func Kinds() []Kind {
	return []Kind{Open, Cone, ConeRST, SymSeq, SymSeqBusy, SymRand}
}

// ParseKind returns the Kind named s, or an error listing the valid names.
func ParseKind(s string) (Kind, error) {
	for _, k := range Kinds() {
		if string(k) == s {
			return k, nil
		}
	}
	names := make([]string, 0, len(Kinds()))
	for _, k := range Kinds() {
		names = append(names, string(k))
	}
	return "", fmt.Errorf("natlab: unknown NAT kind %q (want one of %s)", s, strings.Join(names, ", "))
}

// Valid reports whether k is one of Kinds().
func (k Kind) Valid() bool { return slices.Contains(Kinds(), k) }

// busy reports whether a site of kind k gets a background host that keeps
// allocating mappings.
func (k Kind) busy() bool { return k == SymSeqBusy }

// Device names inside router namespaces. They are fixed because every lab
// device lives in the lab's own namespaces.
const (
	wanDev = "wan0"
	lanDev = "lan0"
)

// routerRules returns the nftables ruleset (for `nft -f`) that makes a
// router namespace a NAT of kind k, whose WAN device wanDev has address
// wanIP and whose LAN is the bridge lanDev. It is a pure function so that
// the rules can be read and tested without a kernel.
func routerRules(k Kind, wanIP string) (string, error) {
	var nat string
	switch k {
	case Cone, ConeRST:
		// Linux masquerade keeps the source port unless it is taken, which
		// gives endpoint-independent, port-preserving mapping.
		nat = fmt.Sprintf("\t\toifname %q masquerade\n", wanDev)
	case SymSeq, SymSeqBusy:
		// An explicit map, not "numgen inc mod N offset B": with offset
		// the port comes out byte-swapped (natlab-facts.md).
		var m strings.Builder
		for i := 0; i < SeqPortCount; i++ {
			if i > 0 {
				m.WriteString(", ")
			}
			fmt.Fprintf(&m, "%d : %d", i, SeqPortBase+i)
		}
		nat = fmt.Sprintf("\t\toifname %q meta l4proto { tcp, udp } snat to %s : numgen inc mod %d map { %s }\n",
			wanDev, wanIP, SeqPortCount, m.String())
		// Other protocols (ICMP echo) still need an address rewrite.
		nat += fmt.Sprintf("\t\toifname %q masquerade\n", wanDev)
	case SymRand:
		nat = fmt.Sprintf("\t\toifname %q masquerade fully-random\n", wanDev)
	default:
		return "", fmt.Errorf("natlab: kind %q has no router", k)
	}
	inbound := ""
	if k == ConeRST {
		inbound = fmt.Sprintf("\t\tiifname %q meta l4proto tcp reject with tcp reset\n", wanDev)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table ip natlab {\n")
	fmt.Fprintf(&b, "\tchain postrouting {\n")
	fmt.Fprintf(&b, "\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
	// The router's own traffic keeps its address and port: only the
	// LAN's flows are translated (and only they count for symseq).
	fmt.Fprintf(&b, "\t\toifname %q ip saddr %s accept\n", wanDev, wanIP)
	b.WriteString(nat)
	fmt.Fprintf(&b, "\t}\n")
	// Address-and-port-dependent filtering: inbound packets pass only as
	// part of a flow the LAN started (conntrack matches the full 5-tuple).
	fmt.Fprintf(&b, "\tchain forward {\n")
	fmt.Fprintf(&b, "\t\ttype filter hook forward priority filter; policy drop;\n")
	fmt.Fprintf(&b, "\t\tct state established,related accept\n")
	fmt.Fprintf(&b, "\t\tiifname %q accept\n", lanDev)
	fmt.Fprintf(&b, "\t}\n")
	// Unsolicited inbound packets to the WAN address would otherwise reach
	// the router's own stack, which answers TCP with RST and UDP with ICMP
	// port unreachable; a NAT is silent unless it is the RST kind.
	fmt.Fprintf(&b, "\tchain input {\n")
	fmt.Fprintf(&b, "\t\ttype filter hook input priority filter; policy accept;\n")
	fmt.Fprintf(&b, "\t\tiifname != %q accept\n", wanDev)
	fmt.Fprintf(&b, "\t\tct state established,related accept\n")
	fmt.Fprintf(&b, "\t\ticmp type echo-request accept\n")
	b.WriteString(inbound)
	fmt.Fprintf(&b, "\t\tdrop\n")
	fmt.Fprintf(&b, "\t}\n")
	fmt.Fprintf(&b, "}\n")
	return b.String(), nil
}

// Internet-segment rules: the hub namespace answers nothing but ping (it is
// the sink of busy hosts), the loss chain drops a share of the IPv4
// packets crossing the bridge (never ARP, so neighbours still resolve),
// and the cut chain drops everything between pairs of addresses.
const (
	hubDev    = "hub0"
	inetRules = `table inet natlab {
	chain input {
		type filter hook input priority filter; policy drop;
		icmp type echo-request accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, echo-request } accept
	}
}
table bridge natlab {
	chain loss {
		type filter hook forward priority filter; policy accept;
	}
	chain cut {
		type filter hook forward priority filter; policy accept;
	}
}
`
)

// lossRules returns the nft script that sets the internet segment's loss to
// pct percent of IPv4 packets.
func lossRules(pct int) string {
	s := "flush chain bridge natlab loss\n"
	if pct > 0 {
		s += fmt.Sprintf("add rule bridge natlab loss ether type ip numgen random mod 100 < %d drop\n", pct)
	}
	return s
}
