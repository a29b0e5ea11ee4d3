// Package memnat is an in-memory internet with NATs, for unit tests of
// punching (punch) and of races over it (session). It models what
// punching depends on: mapping (endpoint-independent or per destination),
// port allocation (preserved, sequential, random) and
// address-and-port-dependent filtering. Packets are delivered at once and
// never lost; the kernel lab (natlab) covers the rest.
//
// memnat is for tests only: nothing outside _test.go files imports it.
package memnat

import (
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/warren-p2p/warren/punch"
)

// Kind is a kind of simulated NAT.
type Kind int

const (
	Open Kind = iota // no NAT
	Cone             // endpoint-independent mapping, ports preserved
	Seq              // per-destination mapping, sequential ports
	Rand             // per-destination mapping, random ports
)

// NAT is the classification a real Discover would report for k.
func (k Kind) NAT() punch.NAT {
	switch k {
	case Cone:
		return punch.NAT{Behind: true, Mapping: punch.MappingEndpointIndependent, Allocation: punch.AllocationPreserved}
	case Seq:
		return punch.NAT{Behind: true, Mapping: punch.MappingAddressAndPortDependent, Allocation: punch.AllocationSequential, Delta: 1}
	case Rand:
		return punch.NAT{Behind: true, Mapping: punch.MappingAddressAndPortDependent, Allocation: punch.AllocationRandom}
	}
	return punch.NAT{}
}

type simPacket struct {
	b    []byte
	from netip.AddrPort
}

// Net is one simulated internet.
type Net struct {
	mu      sync.Mutex               // guards everything below
	sockets map[netip.AddrPort]*Sock // by public endpoint for open hosts, by local for NATed
	nats    map[netip.Addr]*NAT
}

// New returns an empty internet.
func New() *Net {
	return &Net{sockets: map[netip.AddrPort]*Sock{}, nats: map[netip.Addr]*NAT{}}
}

type mappingKey struct {
	local netip.AddrPort
	dst   netip.AddrPort // zero for endpoint-independent mappings
}

// NAT is one simulated NAT.
type NAT struct {
	kind     Kind
	ip       netip.Addr
	next     uint16
	mappings map[mappingKey]uint16
	inbound  map[uint16]netip.AddrPort          // public port -> local socket
	allowed  map[uint16]map[netip.AddrPort]bool // public port -> remotes it sent to
}

// AddNAT adds a NAT of kind at public address ip.
func (n *Net) AddNAT(kind Kind, ip string) *NAT {
	a := &NAT{kind: kind, ip: netip.MustParseAddr(ip), next: 20000, mappings: map[mappingKey]uint16{},
		inbound: map[uint16]netip.AddrPort{}, allowed: map[uint16]map[netip.AddrPort]bool{}}
	n.mu.Lock()
	n.nats[a.ip] = a
	n.mu.Unlock()
	return a
}

// Listen opens a socket at local (behind nat, or public if nat is nil).
func (n *Net) Listen(nat *NAT, local netip.AddrPort) *Sock {
	s := &Sock{net: n, nat: nat, local: local, inbox: make(chan simPacket, 4096), closed: make(chan struct{})}
	n.mu.Lock()
	n.sockets[local] = s
	n.mu.Unlock()
	return s
}

// PublicOf is s's endpoint as dst sees it: the mapping s's NAT makes
// (and keeps) for a packet from s to dst, which opens its filter for dst.
func (n *Net) PublicOf(s *Sock, dst netip.AddrPort) netip.AddrPort {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.publicOfLocked(s, dst)
}

// publicOfLocked maps a socket's packet to dst through its NAT, creating
// the mapping and opening the filter for dst.
func (n *Net) publicOfLocked(s *Sock, dst netip.AddrPort) netip.AddrPort {
	a := s.nat
	if a == nil {
		return s.local
	}
	key := mappingKey{local: s.local}
	if a.kind != Cone {
		key.dst = dst
	}
	port, ok := a.mappings[key]
	if !ok {
		switch a.kind {
		case Cone:
			port = s.local.Port()
		case Seq:
			a.next++
			port = a.next
		case Rand:
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

func (n *Net) send(s *Sock, b []byte, dst netip.AddrPort) {
	n.mu.Lock()
	from := n.publicOfLocked(s, dst)
	var to *Sock
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

// Sock is a socket on the simulated internet; it implements
// punch.PacketConn.
type Sock struct {
	net   *Net
	nat   *NAT
	local netip.AddrPort
	inbox chan simPacket

	mu       sync.Mutex // guards deadline
	deadline time.Time
	once     sync.Once
	closed   chan struct{}
}

var _ punch.PacketConn = (*Sock)(nil)

// Local is the socket's own address.
func (s *Sock) Local() netip.AddrPort { return s.local }

func (s *Sock) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
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

func (s *Sock) WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
	}
	s.net.send(s, b, addr)
	return len(b), nil
}

func (s *Sock) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline = t
	return nil
}

func (s *Sock) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

// Host puts host i (1 to 200) on n behind a NAT of kind k (or on the open
// internet), and returns its session socket and a Listen for more sockets
// beside it (RoleManySockets).
func (n *Net) Host(i int, k Kind) (*Sock, func() (punch.PacketConn, error)) {
	local := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i), 0, 2}), 40000)
	var nat *NAT
	if k == Open {
		local = netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(10 + i)}), 40000)
	} else {
		nat = n.AddNAT(k, netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}).String())
	}
	next := local.Port()
	listen := func() (punch.PacketConn, error) {
		next++
		return n.Listen(nat, netip.AddrPortFrom(local.Addr(), next)), nil
	}
	return n.Listen(nat, local), listen
}
