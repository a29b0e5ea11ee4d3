package rendezvous

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"

	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/conf"
	"github.com/warren-p2p/warren/internal/loglimit"
	"github.com/warren-p2p/warren/punch"
)

// ClientConfig configures a Client. A zero field means its default; a
// negative duration is an error (Verify; NewClient refuses it).
type ClientConfig struct {
	// Address is the server's host:port. Required unless Addresses is
	// set.
	Address string
	// Addresses are the host:port of a cluster's nodes (doc.go,
	// "Clustering"), Address first if both are set: the client registers
	// with the nearest (by a UDP probe's round trip) and, whenever its
	// connection ends, tries the next; it reports the round trips it
	// measured when it registers, for the cluster's choice of relays.
	// All must hold ServerKey.
	Addresses []string
	// ServerKey pins the server. Required.
	ServerKey identity.PublicKey
	// Key is this peer's identity. Required.
	Key identity.PrivateKey
	// Token is presented at registration.
	Token string
	// Dial opens the TCP connection; the daemon dials from its shared
	// punch port so the server observes the port peers must punch to.
	// Default: a plain net.Dialer.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// LAN returns the endpoints to report as LAN candidates at each
	// registration.
	LAN func() []netip.AddrPort
	// DialPlain opens a plain TCP connection from the shared punch port
	// (no fallback port, no proxy): with it, a client that registered
	// over IPv4 and reports a global IPv6 address has the server observe
	// that address too (observe6.go), so that peers with IPv6 may punch
	// to it. Nil: no IPv6 observation.
	DialPlain func(ctx context.Context, addr string) (net.Conn, error)
	// OnPunch receives each punch instruction. It is called from the
	// client's read loop and must not block. The session's second step
	// arrives later on the instruction's UDP handle.
	OnPunch func(Punch)
	// Consent says whether the peer with this key may learn this peer's
	// addresses and punch to it: the server asks it for every connect
	// request naming this peer, and tells the asker nothing without a
	// yes. Called from the client's read loop; it must not block.
	// Default: no one (a nil Consent refuses every ask).
	Consent func(identity.PublicKey) bool
	// OnOffline is called when the server answers a connect request
	// with "offline": the peer is not registered, or does not list this
	// peer (the server does not say which). Same rules as OnPunch.
	OnOffline func(identity.PublicKey)
	// OnRegistered is called after each successful registration, with the
	// server's UDP probe endpoints. Same rules as OnPunch.
	OnRegistered func(udp []netip.AddrPort)
	// PingInterval is the keepalive interval. Default 15s.
	PingInterval time.Duration
	// MaxBackoff caps the wait between reconnects. Default 30s.
	MaxBackoff time.Duration
	// Log receives the client's logs. Default: logrus' standard logger.
	Log logrus.FieldLogger
}

// Punch tells a peer to punch towards another now.
type Punch struct {
	Session string
	// Side is which side of the session this peer is (0 or 1); it goes
	// into the session probe.
	Side   int
	Peer   identity.PublicKey
	Public netip.AddrPort
	// Public6 is the peer's IPv6 endpoint as the server observed it, sent
	// only when the server observed one of this peer too; invalid
	// otherwise.
	Public6 netip.AddrPort
	LAN     []netip.AddrPort
	// PeerNAT is the peer's NAT as it reported it (zero if it did not).
	PeerNAT punch.NAT
	// PeerRestricted is why the peer's network leaves no direct path, as
	// it reported it (NATReport.Restricted); "" if nothing does.
	PeerRestricted string
	// RelayToken opens this side of the session's relay (zero if the
	// server sent none, and then the relay refuses it).
	RelayToken RelayToken
	// Relay is the host:port of the node to relay through, when it is not
	// the server this peer registered with (Server): in a cluster, the
	// node the cluster chose for the pair.
	Relay string
	// RelayAuth, when set, opens this side of the relay at Relay instead
	// of RelayToken (DialRelayAuth): the relay is at a node that did not
	// issue the session.
	RelayAuth []byte
	// Server is the address of the server that sent the instruction, the
	// one to send TCP session probes to.
	Server string
	// UDP is where the session's second step arrives; Close it when the
	// session is over.
	UDP *UDPStep
	// RTT is the server's estimate of the round trip between the two
	// peers: the sum of each one's round trip to it (0 if unknown).
	RTT time.Duration
}

