package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/backoff"
	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// Peer link states, as the status API reports them.
const (
	StateConnecting = "connecting"
	StateConnected  = "connected"
	StateFailed     = "failed"
)

// Path names reported when no link is up.
const pathTCP = "direct-tcp"

// inboundGrace is how long a punch session still waits for the peer's
// connections to arrive at our listener after our own attempts are done.
const inboundGrace = time.Second

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
	name string
	key  identity.PublicKey
	log  logrus.FieldLogger

	// offers holds at most the newest punch instruction.
	offers chan offer

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
	up      chan struct{} // closed while a link is up
	// counters are for GET /metrics (metrics.go).
	counters linkCounters
}

func newPeer(name string, key identity.PublicKey, log logrus.FieldLogger) *peer {
	return &peer{name: name, key: key, log: log, offers: make(chan offer, 1), state: StateConnecting, up: make(chan struct{})}
}

// offer queues a punch instruction, replacing an older one.
func (p *peer) offer(pu rendezvous.Punch) {
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
		o, ok := p.awaitPunch(ctx, d)
		if !ok {
			return
		}
		l, err := d.establish(ctx, p, o.Punch, true)
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
		p.setLink(l, time.Since(start))
		p.log.WithFields(logrus.Fields{"path": l.Path(), "remote": l.Remote(), "setup": time.Since(start).Round(time.Millisecond)}).Info("link up")
		reason := d.serveLink(ctx, p, l)
		p.setLink(nil, 0)
		p.linkDown(reason)
		p.log.WithField("reason", downText(reason)).Info("link down")
	}
}

// awaitPunch asks the rendezvous server for a punch session with the peer
// and waits for the instruction; the peer asking first serves as well.
func (p *peer) awaitPunch(ctx context.Context, d *Daemon) (offer, bool) {
	ask := backoff.Backoff{Min: 2 * time.Second, Max: 30 * time.Second}
	for {
		select {
		case o := <-p.offers:
			age := time.Since(o.at)
			if age < punchFreshness {
				return o, true
			}
			p.log.WithFields(logrus.Fields{"session": o.Session[:min(8, len(o.Session))], "age": age.Round(time.Millisecond)}).Debug("punch instruction too old; the peer gave up on it")
			continue
		case <-d.rv.Registered():
		case <-ctx.Done():
			return offer{}, false
		}
		// The server passes our NAT to the peer with the punch: report it
		// first.
		d.awaitNAT(ctx)
		if err := d.rv.Connect(p.key); err != nil {
			p.log.WithError(err).Debug("connect request not sent")
		}
		select {
		case o := <-p.offers:
			return o, true
		case <-time.After(ask.Next()):
		case <-ctx.Done():
			return offer{}, false
		}
	}
}

// establish runs one punch session and builds a link over its result.
// With allowRelay, a relay through the rendezvous server joins the race.
// It counts the session's attempt and, unless ctx ended first, its result.
func (d *Daemon) establish(ctx context.Context, p *peer, pu rendezvous.Punch, allowRelay bool) (l *link.Link, err error) {
	began := time.Now()
	id, err := punch.ParseSessionID(pu.Session)
	if err != nil {
		return nil, err
	}
	d.awaitNAT(ctx)
	self := d.selfNAT()
	strategy := punch.Choose(self, pu.PeerNAT)
	key := punchKey{selfNAT: natLabel(self), peerNAT: natLabel(pu.PeerNAT), strategy: strategy.Name}
	d.metrics.punchStarted(key)
	defer func() {
		if err == nil || ctx.Err() == nil {
			d.metrics.punchEnded(key, l, time.Since(began))
		}
	}()
	scope, err := d.punchScope(pu)
	if err != nil {
		return nil, err
	}
	pu.LAN = scope.Filter(pu.LAN)
	if scope.Check(pu.Public) != nil {
		pu.Public = netip.AddrPort{}
	}
	p.log.WithFields(logrus.Fields{"session": id.String()[:8], "strategy": strategy.Name, "tcp_role": strategy.TCP,
		"udp_role": strategy.UDP, "lan": fmt.Sprint(pu.LAN)}).Debug("punching")

	pctx, cancel := context.WithTimeout(ctx, d.cfg.Link.PunchTimeout.Duration)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	raw := make(chan net.Conn)
	linkCands := make(chan link.Candidate)
	defer d.acceptor.Register(pctx, id, raw)()
	box := d.udpInfos.box(pu.Session)
	defer d.udpInfos.done(pu.Session)

	// producers counts the punching goroutines; when all are done, the
	// candidates channel closes (after a grace for inbound connections).
	var producers sync.WaitGroup
	produce := func(f func()) {
		producers.Add(1)
		wg.Go(func() {
			defer producers.Done()
			f()
		})
	}
	// The TCP probe of a connect-fixed role must reach the server before
	// the UDP session probe that releases the session's instruction.
	tcpProbed := make(chan struct{})
	if d.useTCP {
		produce(func() { d.punchTCP(pctx, p, pu, id, strategy.TCP, scope, box, raw, tcpProbed) })
	} else {
		close(tcpProbed)
	}
	produce(func() {
		select {
		case <-tcpProbed:
		case <-time.After(time.Second):
		}
		if err := d.punchUDP(pctx, p, pu, id, strategy.UDP, scope, box, linkCands); err != nil && pctx.Err() == nil {
			p.log.WithError(err).Debug("udp punch gave up")
		}
	})
	if allowRelay && *d.cfg.Link.Relay {
		produce(func() {
			if err := d.relay(pctx, pu, id, strategy, linkCands); err != nil && pctx.Err() == nil {
				p.log.WithError(err).Debug("relay not used")
			}
		})
	}
	producersDone := make(chan struct{})
	wg.Go(func() {
		producers.Wait()
		close(producersDone)
	})
	wg.Go(func() {
		// Closing linkCands lets Establish give up as soon as every
		// candidate was tried, instead of at the punch timeout. Only
		// after every producer is done: they send on it too.
		defer func() {
			<-producersDone
			close(linkCands)
		}()
		punched := producersDone
		var grace <-chan time.Time
		for {
			select {
			case c := <-raw:
				select {
				case linkCands <- link.Candidate{Conn: c, Path: pathTCP}:
				case <-pctx.Done():
					c.Close()
				}
			case <-punched:
				punched = nil
				grace = time.After(inboundGrace)
			case <-grace:
				return
			case <-pctx.Done():
				return
			}
		}
	})
	l, err = link.Establish(pctx, linkCands, d.self, p.key, d.linkCfg, p.log)
	if err != nil {
		return nil, fmt.Errorf("punch session %s: %w", id.String()[:8], err)
	}
	return l, nil
}

