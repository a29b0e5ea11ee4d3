package rendezvous

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/punch"
)

// A relay connection is a plain TCP connection to the control port that
// opens with relayMagic + session ID (16) + side (1) + the side's
// RelayToken (16). The server pairs the two sides of a session it issued,
// answers each with relayPaired, and then copies bytes both ways. What flows is the peers' TLS: the server sees
// only ciphertext and holds no key that could forge either end.
const (
	relayMagic  = "WRR\x02" // \x01 was the header without a token
	relayPaired = 0x01
)

// issuedSession is a punch session the server started, for which its two
// peers (by side) may open one relay.
type issuedSession struct {
	at   time.Time
	keys [2]identity.PublicKey
}

// relayHub pairs relay connections and holds the relays under way.
type relayHub struct {
	// mu guards the fields below.
	mu      sync.Mutex
	waiting map[punch.SessionID]*relayHalf
	pairs   map[*relayPair]struct{}

	// spent are the sessions relayed on authorisations (relayauth.go);
	// join fills it as it pairs, under mu, so that no two connections
	// pair for a session that paired before.
	spent spentSessions
}

func newRelayHub() relayHub {
	return relayHub{waiting: make(map[punch.SessionID]*relayHalf), pairs: make(map[*relayPair]struct{}),
		spent: spentSessions{until: make(map[punch.SessionID]time.Time)}}
}

// relayHalf is one side's relay connection. The first of a session's two
// to arrive waits for the other; its done closes when the connection is
// no one else's any more: its pair has finished, or its partner was
// refused.
type relayHalf struct {
	conn  net.Conn
	early []byte // what the header's reader took from conn past the header
	side  byte
	src   netip.Addr
	meter *keyMeter // its key's, which its bytes are billed to
	done  chan struct{}
	// auth is the authorisation it came with (relayAuthMagic), nil for
	// a token: its session pairs once, until the authorisation expires.
	auth *relayAuth
}

// relayPair is a relay under way: a waited, b arrived.
type relayPair struct {
	a, b *relayHalf
	at   time.Time
}

// relayClaim is what a relay connection's header claims: a side of a
// session, with the side's token or, at a node the session was not
// issued by, its authorisation.
type relayClaim struct {
	id   punch.SessionID
	side byte
	tok  RelayToken
	auth *relayAuth // nil: tok
}

// serveRelay handles one relay connection whose header was read.
// Whatever ends it, it gives back all it took: its meter's hold, its place
// among the waiting or the pairs, and (by returning) its connection.
func (s *Server) serveRelay(ctx context.Context, raw net.Conn, br *bufio.Reader, cl relayClaim) {
	id, side := cl.id, cl.side
	src := sourceOfAddr(raw.RemoteAddr())
	log := s.cfg.Log.WithFields(logrus.Fields{"remote": raw.RemoteAddr().String(), "session": id.String()[:8]})
	// Refusals are logged one by one at debug level only, and summed up
	// per source: anyone can send a relay header.
	refuse := func(reason string) {
		log.WithField("reason", reason).Debug("relay refused")
		s.refusals.note(src, reason)
	}
	key, reason := s.claimKey(cl, time.Now())
	if reason != "" {
		refuse(reason)
		return
	}
	km, reason := s.meter.acquire(key, time.Now())
	if reason != "" {
		refuse(reason)
		return
	}
	defer s.meter.release(km)
	early, _ := br.Peek(br.Buffered())
	me := &relayHalf{conn: raw, early: bytes.Clone(early), side: side, src: src, meter: km, done: make(chan struct{}), auth: cl.auth}
	p, evicted, reason := s.relays.join(id, me, s.cfg.MaxRelays, s.cfg.MaxSessions)
	if evicted != nil {
		s.refusals.note(evicted.a.src, evictedRelay)
		evicted.close()
	}
	switch {
	case reason != "":
		refuse(reason)
		return
	case p == nil:
		s.relays.wait(ctx, id, me, s.cfg.RelayWait)
		return
	}
	defer s.relays.end(p)
	s.forgetIssued(id)
	if s.logs.Allow(src.String(), logRelay) {
		log.Info("relaying")
	}
	na, nb := s.pipe(ctx, p)
	if s.logs.Allow(src.String(), logRelay) {
		log.WithFields(logrus.Fields{"bytes_a": na, "bytes_b": nb}).Info("relay closed")
	}
}

// claimKey returns the key whose side of a session a relay connection
// claims, or the reason to refuse it (see relayKey and relayAuth.verify).
// An authorisation's session must not have relayed yet at this node.
func (s *Server) claimKey(cl relayClaim, now time.Time) (identity.PublicKey, string) {
	if cl.auth == nil {
		return s.relayKey(cl.id, cl.side, cl.tok, now)
	}
	if !s.cfg.Relay {
		return identity.PublicKey{}, refusedRelayOff
	}
	if s.cluster == nil {
		// A single node issues every session it relays.
		return identity.PublicKey{}, refusedRelayToken
	}
	key, reason := cl.auth.verify(s.PublicKey(), s.cluster.cfg.Node, now)
	if reason == "" && s.relays.spent.spent(cl.id) {
		return identity.PublicKey{}, refusedRelaySession
	}
	return key, reason
}

