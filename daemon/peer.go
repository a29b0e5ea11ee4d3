package daemon

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/forward"
	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/backoff"
	"github.com/warren-p2p/warren/internal/pathmemory"
	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
	"github.com/warren-p2p/warren/session"
)

// Peer link states, as the status API reports them.
const (
	StateConnecting = "connecting"
	StateConnected  = "connected"
	StateFailed     = "failed"
	// StateOffline: the server answered "offline" to our last connect
	// request (the peer is not registered, or does not list us), and no
	// punch has come since. Local connections to it fail at once.
	StateOffline = "offline"
)

// offlineText is a peer's error while it is offline.
const offlineText = "offline (not registered with the server)"

// punchFreshness drops punch instructions that waited longer than this:
// the peer has given up on them.
const punchFreshness = 5 * time.Second

type offer struct {
	rendezvous.Punch
	at time.Time
}

// peer is one configured peer. Its run goroutine owns the link lifecycle;
// other goroutines read state through the mutex.
type peer struct {
	name  string
	key   identity.PublicKey
	keyAt string // where the config sets key: "file:line"
	log   logrus.FieldLogger

	// offers holds at most the newest punch instruction.
	offers chan offer
	// answers is signalled by each "offline" answer to a connect request
	// (capacity 1).
	answers chan struct{}

	// stop ends run, which closes done; set by Daemon.startPeer.
	stop context.CancelFunc
	done chan struct{}

	// mu guards the fields below.
	mu      sync.Mutex
	state   string
	link    *link.Link
	source  netip.Addr // the local address link leaves from
	lastErr string
	setup   time.Duration // request to link up, for the last link
	punched punchInfo     // the session that made the last link
	up      chan struct{} // closed while a link is up
	// offline is closed while the peer is offline, since offlineSince.
	offline      chan struct{}
	offlineSince time.Time
	// punching is true while run's punch session is under way: an
	// "offline" answer then answers an ask from before the peer came.
	punching bool
	// counters are for GET /metrics (metrics.go).
	counters linkCounters
}

func newPeer(name string, key identity.PublicKey, log logrus.FieldLogger) *peer {
	return &peer{name: name, key: key, log: log, offers: make(chan offer, 1), answers: make(chan struct{}, 1), state: StateConnecting,
		up: make(chan struct{}), offline: make(chan struct{})}
}

// setOffline records the server's "offline" answer, unless a link is up
// or being punched (the answer is stale: it comes ConsentWait after an ask
// the peer registered too late for, and would fail every connection
// through the forwards until the link is up); it logs the change, once.
func (p *peer) setOffline() {
	putNewest(p.answers, struct{}{})
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.link != nil || p.punching || p.state == StateOffline {
		return
	}
	p.state, p.lastErr, p.offlineSince = StateOffline, offlineText, time.Now()
	close(p.offline)
	// With consent, a peer whose key here is wrong, or that does not list
	// this daemon, is "offline" too: say where to look.
	p.log.WithField("what_to_check", fmt.Sprintf("if %s is running: that its public_key at %s is the key it runs with "+
		"(warren pubkey -k on its key file), and that its config lists this daemon's key", p.name, p.keyAt)).Info("peer is " + offlineText)
}

func (p *peer) setPunching(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.punching = on
}

// leaveOfflineLocked ends the offline state: a punch came.
func (p *peer) leaveOfflineLocked() {
	if p.state == StateOffline {
		p.state, p.lastErr = StateConnecting, ""
		p.offline = make(chan struct{})
	}
}

// offer queues a punch instruction, replacing an older one.
func (p *peer) offer(pu rendezvous.Punch) {
	p.mu.Lock()
	p.leaveOfflineLocked()
	p.mu.Unlock()
	putNewest(p.offers, offer{Punch: pu, at: time.Now()})
}