// punchScope is where a punch with the peer of pu may send: its observed
// address and its LAN addresses on this machine's links.
func (d *Daemon) punchScope(pu rendezvous.Punch) (punch.Scope, error) {
	lan := make([]netip.Addr, len(pu.LAN))
	for i, a := range pu.LAN {
		lan[i] = a.Addr()
	}
	// Over loopback, the server (and so every peer) is on this host.
	scope, err := punch.NewScope(pu.Public.Addr(), lan, d.rv.LocalAddr().Addr().IsLoopback())
	if err != nil {
		return scope, fmt.Errorf("punch scope: %w", err)
	}
	return scope, nil
}

// serveLink serves the peer's streams until the link dies, the peer asks
// for a new punch session (it lost the link), or ctx ends, and returns
// which (a down reason, metrics.go). A relayed link keeps trying to
// upgrade: punch sessions in the background, and once a direct link is
// up, new streams use it while the relay drains (it closes when its last
// stream ends).
func (d *Daemon) serveLink(ctx context.Context, p *peer, l *link.Link) string {
	var wg sync.WaitGroup
	defer wg.Wait()
	serve := func(l *link.Link) {
		wg.Go(func() {
			for {
				s, err := l.Accept()
				if err != nil {
					return
				}
				d.wg.Go(func() { d.exit.ServeStream(ctx, s, p.name) })
			}
		})
	}
	current := l
	defer func() { current.Close() }()
	serve(current)

	type upgrade struct {
		l   *link.Link
		err error
	}
	results := make(chan upgrade, 1)
	upgrading := false
	defer func() {
		// An upgrade still under way ends with ctx or its punch timeout;
		// a link it made after all is not used.
		if upgrading {
			if r := <-results; r.l != nil {
				r.l.Close()
			}
		}
	}()
	retry := backoff.Backoff{Min: 3 * time.Second, Max: time.Minute}
	var upgradeTimer <-chan time.Time
	if current.Path() == pathRelay {
		upgradeTimer = time.After(retry.Next())
	}
	ended := func() string {
		if p.endedByAddressChange(current) {
			return downAddressGone
		}
		return downClosed
	}
	for {
		select {
		case <-current.Done():
			return ended()
		case <-upgradeTimer:
			upgradeTimer = nil
			if !upgrading {
				d.rv.Connect(p.key) // the punch comes back as an offer
			}
		case o := <-p.offers:
			if current.Path() != pathRelay {
				// The peer wants a new session, so its end of this
				// link is gone. If this end had closed the link
				// already, that is the reason (select picks at random
				// among ready cases).
				p.offer(o.Punch)
				select {
				case <-current.Done():
					return ended()
				default:
					return downNewSession
				}
			}
			if upgrading {
				continue
			}
			upgrading = true
			wg.Go(func() {
				nl, err := d.establish(ctx, p, o.Punch, false)
				results <- upgrade{nl, err}
			})
		case r := <-results:
			upgrading = false
			if r.err != nil {
				p.log.WithError(r.err).Debug("no direct path yet; staying on the relay")
				upgradeTimer = time.After(retry.Next())
				continue
			}
			old := current
			current = r.l
			p.replaceLink(current)
			p.linkUpgraded()
			serve(current)
			p.log.WithFields(logrus.Fields{"path": current.Path(), "remote": current.Remote()}).Info("link upgraded from relay; the relay drains")
			d.wg.Go(func() {
				drain(ctx, old)
				p.retireLink(old)
			})
		case <-ctx.Done():
			return downShutdown
		}
	}
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

// waitLink returns the peer's link, waiting up to max for one.
func (p *peer) waitLink(ctx context.Context, max time.Duration) (*link.Link, error) {
	t := time.NewTimer(max)
	defer t.Stop()
	for {
		p.mu.Lock()
		l, up := p.link, p.up
		p.mu.Unlock()
		if l != nil {
			return l, nil
		}
		select {
		case <-up:
		case <-t.C:
			return nil, ErrNoLink
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
