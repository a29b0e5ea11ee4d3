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

// Authorize decides whether peer may make req and, if so, resolves what to
// dial. Names are resolved with ctx. Errors are *RefusedError with code
// CodeNotAllowed (denied), CodeAddrNotSupported (malformed host:port) or
// CodeHostUnreachable (name did not resolve).
//
// A service request is allowed if the expose exists, lists the peer and
// speaks the request's protocol. A target request (TCP or UDP) is allowed
// if the peer has exit = true, or for those resolved addresses that match
// one of its targets patterns (matched with the host as requested,
// lower-cased, and the unmapped address). An association is allowed to a
// peer that may dial some target; each of its datagrams is then authorized
// as a UDP target request.
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
		if !rule.exit {
			// Match ignores case and a trailing dot itself.
			addrs = slices.DeleteFunc(addrs, func(a netip.Addr) bool {
				return !slices.ContainsFunc(rule.targets, func(t config.TargetPattern) bool {
					return t.Match(host, a, port)
				})
			})
			if len(addrs) == 0 {
				return refuse(CodeNotAllowed, "target not allowed for this peer")
			}
		}
		return Grant{Target: req.Payload, Addrs: withPort(addrs, port)}, nil

	default:
		return refuse(CodeGeneralFailure, "unknown request kind %d", byte(req.Kind))
	}
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