// relayKey returns the key whose side of session id a relay connection
// with token tok serves, or the reason to refuse it. The session must be
// one the server issued (after its target's consent), within RelayWindow
// and not yet relayed; and tok must be the one the server gave that side's
// key in its punch instruction. The session ID proves nothing (it has
// crossed the wire in clear in UDP probes); the token, which only that
// key's TLS connection carried, binds the relay to the key, from wherever
// it comes: a stranger cannot take a peer's side, nor spend its budget.
func (s *Server) relayKey(id punch.SessionID, side byte, tok RelayToken, now time.Time) (identity.PublicKey, string) {
	if !s.cfg.Relay {
		return identity.PublicKey{}, refusedRelayOff
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	issued, ok := s.issued[id]
	if !ok || now.Sub(issued.at) > s.cfg.RelayWindow {
		return identity.PublicKey{}, refusedRelaySession
	}
	key := issued.keys[side]
	if !s.relaySecret.valid(tok, id, int(side), key) {
		return identity.PublicKey{}, refusedRelayToken
	}
	return key, ""
}

// forgetIssued ends session id's right to a relay: it serves one pair.
func (s *Server) forgetIssued(id punch.SessionID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.issued, id)
}

// join pairs me with the other side of session id if it waits, or makes
// me wait for it (pair nil, no reason). At the relay cap, a pair whose
// sources hold fewer relays than the heaviest source takes the oldest
// relay of that source, which the caller must close (evicted); otherwise
// it is refused, and the waiting side is let go. Sides that came with
// authorisations pair only if both name the same keys and the session has
// not paired before (it is then spent, remembering at most maxSpent).
func (h *relayHub) join(id punch.SessionID, me *relayHalf, maxRelays, maxSpent int) (pair, evicted *relayPair, reason string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	other := h.waiting[id]
	switch {
	case other == nil:
		h.waiting[id] = me
		return nil, nil, ""
	case other.side == me.side || (other.auth == nil) != (me.auth == nil):
		return nil, nil, refusedRelaySession
	}
	delete(h.waiting, id)
	if me.auth != nil && (other.auth.keys != me.auth.keys || !h.spent.spend(id, me.auth.expiry, maxSpent)) {
		close(other.done)
		return nil, nil, refusedRelaySession
	}
	if over(len(h.pairs), maxRelays) {
		if evicted = h.evictLocked(me.src, other.src); evicted == nil {
			// The waiting half is no one's now: its goroutine ends, which
			// closes its connection and gives back its slots.
			close(other.done)
			return nil, nil, refusedRelays
		}
	}
	pair = &relayPair{a: other, b: me, at: time.Now()}
	h.pairs[pair] = struct{}{}
	return pair, evicted, ""
}

// evictLocked takes the oldest relay of the source that holds the most,
// if it holds at least two more than the busier of a and b: so that a
// few sources cannot keep the relays for good, while a source never
// loses a relay to one that would end up holding more.
func (h *relayHub) evictLocked(a, b netip.Addr) *relayPair {
	held := make(map[netip.Addr]int)
	for p := range h.pairs {
		held[p.a.src]++
		if p.b.src != p.a.src {
			held[p.b.src]++
		}
	}
	var heavy netip.Addr
	for src, n := range held {
		if n > held[heavy] {
			heavy = src
		}
	}
	if held[heavy] < max(held[a], held[b])+2 {
		return nil
	}
	var victim *relayPair
	for p := range h.pairs {
		if (p.a.src == heavy || p.b.src == heavy) && (victim == nil || p.at.Before(victim.at)) {
			victim = p
		}
	}
	delete(h.pairs, victim)
	return victim
}

// close ends a pair from outside: its pipe sees its connections fail.
func (p *relayPair) close() {
	p.a.conn.Close()
	p.b.conn.Close()
}

// end removes a finished pair (if eviction has not) and lets its waiting
// side go.
func (h *relayHub) end(p *relayPair) {
	h.mu.Lock()
	delete(h.pairs, p)
	h.mu.Unlock()
	close(p.a.done)
}

// wait holds me, which waits in h under id, until the other side takes it
// and is done with it, or until d or ctx ends with no other side.
func (h *relayHub) wait(ctx context.Context, id punch.SessionID, me *relayHalf, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-me.done:
		return
	case <-t.C:
	case <-ctx.Done():
	}
	h.mu.Lock()
	waiting := h.waiting[id] == me
	if waiting {
		delete(h.waiting, id)
	}
	h.mu.Unlock()
	if !waiting {
		// The other side took us just now: it closes done when it is
		// done with our connection.
		<-me.done
	}
}