// UDPInfo is the second step of a punch: where the peer's session socket
// is, and when to start.
type UDPInfo struct {
	Session string
	// PeerUDP is the peer's session socket as the server saw it; invalid
	// if the peer's session probe did not arrive in time.
	PeerUDP netip.AddrPort
	// PeerLANPort is the peer's session socket's local port: at the
	// peer's LAN addresses, that port reaches it without any NAT.
	PeerLANPort uint16
	// PeerTCP is the peer's TCP session probe as the server saw it (the
	// base for predicting its next TCP port); invalid if it sent none.
	PeerTCP netip.AddrPort
	Delay   time.Duration
}

// ErrNotRegistered is returned by Connect while the client is not
// registered with the server.
var ErrNotRegistered = errors.New("not registered with the rendezvous server")

// Client keeps a peer registered with a rendezvous server, reconnecting
// with backoff whenever the connection drops.
type Client struct {
	cfg     ClientConfig
	tlsConf *tls.Config
	// refused limits the debug lines of refused asks: any key can ask.
	refused *loglimit.Limiter

	// mu guards the fields below.
	mu         sync.Mutex
	cur        *peerConn // nil while not registered
	observed   netip.AddrPort
	observed6  netip.AddrPort // see Observed6
	node       string         // see Node
	registered chan struct{}  // closed while registered
	nat        *NATReport     // reported again at each registration
	udp        []netip.AddrPort
	// steps holds the sessions of the current connection whose second
	// step has not arrived yet; the connection's end forgets them.
	steps map[string]*UDPStep

	// err is why the last connection ended, and since when; nil while
	// registered.
	err      error
	errSince time.Time

	// redial cuts Run's wait before the next connection short.
	redial chan struct{}

	// addrs are the servers to register with, as configured; order is
	// them in the order of trying (nearest first, see rank) and next the
	// index in it of the next to dial: Run's goroutine alone uses those
	// two. server is the one of the current connection.
	addrs    []string
	order    []string
	next     int
	server   string
	rankStep time.Duration // rankStep; 0 keeps the configured order (tests that spread peers)
	// rtts are the round trips rank measured (guarded by mu), reported
	// at each registration for the cluster's relay choice.
	rtts map[string]time.Duration
}

// Defaults of ClientConfig.
const (
	DefaultPingInterval = 15 * time.Second
	DefaultMaxBackoff   = 30 * time.Second
)

// Verify reports whether cfg is usable.
func (cfg *ClientConfig) Verify() error {
	if cfg.Address == "" && len(cfg.Addresses) == 0 {
		return errors.New("rendezvous client: no server address")
	}
	for _, a := range cfg.Addresses {
		if a == "" {
			return errors.New("rendezvous client: empty server address")
		}
	}
	if cfg.ServerKey.IsZero() {
		return errors.New("rendezvous client: no server key")
	}
	return errors.Join(conf.NotNegative("rendezvous client: PingInterval", cfg.PingInterval),
		conf.NotNegative("rendezvous client: MaxBackoff", cfg.MaxBackoff))
}

// NewClient verifies cfg and returns a client; call Run to run it.
func NewClient(cfg ClientConfig) (*Client, error) {
	if err := cfg.Verify(); err != nil {
		return nil, err
	}
	conf.Default(&cfg.PingInterval, DefaultPingInterval)
	conf.Default(&cfg.MaxBackoff, DefaultMaxBackoff)
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	if cfg.Dial == nil {
		var d net.Dialer
		cfg.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	if cfg.OnPunch == nil {
		cfg.OnPunch = func(Punch) {}
	}
	if cfg.OnOffline == nil {
		cfg.OnOffline = func(identity.PublicKey) {}
	}
	if cfg.OnRegistered == nil {
		cfg.OnRegistered = func([]netip.AddrPort) {}
	}
	cert, err := identity.Certificate(cfg.Key)
	if err != nil {
		return nil, err
	}
	refused, err := loglimit.New(loglimit.Config{Log: cfg.Log, Burst: 1, SummaryLevel: logrus.DebugLevel})
	if err != nil {
		return nil, err
	}
	conf := identity.TLSConfig(cert, identity.Pinned(cfg.ServerKey))
	c := &Client{cfg: cfg, tlsConf: conf, refused: refused, registered: make(chan struct{}), redial: make(chan struct{}, 1),
		steps: make(map[string]*UDPStep), rankStep: rankStep}
	if cfg.Address != "" {
		c.addrs = append(c.addrs, cfg.Address)
	}
	for _, a := range cfg.Addresses {
		if a != cfg.Address {
			c.addrs = append(c.addrs, a)
		}
	}
	if len(c.addrs) > 0 {
		looksLikeHTTPS(conf, c.addrs[0])
	}
	return c, nil
}

// Server returns the address of the server the client is registered
// with, or last tried.
func (c *Client) Server() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.server == "" {
		return c.addrs[0]
	}
	return c.server
}

