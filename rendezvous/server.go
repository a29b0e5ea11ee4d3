package rendezvous

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/punch"
)

// ServerConfig configures a Server. Zero durations mean their defaults.
type ServerConfig struct {
	// Key is the server's identity; peers pin its public half. Required.
	Key identity.PrivateKey
	// Token, if set, must be presented by every registering peer.
	Token string
	// HandshakeTimeout bounds TLS plus the register message. Default 10s.
	HandshakeTimeout time.Duration
	// IdleTimeout drops a peer that sends nothing (not even a ping) this
	// long. Default 60s.
	IdleTimeout time.Duration
	// PairWindow suppresses a second punch session for the same two peers
	// within this time, so that both sides asking at once yields one
	// session. Default 3s.
	PairWindow time.Duration
	// NATWait bounds how long a punch session waits for both peers to
	// report their NAT (they do so just after registering). Default 3s.
	NATWait time.Duration
	// UDPWait bounds how long a punch session waits for both sides' UDP
	// session probes before telling each side what it has. Default 1s.
	UDPWait time.Duration
	// Relay lets peers relay through this server when they find no direct
	// path. Default: off in a zero ServerConfig; `warren rendezvous`
	// turns it on unless configured off.
	Relay bool
	// MaxRelays caps relayed sessions at once. Default 1000.
	MaxRelays int
	// RelayWindow is how long after a punch session starts its peers may
	// open a relay for it. Default 1m.
	RelayWindow time.Duration
	// RelayWait is how long a relay connection waits for the other side.
	// Default 10s.
	RelayWait time.Duration
	// RelayIdle closes a relay that carried nothing this long. Default 2m
	// (links ping every 15s).
	RelayIdle time.Duration
	// RelayRate caps the bytes per second each peer may send through
	// relays, all its relays together. 0 means no cap.
	RelayRate int64
	// UDPEndpoints are the UDP probe endpoints advertised to peers at
	// registration; an unspecified host means "the address you dialled".
	// ListenAndServe fills them in.
	UDPEndpoints []string
	// Log receives the server's logs. Default: logrus' standard logger.
	Log logrus.FieldLogger
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.MaxRelays <= 0 {
		c.MaxRelays = 1000
	}
	if c.RelayWindow <= 0 {
		c.RelayWindow = time.Minute
	}
	if c.RelayWait <= 0 {
		c.RelayWait = 10 * time.Second
	}
	if c.RelayIdle <= 0 {
		c.RelayIdle = 2 * time.Minute
	}
	if c.NATWait <= 0 {
		c.NATWait = 3 * time.Second
	}
	if c.UDPWait <= 0 {
		c.UDPWait = time.Second
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.PairWindow <= 0 {
		c.PairWindow = 3 * time.Second
	}
	if c.Log == nil {
		c.Log = logrus.StandardLogger()
	}
	return c
}

// Server is a rendezvous server.
type Server struct {
	cfg     ServerConfig
	tlsConf *tls.Config

	// mu guards the fields below.
	mu       sync.Mutex
	peers    map[identity.PublicKey]*peerConn
	pairs    map[[2]identity.PublicKey]pairSession // last punch session per pair
	sessions map[punch.SessionID]*udpSession       // sessions waiting for UDP probes
	issued   map[punch.SessionID]issuedSession     // sessions a relay may serve
	swept    time.Time                             // last sweepLocked
	limiters map[identity.PublicKey]*peerLimiter   // relay rate per peer, while it relays

	relays relayHub
}

// udpSession collects both sides' session-socket mappings.
type udpSession struct {
	sides     [2]*peerConn
	mapped    [2]netip.AddrPort
	localPort [2]uint16
	tcpMapped [2]netip.AddrPort // from TCP session probes, where a side sent one
	timer     *time.Timer
}

// NewServer validates cfg and returns a server; call Serve to run it.
func NewServer(cfg ServerConfig) (*Server, error) {
	cfg = cfg.withDefaults()
	if cfg.Key.Public().IsZero() {
		return nil, errors.New("rendezvous server: no key")
	}
	cert, err := identity.Certificate(cfg.Key)
	if err != nil {
		return nil, err
	}
	// Any peer may register; its key is its identity.
	conf := identity.TLSConfig(cert, func(identity.PublicKey) error { return nil })
	conf.SessionTicketsDisabled = true
	return &Server{
		cfg:      cfg,
		tlsConf:  conf,
		peers:    make(map[identity.PublicKey]*peerConn),
		pairs:    make(map[[2]identity.PublicKey]pairSession),
		sessions: make(map[punch.SessionID]*udpSession),
		issued:   make(map[punch.SessionID]issuedSession),
		limiters: make(map[identity.PublicKey]*peerLimiter),
		relays:   relayHub{waiting: make(map[punch.SessionID]*relayHalf)},
	}, nil
}

// PublicKey returns the key peers must pin.
func (s *Server) PublicKey() identity.PublicKey { return s.cfg.Key.Public() }

// Serve runs the control protocol on ln until ctx ends; it closes ln and
// every peer connection before returning.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("rendezvous accept: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

// ServeUDP answers probes on pc until ctx ends.
func (s *Server) ServeUDP(ctx context.Context, pc net.PacketConn) error {
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
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
		pc.WriteTo(reply, from)
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

	// mu guards the fields below, which the peer's own goroutine writes
	// and coordinating goroutines read.
	mu  sync.Mutex
	nat *punch.NAT
	rtt time.Duration
}

func (p *peerConn) natAndRTT() (*punch.NAT, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nat, p.rtt
}

func (p *peerConn) send(m *Message) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return WriteMessage(p.conn, m)
}

