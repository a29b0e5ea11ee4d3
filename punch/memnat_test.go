package punch

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// An in-memory internet with NATs, for unit tests of the punch engine.
// It models what punching depends on: mapping (endpoint-independent or per
// destination), port allocation (preserved, sequential, random) and
// address-and-port-dependent filtering. Packets are delivered at once and
// never lost; the kernel lab covers the rest.

type natKind int

const (
	simOpen natKind = iota // no NAT
	simCone                // endpoint-independent mapping, ports preserved
	simSeq                 // per-destination mapping, sequential ports
	simRand                // per-destination mapping, random ports
)

// natOf is the classification a real Discover would report for k.
func natOf(k natKind) NAT {
	switch k {
	case simCone:
		return NAT{Behind: true, Mapping: MappingEndpointIndependent, Allocation: AllocationPreserved}
	case simSeq:
		return NAT{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationSequential, Delta: 1}
	case simRand:
		return NAT{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationRandom}
	}
	return NAT{}
}

type simPacket struct {
	b    []byte
	from netip.AddrPort
}

type simNet struct {
	mu      sync.Mutex                  // guards everything below
	sockets map[netip.AddrPort]*simSock // by public endpoint for open hosts, by local for NATed
	nats    map[netip.Addr]*simNAT
}

func newSimNet() *simNet {
	return &simNet{sockets: map[netip.AddrPort]*simSock{}, nats: map[netip.Addr]*simNAT{}}
}

type mappingKey struct {
	local netip.AddrPort
	dst   netip.AddrPort // zero for endpoint-independent mappings
}

type simNAT struct {
	kind     natKind
	ip       netip.Addr
	next     uint16
	mappings map[mappingKey]uint16
	inbound  map[uint16]netip.AddrPort          // public port -> local socket
	allowed  map[uint16]map[netip.AddrPort]bool // public port -> remotes it sent to
}

// addNAT adds a NAT of kind at public address ip.
func (n *simNet) addNAT(kind natKind, ip string) *simNAT {
	a := &simNAT{kind: kind, ip: netip.MustParseAddr(ip), next: 20000, mappings: map[mappingKey]uint16{},
		inbound: map[uint16]netip.AddrPort{}, allowed: map[uint16]map[netip.AddrPort]bool{}}
	n.mu.Lock()
	n.nats[a.ip] = a
	n.mu.Unlock()
	return a
}

// listen opens a socket at local (behind nat, or public if nat is nil).
func (n *simNet) listen(nat *simNAT, local netip.AddrPort) *simSock {
	s := &simSock{net: n, nat: nat, local: local, inbox: make(chan simPacket, 4096), closed: make(chan struct{})}
	n.mu.Lock()
	n.sockets[local] = s
	n.mu.Unlock()
	return s
}

// publicOfLocked maps a socket's packet to dst through its NAT, creating
// the mapping and opening the filter for dst.
func (n *simNet) publicOfLocked(s *simSock, dst netip.AddrPort) netip.AddrPort {
	a := s.nat
	if a == nil {
		return s.local
	}
	key := mappingKey{local: s.local}
	if a.kind != simCone {
		key.dst = dst
	}
	port, ok := a.mappings[key]
	if !ok {
		switch a.kind {
		case simCone:
			port = s.local.Port()
		case simSeq:
			a.next++
			port = a.next
		case simRand:
			for port = 0; port < 1024 || a.inbound[port].IsValid(); {
				port = uint16(rand.IntN(65536))
			}
		}
		a.mappings[key] = port
		a.inbound[port] = s.local
		a.allowed[port] = map[netip.AddrPort]bool{}
	}
	a.allowed[port][dst] = true
	return netip.AddrPortFrom(a.ip, port)
}

func (n *simNet) send(s *simSock, b []byte, dst netip.AddrPort) {
	n.mu.Lock()
	from := n.publicOfLocked(s, dst)
	var to *simSock
	if a := n.nats[dst.Addr()]; a != nil {
		if local, ok := a.inbound[dst.Port()]; ok && a.allowed[dst.Port()][from] {
			to = n.sockets[local]
		}
	} else {
		to = n.sockets[dst]
	}
	n.mu.Unlock()
	if to == nil {
		return // filtered, or nobody there: dropped, as a NAT does
	}
	select {
	case to.inbox <- simPacket{b: append([]byte(nil), b...), from: from}:
	default:
	}
}

// simSock is a socket on the simulated internet; it implements PacketConn.
type simSock struct {
	net   *simNet
	nat   *simNAT
	local netip.AddrPort
	inbox chan simPacket

	mu       sync.Mutex // guards deadline
	deadline time.Time
	once     sync.Once
	closed   chan struct{}
}

func (s *simSock) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	for {
		s.mu.Lock()
		dl := s.deadline
		s.mu.Unlock()
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, netip.AddrPort{}, os.ErrDeadlineExceeded
			}
			timeout = time.After(min(d, 10*time.Millisecond))
		} else {
			timeout = time.After(10 * time.Millisecond)
		}
		select {
		case p := <-s.inbox:
			return copy(b, p.b), p.from, nil
		case <-s.closed:
			return 0, netip.AddrPort{}, net.ErrClosed
		case <-timeout:
		}
	}
}

func (s *simSock) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
	}
	s.net.send(s, b, addr)
	return len(b), nil
}

func (s *simSock) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline = t
	return nil
}

func (s *simSock) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}