// Node returns the name of the cluster node this peer registered with
// last, as the node said it; "" for a server alone (or one that does not
// say).
func (c *Client) Node() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.node
}

// Observed returns this peer's endpoint as the server last saw it.
func (c *Client) Observed() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.observed
}

// Registered returns a channel that is closed while the client is
// registered; after a disconnect, call it again for a fresh channel.
func (c *Client) Registered() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.registered
}

// UDPServers returns the server's UDP probe endpoints from the last
// registration.
func (c *Client) UDPServers() []netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.udp
}

// SetNAT records this peer's NAT and reports it to the server now (if
// registered) and at every later registration.
func (c *Client) SetNAT(n punch.NAT) error {
	c.mu.Lock()
	report := ReportNAT(n)
	c.nat = report
	p := c.cur
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.send(&Message{Type: TypeNAT, NAT: report})
}

// LocalAddr returns the local end of the control connection, or the zero
// value while not registered.
func (c *Client) LocalAddr() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(c.cur.conn.LocalAddr().String())
	return ap
}

// Redial drops the control connection and registers again at once, with
// no backoff: for when the connection's local address is gone, which TCP
// would notice only after its keepalives fail.
func (c *Client) Redial() {
	c.mu.Lock()
	p := c.cur
	c.mu.Unlock()
	if p != nil {
		p.conn.Close()
		c.unregister(p)
	}
	select {
	case c.redial <- struct{}{}:
	default:
	}
}

// Connect asks the server for a punch session with peer. The answer is a
// Punch through OnPunch, or nothing if the peer is offline.
func (c *Client) Connect(peer identity.PublicKey) error {
	c.mu.Lock()
	p := c.cur
	c.mu.Unlock()
	if p == nil {
		return ErrNotRegistered
	}
	return p.send(&Message{Type: TypeConnect, Peer: peer.String()})
}