func (s *Server) serveConn(ctx context.Context, raw net.Conn) {
	defer raw.Close()
	var log logrus.FieldLogger = s.cfg.Log.WithField("remote", raw.RemoteAddr().String())
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	defer stop()

	// The reader is there to peek at the first byte, and it stays with the
	// connection for its whole life: a small one, as reads larger than it
	// bypass it (a 4 KiB default was 4 KiB of every registered peer).
	br := bufio.NewReaderSize(raw, 32)
	raw.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	if first[0] == tcpProbeMagic[0] {
		magic, id, side, ok := readHeader(br)
		switch {
		case ok && magic == tcpProbeMagic:
			s.serveTCPProbe(raw, id, side)
		case ok && magic == relayMagic:
			raw.SetReadDeadline(time.Time{})
			s.serveRelay(ctx, raw, br, id, side)
		}
		return
	}
	p, err := s.handshake(&peekedConn{Conn: raw, r: br}, log)
	if err != nil {
		log.WithError(err).Info("registration failed")
		return
	}
	log = p.log
	// Record the peer before telling it it is registered: a connect
	// naming it may follow at once.
	old := s.register(p)
	if old != nil {
		log.Info("peer re-registered; closing its previous connection")
		old.conn.Close()
	}
	if err := p.send(&Message{Type: TypeRegistered, Observed: p.observed.String(), UDP: s.cfg.UDPEndpoints}); err != nil {
		s.unregister(p)
		log.WithError(err).Info("registration failed")
		return
	}
	log.WithField("observed", p.observed).Info("peer registered")
	defer func() {
		s.unregister(p)
		log.Info("peer left")
	}()
	for {
		p.conn.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		m, err := ReadMessage(p.conn)
		if err != nil {
			if errors.Is(err, ErrProtocol) {
				log.WithError(err).Warn("closing peer connection")
				p.send(&Message{Type: TypeError, Code: CodeProtocol, Text: err.Error()})
			}
			return
		}
		switch m.Type {
		case TypePing:
			if m.RTTMs > 0 {
				p.mu.Lock()
				p.rtt = time.Duration(m.RTTMs * float64(time.Millisecond))
				p.mu.Unlock()
			}
			err = p.send(&Message{Type: TypePong, Seq: m.Seq})
		case TypeNAT:
			if m.NAT != nil {
				p.mu.Lock()
				p.nat = m.NAT
				p.mu.Unlock()
				log.WithField("nat", m.NAT.String()).Info("peer reported its NAT")
			}
		case TypeConnect:
			err = s.coordinate(p, m.Peer)
		default:
			err = fmt.Errorf("%w: unexpected %q from a registered peer", ErrProtocol, m.Type)
		}
		if err != nil {
			log.WithError(err).Warn("closing peer connection")
			return
		}
	}
}

// handshake runs TLS and reads the register message.
func (s *Server) handshake(raw net.Conn, log logrus.FieldLogger) (*peerConn, error) {
	raw.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	tc := tls.Server(raw, s.tlsConf)
	if err := tc.Handshake(); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	key, err := identity.PeerKey(tc.ConnectionState())
	if err != nil {
		return nil, err
	}
	p := &peerConn{key: key, conn: tc, log: log.WithField("peer", key.Short())}
	m, err := ReadMessage(tc)
	if err != nil {
		return nil, err
	}
	if m.Type != TypeRegister || m.Version != Version {
		p.send(&Message{Type: TypeError, Code: CodeProtocol, Text: "expected register, version 1"})
		return nil, fmt.Errorf("%w: first message %q version %d", ErrProtocol, m.Type, m.Version)
	}
	if s.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(m.Token), []byte(s.cfg.Token)) != 1 {
		p.send(&Message{Type: TypeError, Code: CodeBadToken, Text: "join token refused"})
		return nil, errors.New("bad join token")
	}
	ap, err := netip.ParseAddrPort(raw.RemoteAddr().String())
	if err != nil {
		return nil, err
	}
	p.observed = unmap(ap)
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
	return old
}

func (s *Server) unregister(p *peerConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.peers[p.key] == p {
		delete(s.peers, p.key)
	}
}

// pairSession records the last punch session of two peers.
type pairSession struct {
	at    time.Time
	asker identity.PublicKey // the peer whose connect request started it
}

