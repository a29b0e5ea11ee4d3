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

// Strategy is what one side does to punch towards a peer. Both sides
// compute it from the same two NAT descriptions (their own and the peer's,
// as reported to the rendezvous server), so they agree without talking.
type Strategy struct {
	// Name identifies the NAT pair class for logs and metrics.
	Name string
	// TCP says whether to try TCP simultaneous open from the shared port.
	TCP bool
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

func classOf(n NAT) natClass {
	switch {
	case !n.Symmetric():
		return classEasy
	case n.Allocation == AllocationSequential:
		return classSeq
	default:
		return classRandom
	}
}

// Choose returns this side's strategy against peer. Unknown NATs count as
// easy: trying the cheap path costs little, and the link layer only
// accepts an authenticated result anyway.
func Choose(self, peer NAT) Strategy {
	s, p := classOf(self), classOf(peer)
	// A host with no NAT accepts the other side's SYN on its listener,
	// whatever that side's NAT does.
	open := !self.Behind || !peer.Behind
	switch {
	case s == classEasy && p == classEasy:
		return Strategy{Name: "easy/easy", TCP: true, UDP: RoleDirect}
	case s == classEasy && p == classSeq:
		return Strategy{Name: "easy/seq", TCP: open, UDP: RoleSprayWindow}
	case s == classSeq && p == classEasy:
		return Strategy{Name: "seq/easy", TCP: open, UDP: RoleDirect}
	case s == classEasy && p == classRandom:
		return Strategy{Name: "easy/random", TCP: open, UDP: RoleSprayRandom}
	case s == classRandom && p == classEasy:
		return Strategy{Name: "random/easy", TCP: open, UDP: RoleManySockets}
	case s == classSeq && p == classSeq:
		return Strategy{Name: "seq/seq", UDP: RoleSprayWindow}
	}
	// random/seq, seq/random, random/random: no direct path to expect;
	// the relay takes over.
	return Strategy{Name: "hard/hard", UDP: RoleNone}
}
