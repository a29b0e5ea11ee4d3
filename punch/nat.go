package punch

import (
	"fmt"
	"net/netip"
	"slices"
)

// Mapping is a NAT's mapping behaviour (RFC 4787, section 4.1): what decides
// whether two flows from one local socket share a public endpoint.
type Mapping string

const (
	// MappingUnknown: the samples did not show one local socket talking to
	// two different server endpoints.
	MappingUnknown Mapping = ""
	// MappingEndpointIndependent: one local socket keeps its public
	// endpoint whatever it talks to ("cone"). What the rendezvous server sees is what
	// a peer will see, so a plain punch works.
	MappingEndpointIndependent Mapping = "endpoint-independent"
	// MappingAddressDependent: the public endpoint changes with the remote
	// IP but not with the remote port.
	MappingAddressDependent Mapping = "address-dependent"
	// MappingAddressAndPortDependent: the public endpoint changes with the
	// remote port ("symmetric"): the peer will see a port the server never
	// saw.
	MappingAddressAndPortDependent Mapping = "address-and-port-dependent"
)

// Allocation is how a NAT picks the public port of a new mapping.
type Allocation string

const (
	// AllocationUnknown: too few samples to tell.
	AllocationUnknown Allocation = ""
	// AllocationPreserved: the public port equals the local port.
	AllocationPreserved Allocation = "preserved"
	// AllocationSequential: each new mapping takes the previous one's port
	// plus a small fixed step (NAT.Delta), give or take other users'
	// mappings in between; the next one can be predicted (PredictPorts).
	AllocationSequential Allocation = "sequential"
	// AllocationRandom: no usable relation between successive ports.
	AllocationRandom Allocation = "random"
)

// NAT is what a peer learned about the NAT (if any) in front of it.
// The zero value means "not classified yet".
type NAT struct {
	// Behind is false when a server saw one of our own addresses: no NAT.
	Behind     bool
	Mapping    Mapping
	Allocation Allocation
	// Delta is the port step between successive mappings of a sequential
	// NAT (usually 1, can be 2 or negative); zero otherwise.
	Delta int
	// PublicIP is the address the servers saw (of the last sample that
	// LastPort comes from); invalid if nothing was observed.
	PublicIP netip.Addr
	// LastPort is the last mapped port observed (the base for predicting
	// the next one); zero if unknown.
	LastPort uint16
	// MappedTCP is where the router forwards connections to the shared
	// TCP port because the daemon asked it to (a port mapping, package
	// portmap); invalid without one. Whatever the NAT's own behaviour, a
	// peer can connect there unsolicited (Choose).
	MappedTCP netip.AddrPort
	// MappedUDP is the same for UDP: where the router forwards datagrams
	// to the UDP port of the daemon's shared port number, which a UDP
	// session's socket holds while it can (session.UDP.Port).
	MappedUDP netip.AddrPort
}

// String returns the short name the status API shows:
//
//	unknown        nothing observed (the zero NAT)
//	none           no NAT: a server saw one of our own addresses
//	cone           endpoint-independent mapping, ports preserved or sequential
//	               (or allocation unknown)
//	cone(random)   endpoint-independent mapping with random ports; for
//	               punching it is still a cone: the observed endpoint is the
//	               one a peer will see
//	symseq(+1)     dependent mapping, sequential ports with that step
//	symrand        dependent mapping, random ports
//	symmetric      dependent mapping, ports preserved or allocation unknown
//	nat            behind a NAT whose mapping could not be told (only one
//	               server endpoint answered)
func (n NAT) String() string {
	switch {
	case !n.PublicIP.IsValid():
		return "unknown"
	case !n.Behind:
		return "none"
	case n.Mapping == MappingEndpointIndependent:
		if n.Allocation == AllocationRandom {
			return "cone(random)"
		}
		return "cone"
	case n.Symmetric():
		switch n.Allocation {
		case AllocationSequential:
			return fmt.Sprintf("symseq(%+d)", n.Delta)
		case AllocationRandom:
			return "symrand"
		}
		return "symmetric"
	}
	return "nat"
}

// Symmetric reports whether the mapping depends on the destination, so
// that the endpoint the server saw is not the one a peer will see.
func (n NAT) Symmetric() bool {
	return n.Mapping == MappingAddressDependent || n.Mapping == MappingAddressAndPortDependent
}

// Sample is one answered probe: a datagram from Local to Server that the
// server saw coming from Mapped.
type Sample struct {
	Local  netip.AddrPort
	Server netip.AddrPort
	Mapped netip.AddrPort
}