// Run keeps the client registered until ctx ends.
func (c *Client) Run(ctx context.Context) error {
	// Jitter spreads reconnects when a server restart drops everyone.
	retry := newRetries(c.cfg.MaxBackoff)
	for {
		if c.next == 0 {
			// At start, and after every node was tried: the nearest
			// that answers first.
			c.order = c.rank(ctx)
		}
		start := time.Now()
		addr := c.order[c.next]
		c.mu.Lock()
		c.server = addr
		c.mu.Unlock()
		err := c.session(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		c.setErr(err)
		log := c.cfg.Log.WithField("server", addr)
		var wait time.Duration
		if len(c.order) > 1 && failover(err) {
			// Another node of the cluster takes this peer at once; the
			// backoff grows only once every node was tried.
			c.next = (c.next + 1) % len(c.order)
			wait = retry.transient.Min
			if c.next == 0 {
				wait = retry.after(err, time.Since(start), log)
			} else {
				log.WithError(err).WithField("next", c.order[c.next]).Warn("rendezvous connection lost; trying the next node")
			}
		} else {
			wait = retry.after(err, time.Since(start), log)
		}
		select {
		case <-time.After(wait):
		case <-c.redial:
			retry.transient.Reset()
		case <-ctx.Done():
			return nil
		}
	}
}

// Ranking a cluster's nodes: in rankRounds rounds, one after the other,
// each node is sent a UDP probe (every node answers plain probes on its
// control port), for rankWait in all at most; a node's smallest round
// trip counts, so that a stall (a loaded machine that did not run this
// process, or a node's, for 100 ms; a queue on the path) does not reorder
// nodes: a later round, started once the stall ended, measures it as
// near as it is. The round trips are compared in steps of rankStep, so
// that nodes about as near keep their configured order (the operator's
// preference, and stable on one LAN), and nodes that do not answer go
// last.
const (
	rankWait   = 500 * time.Millisecond
	rankStep   = 10 * time.Millisecond
	rankRounds = 3
)

// rank returns the configured servers nearest first (see rankWait).
func (c *Client) rank(ctx context.Context) []string {
	if len(c.addrs) < 2 || c.rankStep <= 0 {
		return c.addrs
	}
	rctx, cancel := context.WithTimeout(ctx, rankWait)
	defer cancel()
	rtts := make([]time.Duration, len(c.addrs)) // 0: no answer yet
	for range rankRounds {
		var wg sync.WaitGroup
		for i, a := range c.addrs {
			wg.Go(func() {
				if rtt, err := probeRTT(rctx, a); err == nil && (rtts[i] == 0 || rtt < rtts[i]) {
					rtts[i] = rtt
				}
			})
		}
		wg.Wait()
		if rctx.Err() != nil {
			break
		}
	}
	steps := make([]int64, len(c.addrs))
	for i, rtt := range rtts {
		steps[i] = int64(rtt / c.rankStep)
		if rtt == 0 {
			steps[i] = math.MaxInt64
		}
	}
	measured := make(map[string]time.Duration)
	for i, a := range c.addrs {
		if rtts[i] > 0 {
			measured[a] = rtts[i]
		}
	}
	c.mu.Lock()
	c.rtts = measured
	c.mu.Unlock()
	idx := make([]int, len(c.addrs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(x, y int) int { return cmp.Compare(steps[x], steps[y]) })
	order := make([]string, len(idx))
	for i, j := range idx {
		order[i] = c.addrs[j]
	}
	if order[0] != c.addrs[0] {
		c.cfg.Log.WithFields(logrus.Fields{"nearest": order[0], "order": order, "rtts": measured}).Info("rendezvous nodes ranked by round trip")
	}
	return order
}

// probeRTT is the round trip of one UDP probe to the server at addr.
func probeRTT(ctx context.Context, addr string) (time.Duration, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return 0, err
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return 0, fmt.Errorf("resolve %s: %w", host, err)
	}
	pc, err := net.ListenPacket("udp", ":0")
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	start := time.Now()
	if _, err := ProbeUDP(ctx, pc, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ips[0].Unmap(), uint16(port)))); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// failover reports whether a connection that ended with err should go
// to the next node: not when another daemon took the key, which the
// cluster settles the same on every node.
func failover(err error) bool {
	var replaced *ReplacedError
	return !errors.As(err, &replaced)
}

// session runs one control connection to addr from dial to disconnect.
func (c *Client) session(ctx context.Context, addr string) error {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	raw, err := c.cfg.Dial(dctx, addr)
	cancel()
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer raw.Close()
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	raw.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(raw, c.tlsConf)
	if err := tc.HandshakeContext(ctx); err != nil {
		err = fmt.Errorf("tls with %s: %w", addr, err)
		if errors.Is(err, identity.ErrKeyMismatch) {
			return &PermanentError{Err: err, Fix: "rendezvous.public_key"}
		}
		return err
	}
	p := &peerConn{conn: tc, key: c.cfg.ServerKey, log: c.cfg.Log}
	reg := &Message{Type: TypeRegister, Version: Version, Token: c.cfg.Token, RTTs: c.reportRTTs()}
	if c.cfg.LAN != nil {
		for _, a := range c.cfg.LAN() {
			reg.LAN = append(reg.LAN, a.String())
		}
	}
	if err := p.send(reg); err != nil {
		return err
	}
	m, observed, err := readRegistered(tc)
	if err != nil {
		return err
	}
	raw.SetDeadline(time.Time{})
	udp := resolveUDP(m.UDP, raw.RemoteAddr())
	c.mu.Lock()
	c.udp = udp
	nat := c.nat
	c.mu.Unlock()
	if nat != nil {
		if err := p.send(&Message{Type: TypeNAT, NAT: nat}); err != nil {
			return err
		}
	}
	// Before the peer counts as registered (and classifies its NAT, after
	// which sessions start): a session's instruction carries the IPv6
	// endpoint only if the server saw it by then.
	c.observe6(ctx, m, reg.LAN)
	c.setRegistered(p, observed, m.Node)
	c.cfg.OnRegistered(udp)
	defer c.unregister(p)
	log := c.cfg.Log.WithFields(logrus.Fields{"server": addr, "observed": observed})
	if m.Node != "" {
		log = log.WithField("node", m.Node)
	}
	log.Info("registered with rendezvous server")

	var wg sync.WaitGroup
	defer wg.Wait()
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	pongs := make(chan uint64, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.pingLoop(pctx, p, pongs)
	}()
	for {
		tc.SetReadDeadline(time.Now().Add(3 * c.cfg.PingInterval))
		m, err := ReadMessage(tc)
		if err != nil {
			return err
		}
		if m.Type == TypeError && m.Code == CodeReplaced {
			return &ReplacedError{By: m.Public}
		}
		if m.Type == TypePong {
			select {
			case pongs <- m.Seq:
			default:
			}
			continue
		}
		c.handle(p, m)
	}
}

