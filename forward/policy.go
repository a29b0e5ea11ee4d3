package forward

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/warren-p2p/warren/config"
)

// Resolver looks up host names at the exit. *net.Resolver implements it;
// tests inject their own.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Policy is the exit side's access control: which peer may reach what.
// Everything not allowed is denied. It is immutable and safe for
// concurrent use.
type Policy struct {
	peers    map[string]peerRule
	exposes  map[string]exposeRule
	resolver Resolver
	self     Self // nil: no listeners of our own to keep out of reach
}

// Self knows what only the exit machine can tell is off limits: the
// daemon's own listening sockets (its admin and metrics API, its punch
// port, its SOCKS5 and forward listeners), through which a peer would read
// the daemon's status or send its traffic back out through the daemon's
// own links, and the broadcast addresses of the machine's networks. No
// grant reaches them.
type Self interface {
	// Reserved reports whether sending over network ("tcp" or "udp") to a
	// would reach one of the daemon's own listeners or a whole network.
	Reserved(network string, a netip.AddrPort) bool
}

type peerRule struct {
	exit    bool
	targets []config.TargetPattern
}

type exposeRule struct {
	target string
	peers  []string
	udp    bool
}

// Grant is an authorized request: what to dial.
type Grant struct {
	// Target is host:port as requested, or the exposed service's target.
	Target string
	// Addrs are the addresses to try, in order. For a requested name they
	// are the resolved addresses that passed the peer's patterns: dial
	// these, never the name again, so DNS cannot move the peer elsewhere.
	Addrs []netip.AddrPort
}

// NewPolicy builds a Policy from the config's peers and exposes. A nil
// resolver means net.DefaultResolver. It fails on a bad targets pattern.
func NewPolicy(peers []config.Peer, exposes []config.Expose, r Resolver) (*Policy, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	p := &Policy{
		peers:    make(map[string]peerRule, len(peers)),
		exposes:  make(map[string]exposeRule, len(exposes)),
		resolver: r,
	}
	for i, pc := range peers {
		rule := peerRule{exit: pc.Exit}
		for _, s := range pc.Targets {
			pat, err := config.ParseTargetPattern(s)
			if err != nil {
				return nil, fmt.Errorf("peers[%d] (%s): targets %q: %w", i, pc.Name, s, err)
			}
			rule.targets = append(rule.targets, pat)
		}
		p.peers[pc.Name] = rule
	}
	for _, e := range exposes {
		p.exposes[e.Name] = exposeRule{target: e.Target, peers: slices.Clone(e.Peers), udp: e.Protocol == "udp"}
	}
	return p, nil
}

// WithSelf returns a copy of p that also refuses every target self says is
// one of the daemon's own listeners. A nil self refuses nothing more.
func (p *Policy) WithSelf(self Self) *Policy {
	q := *p
	q.self = self
	return &q
}

// Authorize decides whether peer may make req and, if so, resolves what to
// dial. Names are resolved with ctx. Errors are *RefusedError with code
// CodeNotAllowed (denied), CodeAddrNotSupported (malformed host:port) or
// CodeHostUnreachable (name did not resolve).
//
// A service request is allowed if the expose exists, lists the peer and
// speaks the request's protocol. A target request (TCP or UDP) is allowed
// for those resolved addresses that are not always refused (see
// alwaysRefused; nor, given a Self, the daemon's own listeners) and that
// the peer may reach: all, if it has exit = true, else those that match one of its
// targets patterns (matched with the host as requested, lower-cased, and
// the unmapped address), along with the IPv4 address they embed for
// NAT64, 6to4 or IPv4-compatible forms (see allows). An association is
// allowed to a peer that may dial some target; each of its datagrams is
// then authorized as a UDP target request.
func (p *Policy) Authorize(ctx context.Context, peer string, req Request) (Grant, error) {
	refuse := func(code byte, format string, args ...any) (Grant, error) {
		return Grant{}, &RefusedError{Code: code, Msg: fmt.Sprintf(format, args...), Peer: peer, Target: req.String()}
	}
	rule, ok := p.peers[peer]
	if !ok {
		return refuse(CodeNotAllowed, "unknown peer")
	}
	switch req.Kind {
	case KindService, KindUDPService:
		e, ok := p.exposes[req.Payload]
		if !ok || !slices.Contains(e.peers, peer) {
			return refuse(CodeNotAllowed, "no service %q for this peer", req.Payload)
		}
		if e.udp != req.udp() {
			return refuse(CodeNotAllowed, "service %q does not speak %s", req.Payload, protocolName(req.udp()))
		}
		host, ip, port, err := splitTarget(e.target)
		if err != nil {
			return refuse(CodeGeneralFailure, "service %q misconfigured", req.Payload)
		}
		addrs, err := p.resolve(ctx, host, ip)
		if err != nil {
			return refuse(CodeHostUnreachable, "service %q: %v", req.Payload, err)
		}
		return Grant{Target: e.target, Addrs: withPort(addrs, port)}, nil

	case KindUDPAssociate:
		if !rule.exit && len(rule.targets) == 0 {
			return refuse(CodeNotAllowed, "peer may not send datagrams through here")
		}
		return Grant{Target: req.String()}, nil

	case KindTarget, KindUDPTarget:
		host, ip, port, err := splitTarget(req.Payload)
		if err != nil {
			return refuse(CodeAddrNotSupported, "%v", err)
		}
		if !rule.exit && len(rule.targets) == 0 {
			return refuse(CodeNotAllowed, "peer may not dial targets here")
		}
		addrs, err := p.resolve(ctx, host, ip)
		if err != nil {
			return refuse(CodeHostUnreachable, "%v", err)
		}
		network := protocolName(req.udp())
		addrs = slices.DeleteFunc(addrs, func(a netip.Addr) bool {
			return !rule.allows(host, a, port) || p.ownListener(network, netip.AddrPortFrom(a, port))
		})
		if len(addrs) == 0 {
			return refuse(CodeNotAllowed, "target not allowed for this peer")
		}
		return Grant{Target: req.Payload, Addrs: withPort(addrs, port)}, nil

	default:
		return refuse(CodeGeneralFailure, "unknown request kind %d", byte(req.Kind))
	}
}

