package rendezvous

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/time/rate"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/bufcopy"
	"github.com/warren-p2p/warren/internal/loglimit"
	"github.com/warren-p2p/warren/punch"
)

// Server is a rendezvous server.
type Server struct {
	cfg     ServerConfig
	tlsConf *tls.Config

	guard    *guard            // admits TCP connections
	probes   *probeLimits      // UDP probe rate per source
	refusals *refusals         // summarises refusals in the log
	logs     *loglimit.Limiter // limits other lines a source can cause
	meter    *relayMeter       // what each key relays
	copier   bufcopy.Copier    // the relays' copy buffers

	relaySecret relaySecret  // keys relay tokens; set at start, then read only
	relayed     atomic.Int64 // bytes relayed since start, for the load a node publishes

	// mu guards the fields below.
	mu    sync.Mutex
	peers map[identity.PublicKey]*peerConn
	// observers are the registered peers by their observe tokens.
	observers map[observeToken]*peerConn
	pairs     map[[2]identity.PublicKey]pairSession // last punch session per pair
	sessions  map[punch.SessionID]*udpSession       // sessions waiting for UDP probes
	issued    map[punch.SessionID]issuedSession     // sessions a relay may serve
	order     sessionQueue                          // issued's keys, oldest first
	peaks     mapPeaks                              // for shrink

	relays   relayHub
	consents consentHub

	cluster *cluster // nil on a single node

	// jmu guards the janitor, which runs while Serve or ServeUDP does.
	jmu    sync.Mutex
	jusers int
	jstop  chan struct{}
	jdone  chan struct{}
}

// mapPeaks are the largest sizes of the server's maps since each was
// last rebuilt (see shrink).
type mapPeaks struct {
	peers, observers, pairs, sessions, issued, waiting int
}

// udpSession collects both sides' session-socket mappings.
type udpSession struct {
	sides     [2]*peerConn
	mapped    [2]netip.AddrPort
	localPort [2]uint16
	tcpMapped [2]netip.AddrPort // from TCP session probes, where a side sent one
	timer     *time.Timer
	// remote is the side registered on another node, whose sides entry
	// is nil (see cluster.startSession).
	remote *remoteSide
}

// NewServer validates cfg and returns a server; call Serve to run it.
func NewServer(cfg ServerConfig) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.Key.Public().IsZero() {
		return nil, errors.New("rendezvous server: no key")
	}
	for name, r := range map[string]float64{"ConnRate": cfg.ConnRate, "ConnectRate": cfg.ConnectRate, "ProbeRate": cfg.ProbeRate} {
		if math.IsNaN(r) {
			return nil, fmt.Errorf("rendezvous server: %s is not a number", name)
		}
	}
	cert, err := identity.Certificate(cfg.Key)
	if err != nil {
		return nil, err
	}
	// Any peer may register; its key is its identity.
	conf := identity.TLSConfig(cert, func(identity.PublicKey) error { return nil })
	conf.SessionTicketsDisabled = true
	conf.NextProtos = serverALPN
	secret, err := newRelaySecret()
	if err != nil {
		return nil, err
	}
	logs, err := loglimit.New(loglimit.Config{Log: cfg.Log, Interval: cfg.RefusalLogInterval, Burst: cfg.LogBurst})
	if err != nil {
		return nil, err
	}
	s := &Server{
		logs:        logs,
		relaySecret: secret,
		meter:       newRelayMeter(cfg),
		cfg:         cfg,
		tlsConf:     conf,
		guard:       newGuard(cfg),
		probes:      newProbeLimits(cfg),
		refusals:    newRefusals(cfg.Log, cfg.RefusalLogInterval),
		peers:       make(map[identity.PublicKey]*peerConn),
		observers:   make(map[observeToken]*peerConn),
		pairs:       make(map[[2]identity.PublicKey]pairSession),
		sessions:    make(map[punch.SessionID]*udpSession),
		issued:      make(map[punch.SessionID]issuedSession),
		relays:      newRelayHub(),
		consents:    consentHub{pending: make(map[uint64]*pendingAsk)},
	}
	if cfg.Cluster != nil {
		if s.cluster, err = newCluster(s, *cfg.Cluster); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// PublicKey returns the key peers must pin.
func (s *Server) PublicKey() identity.PublicKey { return s.cfg.Key.Public() }

// Serve runs the control protocol on ln until ctx ends; it closes ln and
// every peer connection before returning.
//
// A connection over the server's caps or its source's is closed as soon
// as it is accepted, before any work on it. Accept errors other than the
// listener's closing (out of file descriptors, say) are waited out.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	defer s.holdJanitor()()
	var wg sync.WaitGroup
	defer wg.Wait()
	var backoff time.Duration
	var warned time.Time
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("rendezvous accept: %w", err)
			}
			// As net/http does: a full fd table empties as connections
			// end.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			if time.Since(warned) >= s.cfg.RefusalLogInterval {
				warned = time.Now()
				s.cfg.Log.WithError(err).WithField("retry_in", backoff).Warn("rendezvous accept failed")
			}
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			continue
		}
		backoff = 0
		src := sourceOfAddr(c.RemoteAddr())
		adm, reason := s.guard.admit(src, c, time.Now())
		if reason != "" {
			c.Close()
			s.refusals.note(src, reason)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer adm.release()
			s.serveConn(ctx, c, adm)
		}()
	}
}

