package session

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// relayDelay is how long a punch session tries direct paths alone before
// it also opens a relay through the rendezvous server; pairs with no direct
// path to expect open it at once.
const relayDelay = 3 * time.Second

// lanHeadStart is the relay's delay for such a pair when the peer may be on
// our LAN.
const lanHeadStart = 300 * time.Millisecond

// Relay is the path through the rendezvous server. The link layer
// authenticates the peer over it exactly as over a direct path.
type Relay struct {
	// Server is the rendezvous server's address. Required unless Dial is
	// set.
	Server string
	// Dial, if set, opens the TCP connection to the relay at addr (the
	// session's relay, else Server) instead of a plain dial: the
	// daemon's goes the way its control connection does (fallback port,
	// HTTP proxy).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

func (r *Relay) Name() string { return PathRelay }

// relayPerRTT is how many round trips of the session's path the relay's
// head start grows by: the direct paths' probes, punches and handshakes
// each take a few.
const relayPerRTT = 10

func (r *Relay) Plan(s *Session) Plan {
	// A network that lets out nothing but HTTPS, at either end, leaves
	// the relay the only path: waiting for punches that cannot arrive
	// would only delay the link. So does a pair whose last session ended
	// on the relay (RelayFirst).
	if s.SelfRestricted != "" || s.PeerRestricted != "" || s.RelayFirst {
		return Plan{}
	}
	return Plan{Delay: relayHeadStart(s.Strategy, s.PeerLAN, s.scaled(relayDelay, relayPerRTT))}
}

// relayHeadStart is the relay's head start policy: direct paths go alone for
// direct (relayDelay scaled by the path's round trip), unless the strategy
// expects none, when the relay starts at once, or after lanHeadStart if the
// peer may be on our LAN. A global IPv6 endpoint of the peer in Scope is
// a direct path to expect whatever the IPv4 NATs do: no NAT is on the way,
// only firewalls that both sides' packets open.
func relayHeadStart(st punch.Strategy, peerLAN []netip.AddrPort, direct time.Duration) time.Duration {
	if st.TCP != punch.TCPNone || st.UDP != punch.RoleNone || slices.ContainsFunc(peerLAN, global6) {
		return direct
	}
	for _, a := range peerLAN {
		if !a.Addr().IsLoopback() {
			return lanHeadStart
		}
	}
	return 0
}

// global6 reports whether a is at a global unicast IPv6 address.
func global6(a netip.AddrPort) bool {
	ip := a.Addr()
	return ip.Is6() && !ip.Is4In6() && ip.IsGlobalUnicast() && !ip.IsPrivate()
}

func (r *Relay) Run(ctx context.Context, s *Session, out *Out) error {
	addr := cmp.Or(s.Relay, r.Server)
	var conn net.Conn
	var err error
	if r.Dial != nil {
		conn, err = r.Dial(ctx, addr)
	} else {
		dialer := net.Dialer{Control: punch.ClampMSS}
		conn, err = dialer.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("relay: dial %s: %w", addr, err)
	}
	if len(s.RelayAuth) > 0 {
		conn, err = rendezvous.DialRelayAuth(ctx, conn, s.ID, s.Side, s.RelayAuth)
	} else {
		conn, err = rendezvous.DialRelay(ctx, conn, s.ID, s.Side, s.RelayToken)
	}
	if err != nil {
		return err
	}
	return out.Offer(ctx, conn)
}
