package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/forward"
	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/internal/waitfor"
	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
	"github.com/warren-p2p/warren/session"
)

// Daemon is a warren peer daemon.
type Daemon struct {
	cfg *config.Config
	key identity.PrivateKey
	log logrus.FieldLogger

	reloadMu sync.Mutex     // one Reload at a time
	applied  *config.Config // the config Reload last applied (at first cfg); guarded by reloadMu
	// peersMu guards peers, byKey and byName, which Reload changes.
	peersMu sync.RWMutex
	peers   []*peer // in config order
	byKey   map[identity.PublicKey]*peer
	byName  map[string]*peer

	rv *rendezvous.Client
	// rvDial opens every connection to the rendezvous server, control and
	// relay, so that both go the same way (fallback port, HTTP proxy).
	rvDial    *rendezvous.Dialer
	listeners *forward.Listeners
	exit      *forward.Server
	metrics   *metrics // GET /metrics's own counters
	nat       *natState
	ports     *portMaps // nil with port_mapping off
	sessions  *session.Config
	useTCP    bool
	useUDP    bool
	// punchBudget paces and caps every punch packet, UDP and TCP (spray_rate).
	punchBudget *punch.Budget

	// Set by Start.
	acceptor *punch.Acceptor
	// paths are the ways a punch session tries, relay last; direct
	// leaves the relay out (for an upgrade from one).
	paths, direct []session.Path
	admin         *adminServer
	ctx           context.Context // the daemon's run: peers that Reload adds run on it
	cancel        context.CancelFunc
	wg            sync.WaitGroup
	started       time.Time

	// udpClosing counts UDP links whose close handshake is still under
	// way (udpConn.Close).
	udpClosing sync.WaitGroup

	// history is each peer's recent throughput (sampleThroughput).
	history rateHistory

	// memory is which path each peer's sessions won from this network
	// (state_dir's paths-KEY.json).
	memory *pathMemory
}

// loadKey loads the daemon's key, creating it only where the config says
// create_key = true: a key_file with a typo must not quietly become a new
// identity.
func loadKey(cfg *config.Config, log logrus.FieldLogger) (identity.PrivateKey, error) {
	if !cfg.CreateKey {
		key, err := identity.Load(cfg.KeyFile)
		if errors.Is(err, fs.ErrNotExist) {
			return key, fmt.Errorf("%w: create key_file %s with `warren keygen -o %s` "+
				"and give its public key to your peers (or set create_key = true)", ErrNoKey, cfg.KeyFile, cfg.KeyFile)
		}
		return key, err
	}
	key, created, err := identity.LoadOrCreate(cfg.KeyFile)
	if created {
		log.WithFields(logrus.Fields{"key_file": cfg.KeyFile, "public_key": key.Public()}).Info("created a new key")
	}
	return key, err
}

// ErrNoKey is New's error when the key file is missing and the config
// does not allow creating it.
var ErrNoKey = errors.New("no key file")

// New prepares a daemon from a verified config: it loads (or creates) the
// key and builds every component, but binds nothing.
func New(cfg *config.Config, log logrus.FieldLogger) (*Daemon, error) {
	key, err := loadKey(cfg, log)
	if err != nil {
		return nil, err
	}
	self, err := link.NewIdentity(key)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, applied: cfg, key: key, log: log, nat: newNATState(), metrics: newMetrics()}
	if *cfg.Link.PortMapping && !loopbackServer(cfg.Rendezvous.Address) {
		d.ports = newPortMaps()
	}
	for _, t := range cfg.Link.Transports {
		d.useTCP = d.useTCP || t == "tcp"
		d.useUDP = d.useUDP || t == "udp"
	}
	d.sessions = &session.Config{Self: self, Timeout: cfg.Link.PunchTimeout.Duration, Link: &link.Config{
		KeepAliveInterval: cfg.Link.KeepAlive.Duration,
		StreamWindow:      cfg.Link.StreamWindow,
		MaxStreams:        cfg.Link.MaxStreams,
		ReceiveBudget:     cfg.Link.ReceiveBudget,
	}}
	if err := d.sessions.Verify(); err != nil {
		return nil, err
	}
	if d.punchBudget, err = punch.NewBudget(&punch.BudgetConfig{Rate: cfg.Link.SprayRate}); err != nil {
		return nil, fmt.Errorf("link.spray_rate: %w", err)
	}
	if d.peers, err = d.newPeers(cfg); err != nil {
		return nil, err
	}
	d.byKey, d.byName = indexPeers(d.peers)
	policy, err := forward.NewPolicy(cfg.Peers, cfg.Expose, nil)
	if err != nil {
		return nil, err
	}
	d.exit = forward.NewServer(policy, forward.Config{Self: &selfGuard{d: d}, AccessLog: cfg.AccessLog}, log.WithField("component", "exit"))
	d.listeners = forward.NewListeners(cfg.Socks, cfg.Forward, d, forward.Config{AccessLog: cfg.AccessLog}, log.WithField("component", "forward"))
	if d.rvDial, err = newRendezvousDialer(cfg); err != nil {
		return nil, err
	}
	if d.memory, err = newPathMemory(cfg.StateDir, key.Public(), log); err != nil {
		return nil, err
	}
	if d.rv, err = d.newRendezvous(); err != nil {
		return nil, err
	}
	return d, nil
}