// ServeUDP answers probes on pc until ctx ends.
//
// A probe is answered only if the answer is no larger than the probe (the
// server must not amplify a forged source's traffic), and at most
// ProbeRate times a second per source.
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	defer s.holdJanitor()()
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("rendezvous udp: %w", err)
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		src := unmap(ua.AddrPort())
		reply, sp, ok := parseProbe(buf[:n], src)
		if !ok {
			continue
		}
		if reply == nil && sp == nil {
			// A plain probe with no room for the answer (a bare header,
			// which newer clients send for older servers): nothing to
			// do.
			continue
		}
		if !s.probes.allow(sourceOf(src.Addr()), time.Now()) {
			s.refusals.note(sourceOf(src.Addr()), refusedProbeRate)
			continue
		}
		if reply != nil {
			pc.WriteTo(reply, from)
		}
		if sp != nil {
			s.sessionMapped(sp, src)
		}
	}
}

// peerConn is one registered peer's control connection.
type peerConn struct {
	key      identity.PublicKey
	conn     *tls.Conn
	observed netip.AddrPort
	lan      []string
	log      logrus.FieldLogger

	// wmu serialises writes.
	wmu sync.Mutex

	// On the server: the connection's admission, the peer's connect
	// requests (nil without a rate), and its sessions still being started
	// (see coordinate), which serveRegistered ends and waits for
	// (startingWG) when the connection ends.
	adm        *admission
	connects   *rate.Limiter
	starting   atomic.Int32
	startingWG sync.WaitGroup

	// mu guards the fields below, which the peer's own goroutine writes
	// and coordinating goroutines read.
	mu  sync.Mutex
	nat *NATReport
	rtt time.Duration
	// observed6 is the peer's IPv6 endpoint as its observation showed
	// it (see observe6.go), set once its probe arrives.
	observed6 netip.AddrPort
	// observe is the token of the peer's IPv6 observation (server side).
	observe observeToken

	// rtts are the peer's round trips to a cluster's nodes, by address,
	// in ms, as its register reported them (server side; read only).
	rtts map[string]float64

	// reported is closed at the peer's first NAT report (server side
	// only), for sessions waiting to start.
	reported     chan struct{}
	reportedOnce sync.Once
}

func (p *peerConn) natAndRTT() (*NATReport, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nat, p.rtt
}

func (p *peerConn) send(m *Message) error { return p.sendWithin(m, 10*time.Second) }

// sendWithin sends m, giving up after d.
func (p *peerConn) sendWithin(m *Message, d time.Duration) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.conn.SetWriteDeadline(time.Now().Add(d))
	return WriteMessage(p.conn, m)
}

