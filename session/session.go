package session

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// Config is what every punch session of a daemon shares. A zero duration
// means its default; a negative one is an error.
type Config struct {
	// Self is this daemon's identity, which links prove. Required.
	Self link.Identity
	// Link tunes the links a race builds. Nil means link's defaults.
	Link *link.Config
	// Timeout bounds one race, from its first path to its link.
	// Default 10s.
	Timeout time.Duration
	// Grace is how long a race still takes the peer's connections
	// arriving at our listeners after every active path is done: the
	// peer's attempts may succeed a moment after ours gave up. Default 1s.
	Grace time.Duration
}

// Defaults of Config.
const (
	DefaultTimeout = 10 * time.Second
	DefaultGrace   = time.Second
)

// Verify fills in c's defaults and reports whether it is usable.
func (c *Config) Verify() error {
	if c.Self.Public.IsZero() {
		return errors.New("session config: no identity")
	}
	if c.Timeout < 0 || c.Grace < 0 {
		return fmt.Errorf("session config: negative duration (timeout %v, grace %v)", c.Timeout, c.Grace)
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	return c.Link.Verify()
}

// Session is one punch session with one peer, as this end sees it.
type Session struct {
	ID punch.SessionID
	// Side is this end's side of the session (0 or 1), as the server
	// numbered them; it goes into the session probes.
	Side int
	// RelayToken opens this end's side of the session's relay; RelayAuth,
	// when set, does instead, at a node of a cluster that did not issue
	// the session.
	RelayToken rendezvous.RelayToken
	RelayAuth  []byte
	// Server is the rendezvous node that sent the punch (TCP session
	// probes go there), and Relay the one to relay through; empty, the
	// paths' own Server. In a cluster they differ from session to
	// session.
	Server, Relay string
	// Peer is the peer's key: the only key a link may prove.
	Peer identity.PublicKey
	// Controlling is true at the end with the lower key: it nominates the
	// path (of a UDP punch and of the race) and is the TLS client.
	Controlling bool
	// SelfNAT and PeerNAT are both ends' NATs as classified (zero if
	// unknown); Strategy is punch.Choose's pick for them.
	SelfNAT, PeerNAT punch.NAT
	Strategy         punch.Strategy
	// SelfRestricted and PeerRestricted are why either end's network
	// leaves no direct path (rendezvous.NATReport.Restricted), or "":
	// with either set, the relay does not wait for direct paths.
	SelfRestricted, PeerRestricted string
	// RelayFirst starts the relay with no head start: the last session
	// between these two networks, with this strategy, ended on it (the
	// daemon's path memory), so waiting for direct paths would most
	// likely only delay the link. Set it before Race.
	RelayFirst bool
	// Scope is where the session's punches may send (punch.Scope): the
	// peer's own endpoints, never this machine's or a third party's.
	Scope punch.Scope
	// PeerPublic is the peer's shared port as the server saw it (invalid
	// if out of Scope); PeerLAN are its LAN endpoints that Scope allows,
	// with its IPv6 endpoint as the server saw it (rendezvous.Punch.Public6).
	PeerPublic netip.AddrPort
	PeerLAN    []netip.AddrPort
	// PeerMappedTCP is the peer's port mapping of its shared TCP port
	// (punch.NAT.MappedTCP), if it offers one that Scope allows: at the
	// address the server observed. A lying peer can name any port of its
	// own address, and nothing else.
	PeerMappedTCP netip.AddrPort
	// PeerMappedUDP is the same for UDP (punch.NAT.MappedUDP): the UDP
	// path pings it instead of the peer's observed session socket.
	PeerMappedUDP netip.AddrPort
	// UDP is the session's second step, which the server sends once both
	// sides' session probes arrived: where the peer's session sockets are
	// and when to start.
	UDP *rendezvous.UDPStep
	// RTT is the rendezvous server's estimate of the round trip to the
	// peer (0 if unknown): the session's timers grow with it.
	RTT time.Duration
	// Log carries the peer's fields.
	Log logrus.FieldLogger

	cfg     *Config
	verdict *verdict
}

// Choice is what the session's UDP path measured and chose; read it once
// Race has returned.
func (s *Session) Choice() Choice {
	if s.verdict == nil {
		return Choice{}
	}
	return s.verdict.choice()
}

// maxTimerRTT caps the round trip the session's timers scale by: a server
// estimate beyond it is a broken one, and timers of minutes help nobody.
const maxTimerRTT = 2 * time.Second

// scaled is a timer of base on a path with no delay, plus perRTT round
// trips of the session's path: on a LAN as fast as ever, on a long path
// long enough for the round trips it waits on.
func (s *Session) scaled(base time.Duration, perRTT int) time.Duration {
	return base + time.Duration(perRTT)*min(s.RTT, maxTimerRTT)
}

// Local is what this end knows of itself when a session starts.
type Local struct {
	// NAT is this daemon's NAT as last classified (zero if unknown).
	NAT punch.NAT
	// SameHost is true when the rendezvous server is on this host (we
	// reach it over loopback), and so is every peer.
	SameHost bool
	// Restricted is why this end's network leaves no direct path
	// (rendezvous.NATReport.Restricted), or "".
	Restricted string
}

// New makes the session a punch instruction starts. cfg must have been
// verified.
func New(cfg *Config, self Local, pu rendezvous.Punch, log logrus.FieldLogger) (*Session, error) {
	id, err := punch.ParseSessionID(pu.Session)
	if err != nil {
		return nil, err
	}
	lan := make([]netip.Addr, len(pu.LAN))
	for i, a := range pu.LAN {
		lan[i] = a.Addr()
	}
	scope, err := punch.NewScope(pu.Public.Addr(), lan, self.SameHost)
	if err != nil {
		return nil, fmt.Errorf("punch scope: %w", err)
	}
	scope.Public6 = pu.Public6.Addr()
	peerNAT := pu.PeerNAT
	for _, m := range []*netip.AddrPort{&peerNAT.MappedTCP, &peerNAT.MappedUDP} {
		if m.IsValid() && scope.Check(*m) != nil {
			// Out of scope it is no way to the peer, so the strategy
			// must not count on it either.
			log.WithField("mapping", *m).Debug("ignoring the peer's port mapping: not at its observed address")
			*m = netip.AddrPort{}
		}
	}
	s := &Session{
		ID:            id,
		Side:          pu.Side,
		RelayToken:    pu.RelayToken,
		RelayAuth:     pu.RelayAuth,
		Server:        pu.Server,
		Relay:         cmp.Or(pu.Relay, pu.Server),
		Peer:          pu.Peer,
		Controlling:   link.Controls(cfg.Self.Public, pu.Peer),
		SelfNAT:       self.NAT,
		PeerNAT:       peerNAT,
		Strategy:      punch.Choose(self.NAT, peerNAT),
		Scope:         scope,
		PeerLAN:       scope.Filter(lanWith6(pu)),
		PeerMappedTCP: peerNAT.MappedTCP,
		PeerMappedUDP: peerNAT.MappedUDP,

		SelfRestricted: self.Restricted,
		PeerRestricted: pu.PeerRestricted,
		UDP:            pu.UDP,
		RTT:            pu.RTT,
		Log:            log,
		cfg:            cfg,
		verdict:        newVerdict(),
	}
	if scope.Check(pu.Public) == nil {
		s.PeerPublic = pu.Public
	}
	return s, nil
}

// lanWith6 is the peer's LAN endpoints and, if the server observed one
// that is not its public endpoint, its IPv6 endpoint: with no NAT66 (and
// so no NAT on the way) the peer is reached there as on a LAN, from the
// shared port by TCP and at its session socket's port by UDP; both sides
// send, which is what lets them through stateful IPv6 firewalls.
func lanWith6(pu rendezvous.Punch) []netip.AddrPort {
	if !pu.Public6.IsValid() || pu.Public6 == pu.Public {
		return pu.LAN
	}
	return append(slices.Clip(pu.LAN), pu.Public6)
}

// Close ends the session: its second step, should it still come, is
// dropped.
func (s *Session) Close() { s.UDP.Close() }

// short is the session id as logs show it.
func (s *Session) short() string { return s.ID.String()[:8] }