// newRendezvous makes the client that keeps the daemon registered.
func (d *Daemon) newRendezvous() (*rendezvous.Client, error) {
	serverKey, err := identity.ParsePublicKey(d.cfg.Rendezvous.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("rendezvous.public_key: %w", err)
	}
	return rendezvous.NewClient(rendezvous.ClientConfig{
		Address:   d.cfg.Rendezvous.Address,
		Addresses: d.cfg.Rendezvous.Addresses,
		ServerKey: serverKey,
		Key:       d.key,
		Token:     d.cfg.Rendezvous.Token,
		Dial:      d.dialRendezvous,
		LAN:       d.lanCandidates,
		DialPlain: func(ctx context.Context, addr string) (net.Conn, error) {
			return punch.DialFrom(ctx, d.acceptor.Port(), addr)
		},
		OnPunch:      d.onPunch,
		Consent:      func(k identity.PublicKey) bool { return d.peerByKey(k) != nil },
		OnOffline:    d.onOffline,
		OnRegistered: d.onRegistered,
		Log:          d.log.WithField("component", "rendezvous"),
	})
}

// PublicKey returns this daemon's public key.
func (d *Daemon) PublicKey() identity.PublicKey { return d.key.Public() }

// Start binds every listener (the shared punch port, the admin API, SOCKS5
// and forward listeners) and starts serving. If any bind fails, nothing is
// left running and the error names what failed.
func (d *Daemon) Start(ctx context.Context) (err error) {
	ctx, cancel := context.WithCancel(ctx)
	d.ctx, d.cancel = ctx, cancel
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	ln, err := punch.Listen(ctx, ":0")
	if err != nil {
		return fmt.Errorf("bind punch port: %w", err)
	}
	d.acceptor = punch.NewAcceptor(ln, &punch.Config{Log: d.log})
	d.paths, d.direct = d.sessionPaths()
	if d.cfg.AdminListen != "" {
		if d.admin, err = listenAdmin(d.cfg.AdminListen, d); err != nil {
			ln.Close()
			return config.NewBindError("admin_listen", d.cfg.AdminListen, err)
		}
	}
	if err = d.listeners.Start(ctx); err != nil {
		ln.Close()
		return err
	}
	d.started = time.Now()
	d.log.WithFields(logrus.Fields{"public_key": d.key.Public(), "punch_port": d.acceptor.Port()}).Info("warren started")
	d.logListening()

	d.wg.Go(func() {
		// Serve outlives accept errors; it ends early only if the port
		// is closed under it, and then peers can no longer punch to us.
		if err := d.acceptor.Serve(ctx); err != nil {
			d.log.WithError(err).WithField("punch_port", d.acceptor.Port()).Error("punch port closed; peers cannot punch to this daemon until it restarts")
		}
	})
	if d.ports != nil {
		// Before the rendezvous client, so that the first NAT report
		// can carry the mapping (reportNAT).
		d.ports.holdUntil = time.Now().Add(mapHold)
		d.wg.Go(func() { d.mapPorts(ctx) })
	}
	d.wg.Go(func() { d.rv.Run(ctx) })
	d.wg.Go(func() { d.discoverLoop(ctx) })
	d.wg.Go(func() { d.watchAddrs(ctx) })
	d.wg.Go(func() { d.sampleThroughput(ctx) })
	if !d.cfg.AccessLog {
		d.wg.Go(func() { d.summarizeTraffic(ctx, trafficSummaryInterval) })
	}
	if d.admin != nil {
		d.wg.Go(func() { d.admin.serve(ctx) })
	}
	for _, p := range d.peerList() {
		d.startPeer(p)
	}
	return nil
}