// coordinate starts a punch session between p and the peer it asked for.
func (s *Server) coordinate(p *peerConn, peer string) error {
	key, err := identity.ParsePublicKey(peer)
	if err != nil {
		return fmt.Errorf("%w: connect: %v", ErrProtocol, err)
	}
	pair := [2]identity.PublicKey{p.key, key}
	if key.Less(p.key) {
		pair = [2]identity.PublicKey{key, p.key}
	}
	s.mu.Lock()
	other := s.peers[key]
	last := s.pairs[pair]
	// Only the other side's recent ask makes this one a duplicate: a peer
	// asking again has lost the session it started (its address changed,
	// say) and needs a new one now.
	recent := time.Since(last.at) < s.cfg.PairWindow && last.asker != p.key
	if other != nil && !recent && key != p.key {
		s.pairs[pair] = pairSession{at: time.Now(), asker: p.key}
		s.sweepLocked()
	}
	s.mu.Unlock()
	switch {
	case other == nil || key == p.key:
		return p.send(&Message{Type: TypeError, Code: CodePeerOffline, Peer: peer, Text: "peer is not registered"})
	case recent:
		// The other side asked at the same moment; its session serves both.
		return nil
	}
	// Both sides pick their strategy from both NATs, so they must see the
	// same two: wait (off this peer's read loop) until both have reported,
	// or NATWait has passed.
	go s.startSession(p, other, key)
	return nil
}

// startSession waits for both peers' NAT reports and starts a punch
// session between them.
func (s *Server) startSession(p, other *peerConn, key identity.PublicKey) {
	deadline := time.Now().Add(s.cfg.NATWait)
	for time.Now().Before(deadline) {
		pn, _ := p.natAndRTT()
		on, _ := other.natAndRTT()
		if pn != nil && on != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	id := punch.NewSessionID()
	p.log.WithFields(logrus.Fields{"to": key.Short(), "session": id.String()[:8]}).Info("coordinating punch")
	us := &udpSession{sides: [2]*peerConn{p, other}}
	s.mu.Lock()
	s.sessions[id] = us
	s.sweepLocked()
	s.issued[id] = issuedSession{at: time.Now(), keys: [2]identity.PublicKey{p.key, other.key}}
	us.timer = time.AfterFunc(s.cfg.UDPWait, func() { s.flushUDP(id) })
	s.mu.Unlock()
	// A failure to send is that peer's connection's problem.
	for i, to := range []*peerConn{p, other} {
		if err := to.send(punchFor(id, i, us.sides[1-i])); err != nil {
			to.conn.Close()
		}
	}
}

// serveTCPProbe answers a TCP session probe: the observed endpoint of
// this connection, which becomes the base of the peer's port prediction.
func (s *Server) serveTCPProbe(raw net.Conn, id punch.SessionID, side byte) {
	from, err := netip.ParseAddrPort(raw.RemoteAddr().String())
	if err != nil {
		return
	}
	from = unmap(from)
	s.mu.Lock()
	if us := s.sessions[id]; us != nil {
		us.tcpMapped[side] = from
	}
	s.mu.Unlock()
	raw.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(raw, from.String()+"\n")
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
		return
	}
	us.mapped[sp.side] = from
	us.localPort[sp.side] = sp.localPort
	both := us.mapped[0].IsValid() && us.mapped[1].IsValid()
	s.mu.Unlock()
	if both {
		s.flushUDP(sp.session)
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
		_, rtt := pc.natAndRTT()
		owd[i] = rtt / 2
	}
	latest := max(owd[0], owd[1])
	for i, pc := range us.sides {
		m := &Message{Type: TypeUDP, Session: id.String(), DelayMs: int((latest - owd[i]).Milliseconds())}
		if peer := us.tcpMapped[1-i]; peer.IsValid() {
			m.PeerTCP = peer.String()
		}
		if peer := us.mapped[1-i]; peer.IsValid() {
			m.PeerUDP = peer.String()
			m.PeerLANPort = int(us.localPort[1-i])
		}
		if err := pc.send(m); err != nil {
			pc.conn.Close()
		}
	}
}

// sweepLocked drops expired pair and session records, at most once a
// second: a sweep at every coordination would cost the whole maps each
// time.
func (s *Server) sweepLocked() {
	now := time.Now()
	if now.Sub(s.swept) < time.Second {
		return
	}
	s.swept = now
	for k, ps := range s.pairs {
		if now.Sub(ps.at) > s.cfg.PairWindow {
			delete(s.pairs, k)
		}
	}
	for k, is := range s.issued {
		if now.Sub(is.at) > s.cfg.RelayWindow {
			delete(s.issued, k)
		}
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
// and UDP alone on the extra probe endpoint ProbeEndpoints names, then
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
	for i, a := range tcpAddrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("listen %s: %w", a, err)
		}
		lns = append(lns, ln)
		// UDP probes share the TCP port, also when it was port 0.
		tcpAddrs[i] = ln.Addr().String()
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