// readRegistered reads the server's answer to register: registered, with
// the endpoint the server observed, or why not.
func readRegistered(tc *tls.Conn) (*Message, netip.AddrPort, error) {
	m, err := ReadMessage(tc)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("register: %w", err)
	}
	if m.Type == TypeError {
		err := fmt.Errorf("register refused: %s: %s", m.Code, m.Text)
		switch m.Code {
		case CodeBadToken:
			return nil, netip.AddrPort{}, &PermanentError{Err: err, Fix: "rendezvous.token or rendezvous.token_file"}
		case CodeNotAdmitted:
			return nil, netip.AddrPort{}, &PermanentError{Err: err, Fix: "the server's allow_keys (ask its operator to add this daemon's public key)"}
		}
		return nil, netip.AddrPort{}, err
	}
	observed, err := netip.ParseAddrPort(m.Observed)
	if m.Type != TypeRegistered || err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("%w: register answered with %q %q", ErrProtocol, m.Type, m.Observed)
	}
	// The name goes into logs and the status page: only what a node may
	// be called.
	if m.Node != "" && !validNodeName(m.Node) {
		return nil, netip.AddrPort{}, fmt.Errorf("%w: registered with node name %q", ErrProtocol, m.Node)
	}
	return m, observed, nil
}

func (c *Client) pingLoop(ctx context.Context, p *peerConn, pongs <-chan uint64) {
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	var rtt time.Duration
	// The first ping goes out at once: the server needs an RTT to time
	// punches, and registration just measured none.
	next := time.After(0)
	for seq := uint64(1); ; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-next:
			next = nil
		case <-t.C:
		}
		sent := time.Now()
		m := &Message{Type: TypePing, Seq: seq, RTTMs: float64(rtt.Microseconds()) / 1000}
		if err := p.send(m); err != nil {
			p.conn.Close()
			return
		}
		if seq <= 2 {
			// Measure the first rounds right away so the server learns
			// the RTT within a moment of registering.
			select {
			case got := <-pongs:
				if got == seq {
					rtt = time.Since(sent)
					if seq == 1 {
						next = time.After(0)
					}
				}
			case <-time.After(c.cfg.PingInterval):
			case <-ctx.Done():
				return
			}
		}
	}
}

func (c *Client) handle(p *peerConn, m *Message) {
	switch m.Type {
	case TypeAsk:
		c.answerAsk(p, m)
	case TypePunch:
		pu, err := parsePunch(m)
		if err != nil {
			c.cfg.Log.WithError(err).Warn("ignoring malformed punch instruction")
			return
		}
		pu.UDP = c.expectUDP(pu.Session)
		pu.Server = c.Server()
		c.cfg.OnPunch(pu)
	case TypeUDP:
		c.deliverUDP(parseUDP(m))
	case TypeError:
		c.cfg.Log.WithFields(logrus.Fields{"code": m.Code, "peer": m.Peer}).Debug(m.Text)
		if key, err := identity.ParsePublicKey(m.Peer); err == nil && m.Code == CodePeerOffline {
			c.cfg.OnOffline(key)
		}
	}
}

// answerAsk consents to an ask whose key Consent accepts, and says
// nothing to the server otherwise: the server answers the asker "offline"
// either way after the same wait. A refusal is one debug line at most per
// interval, as anyone can ask.
func (c *Client) answerAsk(p *peerConn, m *Message) {
	key, err := identity.ParsePublicKey(m.Peer)
	if err == nil && c.cfg.Consent != nil && c.cfg.Consent(key) {
		if err := p.send(&Message{Type: TypeConsent, Seq: m.Seq}); err != nil {
			p.conn.Close()
		}
		return
	}
	if c.refused.Allow("server", "refused ask") {
		c.cfg.Log.WithField("key", m.Peer).Debug("refused a connect request from a key not in [[peers]]")
	}
}