// logListening says, once at start, what this daemon listens on and whom
// it will link with: a person starting it should not have to read the
// config again to know where to point a browser.
func (d *Daemon) logListening() {
	if d.admin != nil {
		d.log.WithField("listen", d.admin.ln.Addr().String()).Info("admin API and dashboard listening")
	}
	for _, l := range d.listeners.Describe() {
		f := logrus.Fields{"listener": l.Name, "listen": l.Listen, "protocol": l.Protocol, "peer": l.Peer}
		if l.To != "" {
			f["to"] = l.To
		}
		d.log.WithFields(f).Info(l.Kind + " listening")
	}
	for _, p := range d.peerList() {
		d.log.WithFields(logrus.Fields{"peer": p.name, "public_key": p.key.String()}).Info("will link with peer")
	}
}

// newPeers makes a peer for each [[peers]] entry.
func (d *Daemon) newPeers(cfg *config.Config) ([]*peer, error) {
	var peers []*peer
	for i, pc := range cfg.Peers {
		k, err := identity.ParsePublicKey(pc.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("peer %s: public_key: %w", pc.Name, err)
		}
		if k == d.key.Public() {
			return nil, fmt.Errorf("peer %s: public_key is this daemon's own key", pc.Name)
		}
		p := newPeer(pc.Name, k, d.log.WithField("peer", pc.Name))
		p.keyAt = cfg.Where(keyIndexed("peers", i, "public_key"))
		peers = append(peers, p)
	}
	return peers, nil
}

func indexPeers(peers []*peer) (map[identity.PublicKey]*peer, map[string]*peer) {
	byKey := make(map[identity.PublicKey]*peer, len(peers))
	byName := make(map[string]*peer, len(peers))
	for _, p := range peers {
		byKey[p.key] = p
		byName[p.name] = p
	}
	return byKey, byName
}

// startPeer runs p's link loop until the daemon stops or p.stop is called.
func (d *Daemon) startPeer(p *peer) {
	ctx, stop := context.WithCancel(d.ctx)
	p.stop, p.done = stop, make(chan struct{})
	d.wg.Go(func() {
		defer close(p.done)
		p.run(ctx, d)
	})
}

// peerList returns the configured peers, in config order.
func (d *Daemon) peerList() []*peer {
	d.peersMu.RLock()
	defer d.peersMu.RUnlock()
	return slices.Clone(d.peers)
}

func (d *Daemon) peerByName(name string) *peer {
	d.peersMu.RLock()
	defer d.peersMu.RUnlock()
	return d.byName[name]
}

func (d *Daemon) peerByKey(k identity.PublicKey) *peer {
	d.peersMu.RLock()
	defer d.peersMu.RUnlock()
	return d.byKey[k]
}

// Close stops at once: listeners, links, every goroutine. It waits for
// them.
func (d *Daemon) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return d.Shutdown(ctx)
}

// Shutdown closes the listeners first, lets open streams (local
// connections and peers' streams through this exit) finish until ctx
// ends, then stops everything and waits for it.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.listeners.Shutdown(ctx)
	t := time.NewTicker(50 * time.Millisecond)
	for d.exit.Stats().Active > 0 && ctx.Err() == nil {
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	t.Stop()
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	// A UDP link's end of stream travels in the link's own packets (QUIC
	// or KCP), not in the kernel's hands as a TCP FIN does: the process
	// must stay until they are out and answered, or the peer learns of the
	// shutdown only when its keepalive fails.
	wctx, cancel := context.WithTimeout(context.Background(), udpCloseWait)
	defer cancel()
	if waitfor.Group(wctx, &d.udpClosing) != nil {
		d.log.Debug("UDP links still closing at exit")
	}
	return nil
}

