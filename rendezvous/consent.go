package rendezvous

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/warren-p2p/warren/identity"
)

// The server tells a peer about another only with that other's consent:
// a connect request naming key K reaches K's daemon as an ask ("key A
// asks"), and only K's consent starts a punch session, which gives each
// side the other's addresses. Every "no" (K is offline, is the asker, did
// not consent, or did not answer) is answered as "offline" when
// ConsentWait has passed since the request: the same answer at the same
// time, so that an asker learns nothing of a peer that does not list it,
// not even that it is online. A "yes" starts the session at once.

// consentHub holds the connect requests waiting for their target's
// consent.
type consentHub struct {
	// mu guards the fields below.
	mu      sync.Mutex
	next    uint64
	pending map[uint64]*pendingAsk
}

// pendingAsk is one connect request waiting for its target's consent.
type pendingAsk struct {
	target identity.PublicKey // only this key may consent
	yes    chan struct{}      // closed at its consent
	once   sync.Once
}

// open records an ask to target and returns its number.
func (h *consentHub) open(target identity.PublicKey) (uint64, *pendingAsk) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next++
	a := &pendingAsk{target: target, yes: make(chan struct{})}
	h.pending[h.next] = a
	return h.next, a
}

func (h *consentHub) close(id uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.pending, id)
}

// answer records from's consent to ask id. A consent to an ask that is
// over, or that was not addressed to from's key, is ignored: asks are
// numbered in sequence, so a number proves nothing by itself.
func (h *consentHub) answer(from *peerConn, id uint64) {
	h.mu.Lock()
	a := h.pending[id]
	h.mu.Unlock()
	if a != nil && a.target == from.key {
		a.once.Do(func() { close(a.yes) })
	}
}

// maxStarting caps the connect requests one peer may have waiting for
// consent or NAT reports, or being sent, at once.
const maxStarting = 16

// coordinate asks the peer p names for its consent and, given it, starts
// a punch session between the two. A request over p's rate, or while p has
// maxStarting requests under way, is answered with a rate_limited error
// and nothing else. The request is served off p's read loop, and is
// dropped if ctx (p's connection) ends first.
func (s *Server) coordinate(ctx context.Context, p *peerConn, peer string) error {
	key, err := identity.ParsePublicKey(peer)
	if err != nil {
		return fmt.Errorf("%w: connect: %v", ErrProtocol, err)
	}
	now := time.Now()
	if (p.connects != nil && !p.connects.AllowN(now, 1)) || p.starting.Load() >= maxStarting || !p.adm.allowConnect(now) {
		s.refusals.note(p.adm.src, refusedConnectRate)
		return p.send(&Message{Type: TypeError, Code: CodeRateLimited, Peer: peer, Text: "too many connect requests"})
	}
	if s.pairTaken(p, key, false) {
		// The other side asked a moment ago; its session serves both.
		return nil
	}
	p.starting.Add(1)
	p.startingWG.Go(func() {
		defer p.starting.Add(-1)
		s.ask(ctx, p, key)
	})
	return nil
}

// ask serves p's connect request for key: a session if key consents within
// ConsentWait, else "offline" when ConsentWait has passed.
func (s *Server) ask(ctx context.Context, p *peerConn, key identity.PublicKey) {
	actx, cancel := context.WithTimeout(ctx, s.cfg.ConsentWait)
	defer cancel()
	if other := s.consent(actx, p, key); other != nil {
		if !s.pairTaken(p, key, true) {
			s.startSession(ctx, p, other, key)
		}
		return
	}
	if s.cluster.ask(actx, ctx, p, key) {
		return
	}
	<-actx.Done()
	if ctx.Err() == nil {
		p.send(&Message{Type: TypeError, Code: CodePeerOffline, Peer: key.String(), Text: "peer is not registered"})
	}
}

// consent asks key's peer whether p may have a session with it, and
// returns that peer if it consents before actx ends; nil otherwise.
func (s *Server) consent(actx context.Context, p *peerConn, key identity.PublicKey) *peerConn {
	s.mu.Lock()
	other := s.peers[key]
	s.mu.Unlock()
	if other == nil || key == p.key {
		return nil
	}
	id, a := s.consents.open(key)
	defer s.consents.close(id)
	if err := other.send(&Message{Type: TypeAsk, Peer: p.key.String(), Seq: id}); err != nil {
		other.conn.Close()
		return nil
	}
	select {
	case <-a.yes:
		return other
	case <-actx.Done():
		return nil
	}
}

// pairTaken reports whether the other side of asker and key's pair started
// a session within PairWindow (both asked at once: that session serves
// both). With claim, a pair that is not taken is recorded as asker's.
// Only the other side's ask makes one a duplicate: a peer asking again
// has lost the session it started (its address changed, say) and needs a
// new one now. Nor is an ask one whose asker reported another NAT since
// that session's instructions went out (a port mapping came): the peer
// punched with what the asker no longer is.
func (s *Server) pairTaken(asker *peerConn, key identity.PublicKey, claim bool) bool {
	pair := pairOf(asker.key, key)
	now, _ := asker.natAndRTT()
	s.mu.Lock()
	defer s.mu.Unlock()
	last := s.pairs[pair]
	if time.Since(last.at) < s.cfg.PairWindow && last.asker != asker.key &&
		(!last.sent || sameReport(last.nats[slices.Index(pair[:], asker.key)], now)) {
		return true
	}
	if claim {
		s.pairs[pair] = pairSession{at: time.Now(), asker: asker.key}
	}
	return false
}

// sameReport reports whether a and b report the same NAT (nil: none).
func sameReport(a, b *NATReport) bool {
	return a == b || (a != nil && b != nil && *a == *b)
}
