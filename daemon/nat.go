package daemon

import (
	"cmp"
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// natWait bounds how long punching waits for the first NAT discovery: a
// strategy chosen without it is usually wrong for symmetric NATs.
const natWait = 3 * time.Second

// discoverTimeout bounds one NAT discovery.
const discoverTimeout = 10 * time.Second

// natState is this daemon's NAT as discovery last classified it.
type natState struct {
	// discover carries the server's UDP endpoints after each
	// registration; discovery only needs the latest.
	discover chan []netip.AddrPort
	// ready is closed once the first discovery has finished, whatever
	// its outcome.
	ready chan struct{}

	// reportMu makes reports go out one at a time, each with the state
	// as it is when it goes: the last one the server gets is the newest.
	// It guards reported.
	reportMu sync.Mutex
	reported *punch.NAT // the last report sent; nil before the first

	// mu guards nat, known and changed.
	mu    sync.Mutex
	nat   punch.NAT
	known bool
	// changed is closed (and replaced) when a report differs from the
	// one before: a relayed link then tries a direct path at once.
	changed chan struct{}
}

func newNATState() *natState {
	return &natState{discover: make(chan []netip.AddrPort, 1), ready: make(chan struct{}), changed: make(chan struct{})}
}

// discoverLoop classifies this daemon's NAT after each registration and
// reports it to the rendezvous server.
func (d *Daemon) discoverLoop(ctx context.Context) {
	var once sync.Once
	for {
		var servers []netip.AddrPort
		select {
		case servers = <-d.nat.discover:
		case <-ctx.Done():
			return
		}
		dctx, cancel := context.WithTimeout(ctx, discoverTimeout)
		nat, _, err := rendezvous.Discover(dctx, rendezvous.DiscoverConfig{Servers: servers})
		cancel()
		once.Do(func() { close(d.nat.ready) })
		if err != nil {
			d.log.WithError(err).Warn("NAT discovery failed")
			continue
		}
		d.nat.set(nat)
		if d.ports != nil {
			d.ports.hold(ctx)
		}
		// Behind no NAT there is no mapping to name: say "none", not "".
		d.log.WithFields(logrus.Fields{"nat": nat.String(), "mapping": cmp.Or(string(nat.Mapping), "none"),
			"allocation": nat.Allocation}).Info("NAT classified")
		d.reportNAT()
	}
}

// selfNAT is this daemon's NAT as peers should see it: as classified, with
// the router's mapping of the punch port; and whether it was classified.
func (d *Daemon) selfNAT() (punch.NAT, bool) {
	nat, ok := d.nat.get()
	if d.ports != nil {
		nat.MappedTCP, nat.MappedUDP = d.ports.external()
		if !d.useUDP {
			// Only a session's punch socket holds the mapped UDP
			// port, and without UDP links it holds it for no link.
			nat.MappedUDP = netip.AddrPort{}
		}
	}
	return nat, ok
}

// reportNAT sends the server this daemon's NAT (selfNAT). Before the
// first classification it sends nothing: a server that got a mapping
// alone would take the NAT for classified, and unknown.
func (d *Daemon) reportNAT() {
	d.nat.reportMu.Lock()
	defer d.nat.reportMu.Unlock()
	nat, ok := d.selfNAT()
	if !ok {
		return
	}
	if err := d.rv.SetNAT(nat); err != nil {
		d.log.WithError(err).Debug("NAT report not sent")
	}
	// SetNAT keeps the report for the next registration even when it
	// could not send it now: it counts as reported.
	if prev := d.nat.reported; prev != nil && *prev != nat {
		d.log.WithField("mapped_tcp", nat.MappedTCP).Debug("NAT report changed")
		d.nat.bump()
	}
	d.nat.reported = &nat
}

// bump tells whoever waits on changes that the report changed.
func (n *natState) bump() {
	n.mu.Lock()
	defer n.mu.Unlock()
	close(n.changed)
	n.changed = make(chan struct{})
}

// changes returns a channel closed at the next change of the report.
func (n *natState) changes() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.changed
}

// onRegistered hands discovery the server's endpoints.
func (d *Daemon) onRegistered(udp []netip.AddrPort) { putNewest(d.nat.discover, udp) }

// await waits for the first NAT discovery, at most natWait.
func (n *natState) await(ctx context.Context) { waitClosed(ctx, n.ready, natWait) }

// waitClosed waits until ch is closed, at most max (or until ctx ends).
func waitClosed(ctx context.Context, ch <-chan struct{}, max time.Duration) {
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
	}
}

func (n *natState) set(nat punch.NAT) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nat, n.known = nat, true
}

// get returns the NAT as last classified, and whether it ever was (zero
// if not).
func (n *natState) get() (punch.NAT, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nat, n.known
}