// udpCloseWait bounds how long Shutdown waits for UDP links' close
// handshakes: a peer that answers at all answers within a round trip.
const udpCloseWait = 2 * time.Second

// AdminAddr returns the bound admin address, or nil if it is off.
func (d *Daemon) AdminAddr() net.Addr {
	if d.admin == nil {
		return nil
	}
	return d.admin.ln.Addr()
}

// Listeners returns the forward and SOCKS5 listeners (for their bound
// addresses).
func (d *Daemon) Listeners() *forward.Listeners { return d.listeners }

// OpenStream opens a stream to the named peer, waiting a while for its
// link if it is not up yet; it implements forward.Opener.
func (d *Daemon) OpenStream(ctx context.Context, name string) (net.Conn, error) {
	p := d.peerByName(name)
	if p == nil {
		return nil, fmt.Errorf("no peer named %q", name)
	}
	l, err := p.waitLink(ctx, linkWait)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", name, err)
	}
	s, err := l.Open(ctx)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", name, err)
	}
	return s, nil
}

// linkWait is how long a new local connection waits for its peer's link.
const linkWait = 15 * time.Second

// ErrNoLink is returned when a peer's link is not up in time.
var ErrNoLink = errors.New("no link to peer")

func (d *Daemon) dialRendezvous(ctx context.Context, addr string) (net.Conn, error) {
	before := d.rvDial.LastRoute()
	c, route, err := d.rvDial.Dial(ctx, addr, func(ctx context.Context, addr string) (net.Conn, error) {
		return dialIPv4First(ctx, d.acceptor.Port(), addr)
	})
	if err == nil && route != before && (route.Fallback || route.Proxy != "" || before.Addr != "") {
		d.log.WithFields(logrus.Fields{"route": route.String(), "network": rendezvous.RestrictionText(route.Restriction())}).
			Info("rendezvous server reached")
	}
	return c, err
}

func (d *Daemon) lanCandidates() []netip.AddrPort {
	cands, err := punch.LocalCandidates(uint16(d.acceptor.Port()))
	if err != nil {
		d.log.WithError(err).Warn("cannot list LAN candidates")
		return nil
	}
	return cands
}

// sessionPaths returns the paths a punch session races, as the config
// allows them, with and without the relay.
func (d *Daemon) sessionPaths() (all, direct []session.Path) {
	// transports binds both directions: without "tcp" this side neither
	// punches TCP nor takes the connection a peer punched towards it.
	if d.useTCP {
		direct = append(direct, &session.Inbound{Acceptor: d.acceptor},
			&session.TCP{Acceptor: d.acceptor, Server: d.cfg.Rendezvous.Address, Budget: d.punchBudget})
	}
	direct = append(direct, &session.UDP{
		Servers:   d.rv.UDPServers,
		ProbeOnly: !d.useUDP,
		Budget:    d.punchBudget,
		Stream:    d.cfg.Link.UDPStream,
		Closing:   &d.udpClosing,
		Port:      d.ports.udpPort,
	})
	all = direct
	if *d.cfg.Link.Relay {
		all = append(slices.Clip(direct), &session.Relay{Server: d.cfg.Rendezvous.Address, Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			c, _, err := d.rvDial.DialLikeLast(ctx, addr)
			return c, err
		}})
	}
	return all, direct
}

// onPunch routes a punch instruction to its peer. Instructions about keys
// not in the config are dropped: access is deny by default.
// onOffline marks a peer the server says is offline.
func (d *Daemon) onOffline(k identity.PublicKey) {
	if p := d.peerByKey(k); p != nil {
		p.setOffline()
	}
}

func (d *Daemon) onPunch(pu rendezvous.Punch) {
	p := d.peerByKey(pu.Peer)
	if p == nil {
		d.log.WithField("key", pu.Peer.Short()).Info("ignoring punch from a key not in [[peers]]")
		return
	}
	p.offer(pu)
}

// keyIndexed is the config key of field in the i-th element of array:
// "peers[0].public_key".
func keyIndexed(array string, i int, field string) string {
	return fmt.Sprintf("%s[%d].%s", array, i, field)
}