// pipe tells both sides they are paired and copies between them until
// either side closes or stays silent for RelayIdle. It returns the bytes
// each side sent.
func (s *Server) pipe(ctx context.Context, p *relayPair) (int64, int64) {
	a, b := p.a, p.b
	stop := context.AfterFunc(ctx, p.close)
	defer stop()
	for _, c := range []net.Conn{a.conn, b.conn} {
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte{relayPaired}); err != nil {
			p.close()
			return 0, 0
		}
		c.SetWriteDeadline(time.Time{})
	}
	var wg sync.WaitGroup
	var na, nb int64
	wg.Go(func() { na = s.copyIdle(ctx, b.conn, a) })
	wg.Go(func() { nb = s.copyIdle(ctx, a.conn, b) })
	wg.Wait()
	p.close()
	return na, nb
}

// copyIdle copies what src's peer sends to dst, billed to src's key (its
// rate and budget), half-closing dst at the end. It gives up after
// RelayIdle without data either way, and ends the relay once the key's budget is
// spent. It holds no buffer while src is idle (bufcopy): a relayed link
// spends most of its life waiting.
func (s *Server) copyIdle(ctx context.Context, dst net.Conn, src *relayHalf) int64 {
	w := &relayWriter{ctx: ctx, meter: s.meter, src: src, dst: dst, idle: s.cfg.RelayIdle, total: &s.relayed}
	src.conn.SetReadDeadline(time.Now().Add(s.cfg.RelayIdle))
	var n int64
	var err error
	if len(src.early) > 0 {
		var m int
		m, err = w.Write(src.early)
		n += int64(m)
	}
	if err == nil {
		var m int64
		m, err = s.copier.Copy(w, src.conn)
		n += m
	}
	cw, canHalfClose := dst.(interface{ CloseWrite() error })
	switch {
	case errors.Is(err, errRelayBudget):
		src.conn.Close()
		dst.Close()
	case w.failed:
		src.conn.Close()
	case err == nil && canHalfClose:
		cw.CloseWrite()
	default:
		dst.Close()
	}
	return n
}

// errRelayBudget ends a relay whose sending key has spent its day's budget.
var errRelayBudget = errors.New("relay budget spent")

// relayWriter writes what one side of a relay sent to the other side,
// billed to the sender's key. Each write moves both connections' idle
// deadlines, which so fall RelayIdle after the last byte either way.
type relayWriter struct {
	ctx    context.Context
	meter  *relayMeter
	src    *relayHalf
	dst    net.Conn
	idle   time.Duration
	failed bool          // a write to dst failed
	total  *atomic.Int64 // the server's relayed bytes
}

func (w *relayWriter) Write(b []byte) (int, error) {
	if !w.meter.spend(w.ctx, w.src.meter, len(b)) {
		return 0, errRelayBudget
	}
	// Both reads' deadlines move: a relay is idle when neither side
	// sends, and a one-way transfer keeps it up.
	by := time.Now().Add(w.idle)
	w.src.conn.SetReadDeadline(by)
	w.dst.SetReadDeadline(by)
	w.dst.SetWriteDeadline(by)
	n, err := w.dst.Write(b)
	w.failed = err != nil
	w.total.Add(int64(n))
	return n, err
}

// DialRelay asks the server, over conn (a fresh TCP connection to its
// control port), to relay session's traffic to the other side, and waits
// until that side has arrived too. On success conn carries the peer's
// bytes; on failure it is closed.
func DialRelay(ctx context.Context, conn net.Conn, session punch.SessionID, side int, token RelayToken) (net.Conn, error) {
	return dialRelay(ctx, conn, relayHeader(session, side, token))
}

// dialRelay sends a relay header hdr on conn and waits to be paired.
func dialRelay(ctx context.Context, conn net.Conn, hdr []byte) (net.Conn, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(hdr); err != nil {
		conn.Close()
		return nil, fmt.Errorf("relay: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(conn, b[:]); err != nil || b[0] != relayPaired {
		conn.Close()
		if err == nil {
			err = fmt.Errorf("unexpected byte %#x", b[0])
		}
		return nil, fmt.Errorf("relay not paired: %w", err)
	}
	if !stop() {
		conn.Close()
		return nil, ctx.Err()
	}
	return conn, nil
}

// header returns the 21-byte header of a probe or relay connection.
func header(magic string, id punch.SessionID, side int) []byte {
	return append(append([]byte(magic), id[:]...), byte(side))
}

// readHeader reads the 21-byte header of a probe or relay connection.
func readHeader(br *bufio.Reader) (magic string, id punch.SessionID, side byte, ok bool) {
	var req [tcpProbeLen]byte
	if _, err := io.ReadFull(br, req[:]); err != nil || req[20] > 1 {
		return "", id, 0, false
	}
	copy(id[:], req[4:20])
	return string(req[:4]), id, req[20], true
}