// putNewest puts v on ch, a channel of capacity 1, dropping what waits
// there: its reader only ever wants the latest value.
func putNewest[T any](ch chan T, v T) {
	for {
		select {
		case ch <- v:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// run keeps a link to the peer up until ctx ends.
func (p *peer) run(ctx context.Context, d *Daemon) {
	retry := backoff.Backoff{Min: time.Second, Max: 30 * time.Second}
	for ctx.Err() == nil {
		start := time.Now()
		o, asked, ok := p.awaitPunch(ctx, d.rv, d.nat.await)
		if !ok {
			return
		}
		// The punch began with the connect request the server answered,
		// or with the instruction itself when the peer asked first (an
		// answer to our last request would have come within a round
		// trip); before that the peer was away, which is no part of the
		// setup time.
		began := o.at
		if !asked.IsZero() && asked.Before(began) && began.Sub(asked) < answerWithin {
			began = asked
		}
		// Taken before the session: a report that changes while it runs
		// (a port mapping that came meanwhile) is one its peer did not
		// see, and serveLink then tries again at once.
		natChanged := d.nat.changes()
		p.setPunching(true)
		l, err := d.establish(ctx, p, o.Punch, true)
		p.setPunching(false)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			p.setFailed(err)
			p.log.WithError(err).Warn("link attempt failed")
			select {
			case <-time.After(retry.Next()):
			case <-ctx.Done():
				return
			}
			continue
		}
		retry.Reset()
		p.setLink(l, time.Since(began))
		up := logrus.Fields{"path": l.Path(), "remote": l.Remote(), "setup": time.Since(began).Round(time.Millisecond)}
		if waited := began.Sub(start); waited >= time.Second {
			up["waited_for_peer"] = waited.Round(time.Millisecond)
		}
		p.log.WithFields(up).Info("link up")
		reason := d.serveLink(ctx, p, l, natChanged)
		p.setLink(nil, 0)
		p.linkDown(reason)
		p.log.WithField("reason", downText(reason)).Info("link down")
	}
}

// punchInfo is what status says of the punch session behind a link.
type punchInfo struct {
	peerNAT, strategy, why string
	// choice is what the session's UDP path measured and chose, and
	// choiceWhy the sentence that says so.
	choice    session.Choice
	choiceWhy string
	// remembered is what the path memory held for the session's networks
	// when it started (nil: nothing).
	remembered *pathmemory.Entry
}

// describePunch is the punchInfo of a session whose race rep reports: for
// a relayed link, what each direct path did instead; for any link, what
// the UDP path measured and chose.
func describePunch(s *session.Session, rep session.Report) punchInfo {
	info := punchInfo{peerNAT: natLabel(s.PeerNAT), strategy: s.Strategy.Name, choice: s.Choice()}
	info.choiceWhy = info.choice.Reason(rep.Winner)
	if rep.Winner != session.PathRelay {
		return info
	}
	var why []string
	if s.RelayFirst {
		why = append(why, "the relay went first: the last session between these networks ended on it")
	}
	// A restricted network explains the relay before any path's outcome.
	if s.SelfRestricted != "" {
		why = append(why, rendezvous.RestrictionText(s.SelfRestricted))
	}
	if s.PeerRestricted != "" {
		why = append(why, rendezvous.PeerRestrictionText(s.PeerRestricted))
	}
	if s.Strategy.TCP == punch.TCPNone && s.Strategy.UDP == punch.RoleNone {
		// Expected, not failed: say so before what the paths did.
		why = append(why, natLabel(s.SelfNAT)+"↔"+natLabel(s.PeerNAT)+": no direct path exists between these NATs")
	}
	for _, o := range rep.Outcomes {
		if o.Path != session.PathRelay {
			why = append(why, o.Path+": "+o.Lost(rep.Winner))
		}
	}
	if len(why) == 0 {
		why = append(why, "no direct path allowed here (transports)")
	}
	info.why = strings.Join(why, "; ")
	return info
}

// establish runs one punch session and builds a link over its result.
// With allowRelay, a relay through the rendezvous server joins the race.
// It counts the session's attempt and, unless ctx ended first, its result.
func (d *Daemon) establish(ctx context.Context, p *peer, pu rendezvous.Punch, allowRelay bool) (l *link.Link, err error) {
	began := time.Now()
	d.nat.await(ctx)
	nat, _ := d.selfNAT()
	// Over loopback, the server (and so every peer) is on this host;
	// not so over a proxy on loopback (a local proxy agent).
	sameHost := d.rv.LocalAddr().Addr().IsLoopback() && d.rvDial.LastRoute().Proxy == ""
	self := session.Local{NAT: nat, SameHost: sameHost, Restricted: d.nat.restriction()}
	// A path that does not run here must not count on the peer's
	// mapping for it, or the relay would wait for nothing.
	if !d.useTCP {
		pu.PeerNAT.MappedTCP = netip.AddrPort{}
	}
	if !d.useUDP {
		pu.PeerNAT.MappedUDP = netip.AddrPort{}
	}
	s, err := session.New(d.sessions, self, pu, p.log)
	if err != nil {
		pu.UDP.Close()
		return nil, err
	}
	defer s.Close()
	key := punchKey{selfNAT: natLabel(s.SelfNAT), peerNAT: natLabel(s.PeerNAT), strategy: s.Strategy.Name}
	d.metrics.punchStarted(key)
	defer func() {
		if err == nil || ctx.Err() == nil {
			d.metrics.punchEnded(key, l, time.Since(began))
		}
	}()
	paths := d.direct
	if allowRelay {
		paths = d.paths
	}
	remembered, ok := d.memory.recall(s)
	if ok && remembered.Path == session.PathRelay && allowRelay {
		// The last session between these networks ended on the relay:
		// it goes first, and a direct path the race still finds comes
		// as an upgrade.
		s.RelayFirst = true
	}
	l, rep, err := session.Race(ctx, s, paths)
	if err == nil {
		d.memory.record(s, l, time.Since(began))
		info := describePunch(s, rep)
		if ok {
			info.remembered = &remembered
		}
		p.mu.Lock()
		p.punched = info
		p.mu.Unlock()
	}
	for _, o := range rep.Outcomes {
		if o.Path != rep.Winner || o.Offered == 0 {
			p.log.WithFields(logrus.Fields{"session": s.ID.String()[:8], "path": o.Path, "why": o.Lost(rep.Winner)}).Debug("path lost the race")
		}
	}
	return l, err
}

// replaceLink swaps the link new streams use, for an upgrade.
func (p *peer) replaceLink(l *link.Link) {
	src := linkSource(l)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.link, p.source = l, src
	p.counters.addLink(l)
}

// setLink sets the peer's link, or with nil ends the current one, which
// must be closed by then.
func (p *peer) setLink(l *link.Link, setup time.Duration) {
	var src netip.Addr
	if l != nil {
		src = linkSource(l)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if l == nil && p.link != nil {
		p.counters.retireLink(p.link)
		p.counters.addrGone = nil
	}
	p.link, p.source = l, src
	if l != nil {
		p.counters.addLink(l)
		p.leaveOfflineLocked()
		p.state, p.lastErr, p.setup = StateConnected, "", setup
		close(p.up)
	} else {
		p.state = StateConnecting
		p.up = make(chan struct{})
	}
}

// dropLinkFrom closes the peer's link if it leaves from one of the
// addresses in gone; the peer's run loop then punches a new one.
func (p *peer) dropLinkFrom(gone []netip.Addr) {
	p.mu.Lock()
	l, src := p.link, p.source
	drop := l != nil && slices.Contains(gone, src)
	if drop {
		p.counters.addrGone = l // serveLink counts the reason
	}
	p.mu.Unlock()
	if drop {
		p.log.WithField("local", src).Info("the link's local address is gone; punching a new link")
		l.Close()
	}
}

func (p *peer) setFailed(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state, p.lastErr = StateFailed, err.Error()
}

// waitLink returns the peer's link, waiting up to max for one. While the
// peer is offline, or once it goes offline, it fails at once with an
// error that wraps forward.ErrPeerOffline.
func (p *peer) waitLink(ctx context.Context, max time.Duration) (*link.Link, error) {
	t := time.NewTimer(max)
	defer t.Stop()
	for {
		p.mu.Lock()
		l, up, offline := p.link, p.up, p.offline
		p.mu.Unlock()
		if l != nil {
			return l, nil
		}
		select {
		case <-offline:
			return nil, forward.ErrPeerOffline
		case <-up:
		case <-t.C:
			return nil, ErrNoLink
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