// allows reports whether the rule lets its peer dial a, which is host or
// one of its addresses, on port.
//
// The unspecified address is nobody's: Linux connects 0.0.0.0 and :: to
// the loopback address, which a pattern that covers them need not (say
// 0.0.0.0/5, the first of the CIDRs that make up "everything but
// 127.0.0.0/8"), and a DNS filter's 0.0.0.0 for a blocked name would take
// even an exit peer to the exit's own services instead of failing.
//
// An address that carries an IPv4 address to a translator or tunnel
// (embeddedIPv4) is allowed only if that IPv4 address is allowed too: a
// pattern for IPv6 space, such as [::/0], must not open IPv4 space. A name
// pattern allows both forms alike, as it allows whatever the name
// resolves to.
func (r peerRule) allows(host string, a netip.Addr, port uint16) bool {
	if alwaysRefused(a) {
		return false
	}
	if r.exit {
		return true
	}
	if v4, ok := embeddedIPv4(a); ok && !r.allows(host, v4, port) {
		return false
	}
	// Match ignores case and a trailing dot itself.
	return slices.ContainsFunc(r.targets, func(t config.TargetPattern) bool {
		return t.Match(host, a, port)
	})
}

// alwaysRefused reports whether a is no target whatever a grant says: the
// unspecified address (see allows), the IPv4 limited broadcast address and
// multicast groups, which reach every host on the exit's network at once
// (a grant such as 0.0.0.0/0 or exit = true names hosts, not a whole
// network segment), and the same addresses carried by an IPv6 form (see
// embeddedIPv4).
func alwaysRefused(a netip.Addr) bool {
	if a.IsUnspecified() || a.IsMulticast() || a == limitedBroadcast {
		return true
	}
	if v4, ok := embeddedIPv4(a); ok {
		return alwaysRefused(v4)
	}
	return false
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// ownListener reports whether self reserves a (see Self).
func (p *Policy) ownListener(network string, a netip.AddrPort) bool {
	return p.self != nil && p.self.Reserved(network, a)
}

// IPv6 prefixes whose addresses carry an IPv4 address.
var (
	// The NAT64 well-known prefix (RFC 6052): a translator on the exit's
	// network sends to the IPv4 address in the last 32 bits. It should
	// refuse non-global ones; an exit cannot count on that.
	nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")
	// 6to4 (RFC 3056): tunnelled to the IPv4 address in bits 16 to 47.
	sixToFourPrefix = netip.MustParsePrefix("2002::/16")
	// IPv4-compatible addresses (RFC 4291, deprecated): Linux's sit0
	// tunnels them to the last 32 bits. :: and ::1 are not among them.
	v4CompatPrefix = netip.MustParsePrefix("::/96")
)

// embeddedIPv4 returns the IPv4 address that IPv6 address a reaches
// through a NAT64 translator or a 6to4 or IPv4-compatible tunnel, if it
// is of those forms. IPv4-mapped addresses are not: Authorize unmaps them
// before anything else, as the kernel dials them over IPv4. Addresses of
// other translation prefixes (64:ff9b:1::/48, a network's own NAT64
// prefix) cannot be told from the address alone.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	b := a.As16()
	switch {
	case nat64Prefix.Contains(a):
		return netip.AddrFrom4([4]byte(b[12:])), true
	case sixToFourPrefix.Contains(a):
		return netip.AddrFrom4([4]byte(b[2:6])), true
	case v4CompatPrefix.Contains(a) && !a.IsUnspecified() && !a.IsLoopback():
		return netip.AddrFrom4([4]byte(b[12:])), true
	}
	return netip.Addr{}, false
}

// resolve returns ip if valid, else the unmapped, de-duplicated addresses
// of host.
func (p *Policy) resolve(ctx context.Context, host string, ip netip.Addr) ([]netip.Addr, error) {
	if ip.IsValid() {
		return []netip.Addr{ip}, nil
	}
	found, err := p.resolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", host, err)
	}
	var addrs []netip.Addr
	for _, a := range found {
		a = a.Unmap()
		if a.IsValid() && a.Zone() == "" && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve %s: no addresses", host)
	}
	return addrs, nil
}

func protocolName(udp bool) string {
	if udp {
		return "udp"
	}
	return "tcp"
}

func withPort(addrs []netip.Addr, port uint16) []netip.AddrPort {
	out := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		out[i] = netip.AddrPortFrom(a, port)
	}
	return out
}