func (s *Server) serveConn(ctx context.Context, raw net.Conn, adm *admission) {
	defer raw.Close()
	var log logrus.FieldLogger = s.cfg.Log.WithField("remote", raw.RemoteAddr().String())
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()
	defer func() {
		// A bug in serving one connection must not take every peer's
		// server down with it.
		if r := recover(); r != nil {
			log.WithFields(logrus.Fields{"panic": r, "stack": string(debug.Stack())}).Error("rendezvous connection panicked")
		}
	}()

	// One deadline for the whole handshake, however the bytes trickle
	// in: a connection that dribbles them holds its slot no longer.
	raw.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	// The reader is there to peek at the first byte, and it stays with the
	// connection for its whole life: a small one, as reads larger than it
	// bypass it (a 4 KiB default was 4 KiB of every registered peer).
	br := bufio.NewReaderSize(raw, 32)
	first, err := br.Peek(1)
	if err != nil {
		s.handshakeFailed(adm.src, log, fmt.Errorf("first byte: %w", err))
		return
	}
	if first[0] == tcpProbeMagic[0] {
		magic, id, side, ok := readHeader(br)
		switch {
		case ok && magic == tcpProbeMagic:
			adm.established()
			s.serveTCPProbe(raw, id, side)
		case ok && magic == observeMagic:
			adm.established()
			s.serveObserve(raw, observeToken(id))
		case ok && (magic == relayMagic || magic == relayAuthMagic):
			cl, err := readRelayClaim(br, magic, id, side)
			if err != nil {
				s.handshakeFailed(adm.src, log, err)
				return
			}
			adm.established()
			raw.SetDeadline(time.Time{})
			s.serveRelay(ctx, raw, br, cl)
		default:
			s.handshakeFailed(adm.src, log, errors.New("malformed probe or relay header"))
		}
		return
	}
	p, err := s.handshake(&peekedConn{Conn: raw, r: br}, log)
	if err != nil {
		s.handshakeFailed(adm.src, log, err)
		return
	}
	adm.established()
	p.adm = adm
	s.serveRegistered(ctx, p)
}

// Kinds of lines a peer's actions log, each limited per source (see
// ServerConfig.LogBurst): anyone can register a fresh key and act.
const (
	logRegister = "register"
	logNAT      = "nat"
	logPunch    = "punch"
	logProtocol = "protocol"
	logRelay    = "relay"
)

// logsFor reports whether a line of kind caused by p may be logged.
func (s *Server) logsFor(p *peerConn, kind string) bool {
	return s.logs.Allow(p.adm.src.String(), kind)
}

// serveRegistered serves a peer whose handshake is done, until its
// connection ends.
func (s *Server) serveRegistered(ctx context.Context, p *peerConn) {
	log := p.log
	// The sessions this peer starts are its connection's: they end with
	// it, before its slot is given back.
	ctx, cancel := context.WithCancel(ctx)
	defer p.startingWG.Wait()
	defer cancel()
	// Record the peer before telling it it is registered: a connect
	// naming it may follow at once.
	if old := s.register(p); old != nil {
		if s.logsFor(p, logRegister) {
			log.Info("peer re-registered; closing its previous connection")
		}
		// Tell the earlier connection why, so that a second daemon with
		// the same key says so and backs off rather than flap: briefly,
		// as a connection that does not read must not hold this one up.
		old.sendWithin(&Message{Type: TypeError, Code: CodeReplaced, Public: p.observed.String(),
			Text: "another connection registered this key"}, time.Second)
		old.conn.Close()
	}
	s.cluster.claim(p)
	reg := &Message{Type: TypeRegistered, Observed: p.observed.String(), UDP: s.cfg.UDPEndpoints, Node: s.cluster.nodeName()}
	if !isGlobal6(p.observed.Addr()) && len(s.cfg.IPv6Endpoints) > 0 {
		reg.Observe, reg.Observe6 = p.observe.String(), s.cfg.IPv6Endpoints
	}
	if err := p.send(reg); err != nil {
		s.unregister(p)
		if s.logsFor(p, logRegister) {
			log.WithError(err).Info("registration failed")
		}
		return
	}
	if s.logsFor(p, logRegister) {
		log.WithField("observed", p.observed).Info("peer registered")
	}
	defer func() {
		s.unregister(p)
		if s.logsFor(p, logRegister) {
			log.Info("peer left")
		}
	}()
	for {
		p.conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		m, err := ReadMessage(p.conn)
		if err == nil {
			err = s.handle(ctx, p, m)
		} else if !errors.Is(err, ErrProtocol) {
			return // gone, or silent for IdleTimeout
		} else {
			p.send(&Message{Type: TypeError, Code: CodeProtocol, Text: err.Error()})
		}
		if err != nil {
			if s.logsFor(p, logProtocol) {
				log.WithError(err).Warn("closing peer connection")
			}
			return
		}
	}
}