func parseUDP(m *Message) UDPInfo {
	info := UDPInfo{Session: m.Session, Delay: time.Duration(min(max(m.DelayMs, 0), 2000)) * time.Millisecond}
	if a, err := netip.ParseAddrPort(m.PeerTCP); err == nil {
		info.PeerTCP = a
	}
	if m.PeerLANPort > 0 && m.PeerLANPort < 65536 {
		info.PeerLANPort = uint16(m.PeerLANPort)
	}
	if a, err := netip.ParseAddrPort(m.PeerUDP); err == nil {
		info.PeerUDP = a
	}
	return info
}

func parsePunch(m *Message) (Punch, error) {
	key, err := identity.ParsePublicKey(m.Peer)
	if err != nil {
		return Punch{}, fmt.Errorf("punch peer: %w", err)
	}
	pu := Punch{Session: m.Session, Side: m.Side, Peer: key}
	// A missing or malformed token costs only the relay: the direct paths
	// need none.
	pu.RelayToken, _ = parseRelayToken(m.RelayToken)
	pu.RelayAuth = decodeRelayAuth(m.RelayAuth)
	if _, _, err := net.SplitHostPort(m.Relay); err == nil {
		pu.Relay = m.Relay
	}
	pu.PeerNAT = m.NAT.NAT()
	if m.NAT != nil {
		pu.PeerRestricted = m.NAT.Restricted
	}
	if m.RTTMs > 0 && m.RTTMs < 60e3 {
		pu.RTT = time.Duration(m.RTTMs * float64(time.Millisecond))
	}
	if pu.Public, err = netip.ParseAddrPort(m.Public); err != nil {
		return Punch{}, fmt.Errorf("punch public endpoint: %w", err)
	}
	// A malformed one costs only the IPv6 path.
	if a, err := netip.ParseAddrPort(m.Public6); err == nil && isGlobal6(a.Addr()) {
		pu.Public6 = a
	}
	for _, s := range m.LAN {
		if a, err := netip.ParseAddrPort(s); err == nil {
			pu.LAN = append(pu.LAN, a)
		}
	}
	return pu, nil
}

// Err returns why the client is not registered (the last connection's
// end), and since when; nil while registered and before the first try
// ends.
func (c *Client) Err() (error, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err, c.errSince
}

func (c *Client) setErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err, c.errSince = err, time.Now()
}

func (c *Client) setRegistered(p *peerConn, observed netip.AddrPort, node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur, c.observed, c.node = p, observed, node
	c.err = nil
	close(c.registered)
}

// unregister marks the client unregistered when connection p ends or
// Redial drops it, once: a second fresh channel would strand whoever is
// waiting on the first.
func (c *Client) unregister(p *peerConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur == p {
		c.cur = nil
		c.registered = make(chan struct{})
		// The server sends a session's second step on the connection
		// that carried its punch: it will not come now.
		clear(c.steps)
	}
}

// resolveUDP turns the server's advertised UDP endpoints into addresses,
// putting the address we dialled where the server bound a wildcard.
func resolveUDP(eps []string, dialled net.Addr) []netip.AddrPort {
	server, _ := netip.ParseAddrPort(dialled.String())
	server = unmap(server)
	var out []netip.AddrPort
	for _, e := range eps {
		a, err := netip.ParseAddrPort(e)
		if err != nil {
			continue
		}
		if a.Addr().IsUnspecified() {
			a = netip.AddrPortFrom(server.Addr(), a.Port())
		}
		out = append(out, a)
	}
	if len(out) == 0 && server.IsValid() {
		// An older server that advertises nothing answers probes on its
		// control port.
		out = append(out, server)
	}
	return out
}

// reportRTTs is what register reports of the round trips rank measured:
// ms by node address as configured (nil if none were measured).
func (c *Client) reportRTTs() map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.rtts) == 0 {
		return nil
	}
	out := make(map[string]float64, len(c.rtts))
	for a, rtt := range c.rtts {
		out[a] = float64(rtt.Microseconds()) / 1000
	}
	return out
}