// Limits of the allocation heuristics.
const (
	// maxSeqDelta bounds the step of a sequential NAT: a larger regular
	// step is not something NATs do, and would make chance matches of
	// random ports likelier.
	maxSeqDelta = 16
	// busyShare is the least share of steps that must equal the modal step
	// for a NAT with other users (whose mappings show up as larger gaps) to
	// count as sequential, in percent.
	busyShare = 60
	// portRing is how many usable ports there are: port arithmetic runs on
	// the ring 1..65535, since no NAT maps to port 0.
	portRing = 65535
)

// Classify works out the NAT from probe samples, listed in the order the
// probes were sent. localAddrs are the machine's own addresses.
//
// Behind: some mapped IP is not one of localAddrs.
//
// Mapping, from pairs of samples of ONE local socket to different server
// endpoints (every socket and pair counts):
//   - all pairs mapped alike: endpoint-independent;
//   - a pair to the same server IP on another port mapped differently:
//     address-and-port-dependent;
//   - pairs to another IP mapped differently, but same-IP-other-port pairs
//     mapped alike: address-dependent;
//   - pairs to another IP mapped differently and no same-IP-other-port
//     pair (for example only IP1:P1 and IP2:P2): address-and-port-dependent.
//     Either dependence explains it, and the stricter one is the safe
//     assumption for punching.
//
// Allocation, from the series: the samples towards one server endpoint
// (the one most local sockets probed, first seen on a tie) of the local
// sockets that probed nothing else, in order; if fewer than two such
// sockets, the first sample of every socket to it. (A socket that also
// probed other endpoints may have taken more ports in between.)
//   - every mapped port equals its local port: preserved;
//   - else, with steps between consecutive mapped ports taken on the port
//     ring 1..65535 (so 65535 to 1 is +1): if all steps equal one d with
//     1 ≤ |d| ≤ 16, sequential with Delta d;
//   - if at least 60% of the steps equal the most common such d and the
//     rest are larger steps the same way (other users of a busy NAT took
//     the ports in between), still sequential with Delta d;
//   - otherwise random. With fewer than two series samples: preserved if
//     every sample's port was preserved, otherwise unknown.
//
// PublicIP and LastPort come from the series' last sample (the newest
// mapping, the base to predict from), or the last sample when there is no
// series.
func Classify(localAddrs []netip.Addr, samples []Sample) NAT {
	var n NAT
	if len(samples) == 0 {
		return n
	}
	for _, s := range samples {
		ip := s.Mapped.Addr().Unmap()
		if !slices.ContainsFunc(localAddrs, func(a netip.Addr) bool { return a.Unmap() == ip }) {
			n.Behind = true
		}
	}
	n.Mapping = classifyMapping(samples)
	series := allocationSeries(samples)
	n.Allocation, n.Delta = classifyAllocation(series, samples)
	last := samples[len(samples)-1]
	if len(series) > 0 {
		last = series[len(series)-1]
	}
	n.PublicIP = last.Mapped.Addr().Unmap()
	n.LastPort = last.Mapped.Port()
	return n
}

// classifyMapping compares, per local socket, the mapped endpoints towards
// different server endpoints (see Classify).
func classifyMapping(samples []Sample) Mapping {
	var pairs, sameIPDiffer, sameIPAlike, otherIPDiffer, bothDiffer bool
	for i, a := range samples {
		for _, b := range samples[i+1:] {
			if a.Local != b.Local || a.Server == b.Server {
				continue
			}
			pairs = true
			alike := a.Mapped == b.Mapped
			sameIP := a.Server.Addr() == b.Server.Addr()
			samePort := a.Server.Port() == b.Server.Port()
			switch {
			case sameIP && alike:
				sameIPAlike = true
			case sameIP:
				sameIPDiffer = true
			case alike:
			case samePort:
				otherIPDiffer = true
			default:
				bothDiffer = true
			}
		}
	}
	switch {
	case !pairs:
		return MappingUnknown
	case sameIPDiffer:
		return MappingAddressAndPortDependent
	case !otherIPDiffer && !bothDiffer:
		return MappingEndpointIndependent
	case sameIPAlike:
		// The port alone did not change the mapping, the IP did.
		return MappingAddressDependent
	}
	// Only pairs that also changed the IP: either dependence explains
	// them; assume the stricter one.
	return MappingAddressAndPortDependent
}