// handle acts on one message from a registered peer. An error closes the
// peer's connection.
func (s *Server) handle(ctx context.Context, p *peerConn, m *Message) error {
	switch m.Type {
	case TypePing:
		if m.RTTMs > 0 {
			p.mu.Lock()
			p.rtt = time.Duration(m.RTTMs * float64(time.Millisecond))
			p.mu.Unlock()
		}
		return p.send(&Message{Type: TypePong, Seq: m.Seq})
	case TypeNAT:
		if m.NAT == nil {
			return nil
		}
		// The reason is passed on to other peers: a word, not a payload.
		if len(m.NAT.Restricted) > maxRestricted {
			m.NAT.Restricted = ""
		}
		p.mu.Lock()
		changed := p.nat == nil || *p.nat != *m.NAT
		p.nat = m.NAT
		p.mu.Unlock()
		p.reportedOnce.Do(func() { close(p.reported) })
		// Only changes, and only a few a source: a peer repeating itself,
		// or flipping between two reports, must not fill the log.
		if changed && s.logsFor(p, logNAT) {
			l := p.log.WithField("nat", m.NAT.String())
			if m.NAT.Restricted != "" {
				l = l.WithField("restricted", m.NAT.Restricted)
			}
			l.Info("peer reported its NAT")
		}
		return nil
	case TypeConnect:
		return s.coordinate(ctx, p, m.Peer)
	case TypeConsent:
		s.consents.answer(p, m.Seq)
		return nil
	}
	return fmt.Errorf("%w: unexpected %q from a registered peer", ErrProtocol, m.Type)
}

// handshakeFailed logs a connection that did not get through its
// handshake: each one at debug level, and in its source's summary.
func (s *Server) handshakeFailed(src netip.Addr, log logrus.FieldLogger, err error) {
	log.WithError(err).Debug("registration failed")
	s.refusals.noteErr(src, failedHandshake, err)
}

// handshake runs TLS and reads the register message, within the deadline
// serveConn set on raw. The peer's key is the one its TLS certificate
// holds, which TLS 1.3 made it prove it holds the private half of by
// signing this handshake's transcript (fresh on both sides): no bytes
// from another connection can register it.
func (s *Server) handshake(raw net.Conn, log logrus.FieldLogger) (*peerConn, error) {
	tc := tls.Server(raw, s.tlsConf)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	key, err := identity.PeerKey(tc.ConnectionState())
	if err != nil {
		return nil, err
	}
	p := &peerConn{key: key, conn: tc, log: log.WithField("peer", key.Short()), reported: make(chan struct{})}
	// Errors go out under the handshake's deadline (send would set a
	// later one).
	m, err := ReadMessage(tc)
	if err != nil {
		if errors.Is(err, ErrProtocol) {
			WriteMessage(tc, &Message{Type: TypeError, Code: CodeProtocol, Text: err.Error()})
		}
		return nil, fmt.Errorf("register: %w", err)
	}
	if m.Type != TypeRegister || m.Version != Version {
		WriteMessage(tc, &Message{Type: TypeError, Code: CodeProtocol, Text: "expected register, version 1"})
		return nil, fmt.Errorf("%w: first message %q version %d", ErrProtocol, m.Type, m.Version)
	}
	if s.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(m.Token), []byte(s.cfg.Token)) != 1 {
		WriteMessage(tc, &Message{Type: TypeError, Code: CodeBadToken, Text: "join token refused"})
		return nil, errors.New("bad join token")
	}
	if len(s.cfg.AllowKeys) > 0 && !slices.Contains(s.cfg.AllowKeys, key) {
		WriteMessage(tc, &Message{Type: TypeError, Code: CodeNotAdmitted, Text: "this server admits only the keys its operator listed"})
		return nil, errors.New("key not in allow_keys")
	}
	if s.cfg.ConnectRate >= 0 {
		p.connects = rate.NewLimiter(rate.Limit(s.cfg.ConnectRate), s.cfg.ConnectBurst)
	}
	ap, err := netip.ParseAddrPort(raw.RemoteAddr().String())
	if err != nil {
		return nil, err
	}
	p.observed = unmap(ap)
	p.rtts = cleanRTTs(m.RTTs)
	for _, a := range m.LAN {
		if _, err := netip.ParseAddrPort(a); err == nil && len(p.lan) < 16 {
			p.lan = append(p.lan, a)
		}
	}
	raw.SetDeadline(time.Time{})
	return p, nil
}

