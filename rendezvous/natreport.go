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
	// Restricted says why the peer's network leaves no direct path to
	// expect (one of the Restricted constants), or "" if nothing does: a
	// peer that reads it in a punch goes to the relay at once rather
	// than wait out punches that cannot arrive. Added later, so spelt as the
	// newer fields are; left out when empty, and an older peer ignores it.
	Restricted string `json:"restricted,omitempty"`
}

// Why a peer's network leaves no direct path (NATReport.Restricted).
const (
	// RestrictedTCP443 is a network whose control connection reached the
	// server only on its fallback port (443): it lets out HTTPS alone.
	RestrictedTCP443 = "tcp443"
	// RestrictedProxy is a network that lets out nothing but an HTTP
	// proxy.
	RestrictedProxy = "proxy"
	// RestrictedNoUDP is a network where no UDP probe was answered.
	RestrictedNoUDP = "no-udp"
)

// maxRestricted bounds the Restricted value the server passes on.
const maxRestricted = 32

// RestrictionText says in words what a Restricted value of this
// daemon's network means, for status and logs.
func RestrictionText(r string) string { return restrictionText(r, "here") }

// PeerRestrictionText is RestrictionText for the peer's network.
func PeerRestrictionText(r string) string { return restrictionText(r, "at the peer") }

func restrictionText(r, where string) string {
	switch r {
	case RestrictedTCP443:
		return "no UDP " + where + "; TCP 443 only"
	case RestrictedProxy:
		return "only an HTTP proxy " + where
	case RestrictedNoUDP:
		return "no UDP " + where + " (no probe answered)"
	case "":
		return ""
	}
	// A newer peer's reason: its words are not repeated, as anything a
	// peer sends is.
	return "restricted network " + where
}

// Report records this peer's NAT report and sends it to the server now (if
// registered) and at every later registration: SetNAT with the fields
// punch.NAT does not have (Restricted).
func (c *Client) Report(r NATReport) error {
	c.mu.Lock()
	c.nat = &r
	p := c.cur
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.send(&Message{Type: TypeNAT, NAT: &r})
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
