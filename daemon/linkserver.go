package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/internal/backoff"
	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/session"
)

// serveLink serves the peer's streams until the link dies, the peer asks
// for a new punch session (it lost the link), or ctx ends, and returns
// which (a down reason, metrics.go). A relayed link keeps trying to
// upgrade: punch sessions in the background, and once a direct link is
// up, new streams use it while the relay drains (it closes when its last
// stream ends).
//
// natChanged is closed when this end's NAT report changes (natState.bump),
// which on a relayed link starts an upgrade at once.
func (d *Daemon) serveLink(ctx context.Context, p *peer, l *link.Link, natChanged <-chan struct{}) string {
	s := &linkServer{d: d, p: p, ctx: ctx, current: l, results: make(chan upgrade, 1),
		retry: backoff.Backoff{Min: 3 * time.Second, Max: time.Minute}}
	defer s.stop()
	s.serve(l)
	if l.Path() == session.PathRelay {
		s.upgradeTimer = time.After(s.retry.Next())
	}
	for {
		select {
		case <-s.current.Done():
			return s.ended()
		case <-natChanged:
			// This end now reports another NAT (a port mapping came, or
			// the network changed): a direct path may exist now.
			natChanged = d.nat.changes()
			if s.current.Path() == session.PathRelay && !s.upgrading {
				p.log.Debug("NAT report changed: trying a direct path now")
				s.retry.Reset()
				s.upgradeTimer = time.After(s.retry.Next()) // should this try come to nothing
				d.rv.Connect(p.key)
			}
		case <-s.upgradeTimer:
			s.upgradeTimer = nil
			if !s.upgrading {
				d.rv.Connect(p.key) // the punch comes back as an offer
			}
		case o := <-p.offers:
			if reason, done := s.offered(o); done {
				return reason
			}
		case r := <-s.results:
			s.upgraded(r)
		case <-ctx.Done():
			return downShutdown
		}
	}
}

// upgrade is the outcome of a punch session run to upgrade from a relay.
type upgrade struct {
	l   *link.Link
	err error
}

// linkServer is serveLink's state. Only serveLink's goroutine uses it.
type linkServer struct {
	d   *Daemon
	p   *peer
	ctx context.Context
	wg  sync.WaitGroup // the links' accept loops and the upgrade

	current      *link.Link // the link new streams use
	upgrading    bool       // an upgrade's result is still to come on results
	results      chan upgrade
	retry        backoff.Backoff
	upgradeTimer <-chan time.Time // the next upgrade attempt, while relayed
}

// serve hands l's inbound streams to the exit.
func (s *linkServer) serve(l *link.Link) {
	s.wg.Go(func() {
		for {
			st, err := l.Accept()
			if err != nil {
				return
			}
			s.d.wg.Go(func() { s.d.exit.ServeStream(s.ctx, st, s.p.name) })
		}
	})
}

// stop closes the current link and waits for everything serveLink
// started. An upgrade still under way ends with ctx or its punch timeout;
// a link it made after all is not used.
func (s *linkServer) stop() {
	if s.upgrading {
		if r := <-s.results; r.l != nil {
			r.l.Close()
		}
	}
	s.current.Close()
	s.wg.Wait()
}

// ended is the down reason of a link that closed.
func (s *linkServer) ended() string {
	if s.p.endedByAddressChange(s.current) {
		return downAddressGone
	}
	return downClosed
}

// offered handles a punch instruction that arrives while a link is up: on
// a direct link the peer wants a new session, so its end of this link is
// gone (done); on a relay it is the upgrade's punch.
func (s *linkServer) offered(o offer) (reason string, done bool) {
	if s.current.Path() != session.PathRelay {
		// If this end had closed the link already, that is the reason
		// (select picks at random among ready cases).
		s.p.offer(o.Punch)
		select {
		case <-s.current.Done():
			return s.ended(), true
		default:
			return downNewSession, true
		}
	}
	if !s.upgrading {
		s.upgrading = true
		s.wg.Go(func() {
			nl, err := s.d.establish(s.ctx, s.p, o.Punch, false)
			s.results <- upgrade{nl, err}
		})
	}
	return "", false
}

// upgraded moves new streams to the direct link an upgrade made, and lets
// the relay drain; or, if it made none, plans the next attempt.
func (s *linkServer) upgraded(r upgrade) {
	s.upgrading = false
	if r.err != nil {
		s.p.log.WithError(r.err).Debug("no direct path yet; staying on the relay")
		s.upgradeTimer = time.After(s.retry.Next())
		return
	}
	old := s.current
	s.current = r.l
	s.p.replaceLink(s.current)
	s.p.linkUpgraded()
	s.serve(s.current)
	s.p.log.WithFields(logrus.Fields{"path": s.current.Path(), "remote": s.current.Remote()}).Info("link upgraded from relay; the relay drains")
	s.d.wg.Go(func() {
		drain(s.ctx, old)
		s.p.retireLink(old)
	})
}

// drain closes l once no stream is open on it (or ctx ends).
func drain(ctx context.Context, l *link.Link) {
	defer l.Close()
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for l.Stats().Streams > 0 {
		select {
		case <-t.C:
		case <-l.Done():
			return
		case <-ctx.Done():
			return
		}
	}
}