func (s *Server) register(p *peerConn) (old *peerConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old = s.peers[p.key]
	s.peers[p.key] = p
	p.observe = newObserveToken()
	s.observers[p.observe] = p
	return old
}

func (s *Server) unregister(p *peerConn) {
	s.mu.Lock()
	gone := s.peers[p.key] == p
	if gone {
		delete(s.peers, p.key)
	}
	if s.observers[p.observe] == p {
		delete(s.observers, p.observe)
	}
	s.mu.Unlock()
	if gone {
		s.cluster.release(p)
	}
}

// pairSession records the last punch session of two peers.
type pairSession struct {
	at    time.Time
	asker identity.PublicKey // the peer whose connect request started it
	// sent is set once the punch instructions went out, built from the
	// peers' NAT reports nats (in pairOf's order; nil: none): an ask from
	// a peer whose report has changed since is no duplicate (see
	// pairTaken).
	sent bool
	nats [2]*NATReport
}

// pairOf is the key of a and b's pair in Server.pairs.
func pairOf(a, b identity.PublicKey) [2]identity.PublicKey {
	if b.Less(a) {
		return [2]identity.PublicKey{b, a}
	}
	return [2]identity.PublicKey{a, b}
}

// notePairSentLocked records that the session of a and b went out, built
// from their NAT reports natA and natB. Called with s.mu held.
func (s *Server) notePairSentLocked(a, b identity.PublicKey, natA, natB *NATReport) {
	pair := pairOf(a, b)
	ps, ok := s.pairs[pair]
	if !ok {
		return
	}
	ps.sent = true
	if pair[0] == a {
		ps.nats = [2]*NATReport{natA, natB}
	} else {
		ps.nats = [2]*NATReport{natB, natA}
	}
	s.pairs[pair] = ps
}

// startSession waits for both peers' NAT reports and starts a punch
// session between them, unless ctx (p's connection) ends first.
func (s *Server) startSession(ctx context.Context, p, other *peerConn, key identity.PublicKey) {
	wait := time.NewTimer(s.cfg.NATWait)
	defer wait.Stop()
reports:
	for _, q := range []*peerConn{p, other} {
		select {
		case <-q.reported:
		case <-wait.C:
			break reports
		case <-ctx.Done():
			return
		}
	}
	id := punch.NewSessionID()
	keys := [2]identity.PublicKey{p.key, other.key}
	passes, relayNode := s.relayPasses(id, keys, [2]map[string]float64{s.cluster.rttsOf(p), s.cluster.rttsOf(other)}, false)
	if s.logsFor(p, logPunch) {
		l := p.log.WithFields(logrus.Fields{"to": key.Short(), "session": id.String()[:8]})
		if relayNode != "" {
			l = l.WithField("relay_node", relayNode)
		}
		l.Info("coordinating punch")
	}
	us := &udpSession{sides: [2]*peerConn{p, other}}
	natP, _ := p.natAndRTT()
	natOther, _ := other.natAndRTT()
	s.issueSession(id, us, keys, [2]*NATReport{natP, natOther})
	// A failure to send is that peer's connection's problem, and a peer
	// slow to read delays only its own instruction.
	var wg sync.WaitGroup
	for i, to := range []*peerConn{p, other} {
		wg.Go(func() {
			m := punchFor(id, i, us.sides[1-i])
			passes[i].apply(m)
			// Only when both have one: a side without IPv6 cannot use
			// the other's, and both must choose from the same facts.
			if a, b := to.addr6(), us.sides[1-i].addr6(); a.IsValid() && b.IsValid() {
				m.Public6 = b.String()
			}
			// Both peers' round trips to the server add up to about
			// theirs to each other (each crosses its own uplink twice):
			// the peers scale their punch timers by it.
			_, rtt := to.natAndRTT()
			if _, peer := us.sides[1-i].natAndRTT(); rtt > 0 && peer > 0 {
				m.RTTMs = float64((rtt + peer).Microseconds()) / 1000
			}
			if err := to.send(m); err != nil {
				to.conn.Close()
			}
		})
	}
	wg.Wait()
}

