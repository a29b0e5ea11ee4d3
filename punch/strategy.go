package punch

// UDPRole is what one side does in a UDP punch.
type UDPRole string

const (
	// RoleDirect pings the peer's one mapped endpoint: right when the
	// peer's mapping does not depend on the destination, and for a
	// symmetric side whose peer sprays towards it.
	RoleDirect UDPRole = "direct"
	// RoleSprayWindow pings the peer's predicted next ports (a
	// sequential NAT), widening the window round after round.
	RoleSprayWindow UDPRole = "spray-window"
	// RoleSprayRandom pings random ports of the peer's address: the
	// endpoint-independent half of a birthday punch.
	RoleSprayRandom UDPRole = "spray-random"
	// RoleManySockets opens many sockets that each ping the peer's one
	// endpoint: the random-port half of a birthday punch.
	RoleManySockets UDPRole = "many-sockets"
	// RoleNone skips UDP: no direct path is expected.
	RoleNone UDPRole = "none"
)

// TCPRole is what one side does in a TCP punch.
type TCPRole string

const (
	// TCPNone skips TCP towards the peer's public side (on-link LAN
	// candidates are still tried).
	TCPNone TCPRole = "none"
	// TCPSimultaneous connects from the shared port to the peer's public
	// endpoint while the peer does the same (simultaneous open), or while
	// the peer, having no NAT, accepts.
	TCPSimultaneous TCPRole = "simultaneous"
	// TCPSprayWindow connects from the shared port to the predicted next
	// ports of the peer's sequential NAT: the SYNs open this side's NAT
	// for those ports, so the peer's connect gets in.
	TCPSprayWindow TCPRole = "spray-window"
	// TCPConnectFixed probes the server over TCP from a fixed port (the
	// base of the peer's prediction) and then connects from that port to
	// the peer's shared port; its NAT gives the connection the next port.
	TCPConnectFixed TCPRole = "connect-fixed"
	// TCPConnectMapped connects from the shared port to the peer's port
	// mapping (NAT.MappedTCP): the peer's router forwards it to the peer's
	// shared port, so no punching is needed on that side.
	TCPConnectMapped TCPRole = "connect-mapped"
	// TCPAcceptMapped only accepts, on the shared port, what the peer's
	// TCPConnectMapped sends to this side's port mapping.
	TCPAcceptMapped TCPRole = "accept-mapped"
)

// Strategy is what one side does to punch towards a peer. Both sides
// compute it from the same two NAT descriptions (their own and the peer's,
// as reported to the rendezvous server), so they agree without talking.
type Strategy struct {
	// Name identifies the NAT pair class for logs and metrics.
	Name string
	// TCP is this side's TCP role.
	TCP TCPRole
	// UDP is this side's UDP role.
	UDP UDPRole
}

// natClass is the one property of a NAT that strategies depend on.
type natClass int

const (
	classEasy   natClass = iota // no NAT, or endpoint-independent mapping
	classSeq                    // per-destination mapping, sequential ports
	classRandom                 // per-destination mapping, random ports
)

// classOf takes a sequential NAT only with a step no real NAT exceeds
// (maxSeqDelta): the peer reports its NAT itself, and a claimed step of
// thousands would aim the prediction spray across the whole port range.
func classOf(n NAT) natClass {
	switch {
	case !n.Symmetric():
		return classEasy
	case n.predictable():
		return classSeq
	default:
		return classRandom
	}
}

// Choose returns this side's strategy against peer. Unknown NATs count as
// easy: trying the cheap path costs little, and the link layer only
// accepts an authenticated result anyway.
func Choose(self, peer NAT) Strategy {
	return withMapping(choose(self, peer), self, peer)
}

// withMapping adds what a port mapping makes possible: a side whose
// router maps its shared TCP port is, for TCP, as reachable as a host with
// no NAT. Where the NAT pair leaves TCP nothing to do, the other side
// connects to the mapping and this side accepts; a pair that can punch
// TCP already keeps its way (it needs no router's help). With both sides
// mapped, each connects to the other's mapping.
//
// UDP likewise: where the pair has no UDP punch, a side with a UDP mapping
// or facing one pings (RoleDirect): the other side pings the mapping, and
// the mapped side, whose pings towards a symmetric NAT are dropped, answers
// what arrives (and, controlling, pings its source back: see await).
func withMapping(st Strategy, self, peer NAT) Strategy {
	mapped := false
	if st.TCP == TCPNone {
		switch {
		case peer.MappedTCP.IsValid():
			st.TCP, mapped = TCPConnectMapped, true
		case self.MappedTCP.IsValid():
			st.TCP, mapped = TCPAcceptMapped, true
		}
	}
	if st.UDP == RoleNone && (peer.MappedUDP.IsValid() || self.MappedUDP.IsValid()) {
		st.UDP, mapped = RoleDirect, true
	}
	if mapped {
		st.Name += "+mapped"
	}
	return st
}

// choose is Choose by the NATs' behaviour alone.
func choose(self, peer NAT) Strategy {
	s, p := classOf(self), classOf(peer)
	// A host with no NAT accepts the other side's SYN on its listener,
	// whatever that side's NAT does.
	open := !self.Behind || !peer.Behind
	// With no NAT on one side, plain simultaneous open works: that side
	// accepts whatever the other side's NAT makes of its SYN.
	tcp := TCPNone
	if open {
		tcp = TCPSimultaneous
	}
	switch {
	case s == classEasy && p == classEasy:
		return Strategy{Name: "easy/easy", TCP: TCPSimultaneous, UDP: RoleDirect}
	case s == classEasy && p == classSeq:
		if !open {
			tcp = TCPSprayWindow
		}
		return Strategy{Name: "easy/seq", TCP: tcp, UDP: RoleSprayWindow}
	case s == classSeq && p == classEasy:
		if !open {
			tcp = TCPConnectFixed
		}
		return Strategy{Name: "seq/easy", TCP: tcp, UDP: RoleDirect}
	case s == classEasy && p == classRandom:
		return Strategy{Name: "easy/random", TCP: tcp, UDP: RoleSprayRandom}
	case s == classRandom && p == classEasy:
		return Strategy{Name: "random/easy", TCP: tcp, UDP: RoleManySockets}
	case s == classSeq && p == classSeq:
		return Strategy{Name: "seq/seq", TCP: TCPNone, UDP: RoleSprayWindow}
	}
	// random/seq, seq/random, random/random: no direct path to expect;
	// the relay takes over.
	return Strategy{Name: "hard/hard", TCP: TCPNone, UDP: RoleNone}
}
