package rendezvous

import (
	"net/netip"

	"github.com/warren-p2p/warren/punch"
)

// NATReport is a NAT as the wire carries it, in `nat` and `punch` frames
// (spec.md, "NAT report"). Its field names are the protocol's own, fixed
// by their tags: renaming a field of punch.NAT does not change the wire.
// Version 1 spells them as they were first sent, capitalised.
type NATReport struct {
	Behind     bool             `json:"Behind"`
	Mapping    punch.Mapping    `json:"Mapping"`
	Allocation punch.Allocation `json:"Allocation"`
	Delta      int              `json:"Delta"`
	PublicIP   netip.Addr       `json:"PublicIP"`
	LastPort   uint16           `json:"LastPort"`
	// MappedTCP is the sender's port mapping of its shared TCP port
	// (absent without one). Added later than the others, so spelt as
	// the protocol's newer fields are; an older peer ignores it.
	MappedTCP netip.AddrPort `json:"mapped_tcp,omitzero"`
	// MappedUDP is the same for UDP.
	MappedUDP netip.AddrPort `json:"mapped_udp,omitzero"`
}

// ReportNAT is n as the wire carries it.
func ReportNAT(n punch.NAT) *NATReport {
	return &NATReport{Behind: n.Behind, Mapping: n.Mapping, Allocation: n.Allocation, Delta: n.Delta, PublicIP: n.PublicIP, LastPort: n.LastPort,
		MappedTCP: n.MappedTCP, MappedUDP: n.MappedUDP}
}

// NAT is the NAT r reports; a nil report is the zero NAT (not
// classified).
func (r *NATReport) NAT() punch.NAT {
	if r == nil {
		return punch.NAT{}
	}
	return punch.NAT{Behind: r.Behind, Mapping: r.Mapping, Allocation: r.Allocation, Delta: r.Delta, PublicIP: r.PublicIP, LastPort: r.LastPort,
		MappedTCP: r.MappedTCP, MappedUDP: r.MappedUDP}
}

// String is the NAT's short name (punch.NAT.String).
func (r *NATReport) String() string { return r.NAT().String() }