// issueSession records session id, between keys by side: for its UDP
// step (us) and for its relay; and that the pair's instructions go out
// built from the NAT reports nats (see pairTaken).
func (s *Server) issueSession(id punch.SessionID, us *udpSession, keys [2]identity.PublicKey, nats [2]*NATReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions[id] = us
	s.issued[id] = issuedSession{at: time.Now(), keys: keys}
	s.order.push(id)
	// A loop, as the oldest may be gone already (relayed, see
	// forgetIssued); every session still issued is in the queue.
	for over(len(s.issued)-1, s.cfg.MaxSessions) {
		delete(s.issued, s.order.pop())
	}
	us.timer = time.AfterFunc(s.cfg.UDPWait, func() { s.flushUDP(id) })
	s.notePairSentLocked(keys[0], keys[1], nats[0], nats[1])
}

// serveTCPProbe answers a TCP session probe: the observed endpoint of
// this connection, which becomes the base of the peer's port prediction.
func (s *Server) serveTCPProbe(raw net.Conn, id punch.SessionID, side byte) {
	from, err := netip.ParseAddrPort(raw.RemoteAddr().String())
	if err != nil {
		return
	}
	from = unmap(from)
	s.tcpMapped(id, side, from)
	raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(raw, from.String()+"\n")
}

// tcpMapped records the endpoint a TCP session probe came from; one for
// a session another node coordinates goes there.
func (s *Server) tcpMapped(id punch.SessionID, side byte, from netip.AddrPort) {
	s.mu.Lock()
	us := s.sessions[id]
	if us != nil {
		us.tcpMapped[side] = from
	}
	s.mu.Unlock()
	if us == nil {
		s.cluster.forwardProbe(id, int(side), from, 0, true)
	}
}

// peekedConn replays what a bufio.Reader already read from the conn.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// sessionMapped records the endpoint a session probe came from (IPv4
// unmapped), and tells both sides once both are known.
func (s *Server) sessionMapped(sp *sessionProbe, from netip.AddrPort) {
	s.mu.Lock()
	us := s.sessions[sp.session]
	if us == nil {
		s.mu.Unlock()
		s.cluster.forwardProbe(sp.session, sp.side, from, sp.localPort, false)
		return
	}
	us.mapped[sp.side] = from
	us.localPort[sp.side] = sp.localPort
	both := us.mapped[0].IsValid() && us.mapped[1].IsValid()
	s.mu.Unlock()
	if both {
		go s.flushUDP(sp.session)
	}
}