// allocationSeries picks the samples the allocation is judged from (see
// Classify).
func allocationSeries(samples []Sample) []Sample {
	perLocal := map[netip.AddrPort]int{}
	for _, s := range samples {
		perLocal[s.Local]++
	}
	// The endpoint most distinct local sockets probed.
	sockets := map[netip.AddrPort]map[netip.AddrPort]bool{}
	var target netip.AddrPort
	for _, s := range samples {
		if sockets[s.Server] == nil {
			sockets[s.Server] = map[netip.AddrPort]bool{}
		}
		sockets[s.Server][s.Local] = true
		if len(sockets[s.Server]) > len(sockets[target]) {
			target = s.Server
		}
	}
	pick := func(onlyFresh bool) []Sample {
		var out []Sample
		seen := map[netip.AddrPort]bool{}
		for _, s := range samples {
			if s.Server != target || seen[s.Local] || (onlyFresh && perLocal[s.Local] > 1) {
				continue
			}
			seen[s.Local] = true
			out = append(out, s)
		}
		return out
	}
	if fresh := pick(true); len(fresh) >= 2 {
		return fresh
	}
	return pick(false)
}

// classifyAllocation applies the allocation rules of Classify to series;
// all is every sample, for the fallback when the series is too short.
func classifyAllocation(series, all []Sample) (Allocation, int) {
	preserved := func(ss []Sample) bool {
		for _, s := range ss {
			if s.Mapped.Port() != s.Local.Port() {
				return false
			}
		}
		return len(ss) > 0
	}
	if len(series) < 2 {
		if preserved(all) {
			return AllocationPreserved, 0
		}
		return AllocationUnknown, 0
	}
	if preserved(series) {
		return AllocationPreserved, 0
	}
	steps := make([]int, 0, len(series)-1)
	for i := 1; i < len(series); i++ {
		steps = append(steps, portStep(series[i-1].Mapped.Port(), series[i].Mapped.Port()))
	}
	d, count := modalSmallStep(steps)
	if d == 0 {
		return AllocationRandom, 0
	}
	if count == len(steps) {
		return AllocationSequential, d
	}
	if count*100 < busyShare*len(steps) {
		return AllocationRandom, 0
	}
	for _, s := range steps {
		// Others' mappings in between push ours further the same way.
		if s != d && (s*d <= 0 || abs(s) <= abs(d)) {
			return AllocationRandom, 0
		}
	}
	return AllocationSequential, d
}

// portStep returns the signed step from port a to port b on the ring of
// ports 1..65535, in (-32768, 32767].
func portStep(a, b uint16) int {
	d := (int(b) - int(a)) % portRing
	if d < 0 {
		d += portRing
	}
	if d > portRing/2 {
		d -= portRing
	}
	return d
}

// portAdd returns port p moved by d on the ring of ports 1..65535.
func portAdd(p uint16, d int) uint16 {
	r := (int(p) - 1 + d) % portRing
	if r < 0 {
		r += portRing
	}
	return uint16(r + 1)
}

// modalSmallStep returns the most common step with 1 ≤ |step| ≤ 16 and how
// often it occurs; the smaller magnitude wins a tie (a busy NAT's gaps can
// only make steps larger). It returns 0, 0 if no step is small.
func modalSmallStep(steps []int) (int, int) {
	counts := map[int]int{}
	for _, s := range steps {
		if s != 0 && abs(s) <= maxSeqDelta {
			counts[s]++
		}
	}
	best, bestN := 0, 0
	for s, c := range counts {
		if c > bestN || c == bestN && (abs(s) < abs(best) || abs(s) == abs(best) && s > best) {
			best, bestN = s, c
		}
	}
	return best, bestN
}

// predictable reports whether n is sequential with a step Classify could
// have found: the only NATs whose next ports PredictPorts predicts.
func (n NAT) predictable() bool {
	return n.Allocation == AllocationSequential && n.Delta != 0 && n.Delta >= -maxSeqDelta && n.Delta <= maxSeqDelta
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// PredictPorts returns the public ports a sequential NAT is likely to give
// its next count mappings, most likely first: the centres base+Delta,
// base+2·Delta, ... (count of them, on the port ring 1..65535), each
// followed by its neighbours within spread (c+1, c-1, c+2, c-2, ...), since
// other users of the NAT may have taken ports in the meantime and pushed
// ours further. Ports already listed are not repeated and 0 never appears.
// It returns nil unless n is sequential with 1 ≤ |Delta| ≤ 16 (a peer's
// claim of more is not believed), or if count is not positive; a negative
// spread counts as 0.
func PredictPorts(n NAT, base uint16, count int, spread int) []uint16 {
	if !n.predictable() || count <= 0 {
		return nil
	}
	// More than the whole ring is pointless (and would never end).
	count = min(count, portRing)
	spread = min(max(spread, 0), portRing/2)
	seen := make(map[uint16]bool)
	var out []uint16
	add := func(p uint16) {
		if p != 0 && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	for i := 1; i <= count && len(out) < portRing; i++ {
		c := portAdd(base, i*n.Delta)
		add(c)
		for s := 1; s <= spread; s++ {
			add(portAdd(c, s))
			add(portAdd(c, -s))
		}
	}
	return out
}