// flushUDP sends each side of a session the other's session endpoint (if
// known) and how long to wait, so that both start punching at once.
func (s *Server) flushUDP(id punch.SessionID) {
	s.mu.Lock()
	us := s.sessions[id]
	delete(s.sessions, id)
	s.mu.Unlock()
	if us == nil {
		return
	}
	us.timer.Stop()
	var owd [2]time.Duration
	for i, pc := range us.sides {
		if pc == nil {
			owd[i] = us.remote.rtt / 2
			continue
		}
		_, rtt := pc.natAndRTT()
		owd[i] = rtt / 2
	}
	latest := max(owd[0], owd[1])
	var wg sync.WaitGroup
	defer wg.Wait()
	for i, pc := range us.sides {
		m := &Message{Type: TypeUDP, Session: id.String(), DelayMs: int((latest - owd[i]).Milliseconds())}
		if peer := us.tcpMapped[1-i]; peer.IsValid() {
			m.PeerTCP = peer.String()
		}
		if peer := us.mapped[1-i]; peer.IsValid() {
			m.PeerUDP = peer.String()
			m.PeerLANPort = int(us.localPort[1-i])
		}
		if pc == nil {
			s.cluster.deliverUDP(us.remote, m)
			continue
		}
		wg.Go(func() {
			if err := pc.send(m); err != nil {
				pc.conn.Close()
			}
		})
	}
}

// punchFor tells its receiver, side side of the session, to punch
// towards about.
func punchFor(session punch.SessionID, side int, about *peerConn) *Message {
	nat, _ := about.natAndRTT()
	return &Message{Type: TypePunch, Session: session.String(), Side: side, Peer: about.key.String(),
		Public: about.observed.String(), LAN: about.lan, NAT: nat}
}

// ListenAndServe binds TCP and UDP on listen and alt (alt may be empty),
// TCP alone on ServerConfig.FallbackListen if set, and UDP alone on the
// extra probe endpoint ProbeEndpoints names, then
// serves them all until ctx ends. If any bind fails, nothing is served and
// the error names the address. ready, if not nil, is called with every
// bound address (TCP and UDP) once all binds succeeded.
func (s *Server) ListenAndServe(ctx context.Context, listen, alt string, ready func([]net.Addr)) error {
	var lns []net.Listener
	var pcs []net.PacketConn
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
		for _, pc := range pcs {
			pc.Close()
		}
	}
	var bound []net.Addr
	tcpAddrs := []string{listen}
	if alt != "" && alt != listen {
		tcpAddrs = append(tcpAddrs, alt)
	}
	// Relayed and control connections announce a small MSS: the server
	// serves daemons behind every kind of path, PMTU black holes too.
	lc := net.ListenConfig{Control: punch.ClampMSS}
	for i, a := range tcpAddrs {
		ln, err := lc.Listen(ctx, "tcp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen %s: %w", a, err)
		}
		lns = append(lns, ln)
		// UDP probes share the TCP port, also when it was port 0.
		tcpAddrs[i] = ln.Addr().String()
		if i == 0 && s.cfg.IPv6Endpoints == nil {
			s.cfg.IPv6Endpoints = ipv6Endpoints(ln.Addr())
		}
		bound = append(bound, ln.Addr())
	}
	// The fallback listener is TCP only (networks that need it let no
	// UDP out) and served exactly like the others.
	if fb := s.cfg.FallbackListen; fb != "" {
		ln, err := lc.Listen(ctx, "tcp", fb)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen %s (fallback): %w", fb, err)
		}
		lns = append(lns, ln)
		bound = append(bound, ln.Addr())
	}
	udpAddrs, err := ProbeEndpoints(tcpAddrs[0], alt)
	if err != nil {
		closeAll()
		return err
	}
	if len(tcpAddrs) > 1 {
		udpAddrs[1] = tcpAddrs[1]
	}
	for _, a := range udpAddrs {
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen udp %s: %w", a, err)
		}
		pcs = append(pcs, pc)
		bound = append(bound, pc.LocalAddr())
		s.cfg.UDPEndpoints = append(s.cfg.UDPEndpoints, pc.LocalAddr().String())
	}
	if ready != nil {
		ready(bound)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(lns)+len(pcs))
	for _, ln := range lns {
		go func() { errs <- s.Serve(ctx, ln) }()
	}
	for _, pc := range pcs {
		go func() { errs <- s.ServeUDP(ctx, pc) }()
	}
	var first error
	for range len(lns) + len(pcs) {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}
