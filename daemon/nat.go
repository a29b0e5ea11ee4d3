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
	// its outcome, or once the first registration showed a restricted
	// network (nothing to wait for then); readyOnce closes it.
	ready     chan struct{}
	readyOnce sync.Once

	// reportMu makes reports go out one at a time, each with the state
	// as it is when it goes: the last one the server gets is the newest.
	// It guards reported.
	reportMu sync.Mutex
	reported *rendezvous.NATReport // the last report sent; nil before the first

	// mu guards the fields below.
	mu    sync.Mutex
	nat   punch.NAT
	known bool
	// changed is closed (and replaced) when a report differs from the
	// one before: a relayed link then tries a direct path at once.
	changed chan struct{}
	// restricted is why this network leaves no direct path
	// (rendezvous.NATReport.Restricted): the route of the control
	// connection, else unanswered UDP probes; "" if nothing says so.
	restricted string
}

func newNATState() *natState {
	return &natState{discover: make(chan []netip.AddrPort, 1), ready: make(chan struct{}), changed: make(chan struct{})}
}

// discoverLoop classifies this daemon's NAT after each registration and
// reports it to the rendezvous server.
func (d *Daemon) discoverLoop(ctx context.Context) {
	for {
		var servers []netip.AddrPort
		select {
		case servers = <-d.nat.discover:
		case <-ctx.Done():
			return
		}
		// A control connection that came through the fallback port or a
		// proxy tells at once that no direct path is to be expected: say
		// so before probing, so that the server (which waits for both
		// NATs before it starts a punch) and the peers' sessions need
		// not wait for probes this network drops. A direct route clears
		// what an earlier network was found to be; probing decides again.
		route := d.rvDial.LastRoute().Restriction()
		d.nat.setRestricted(route)
		if route != "" {
			d.reportNAT()
			d.nat.markReady()
		}
		dctx, cancel := context.WithTimeout(ctx, discoverTimeout)
		nat, _, err := rendezvous.Discover(dctx, rendezvous.DiscoverConfig{Servers: servers})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Probes sent and none answered: no UDP gets out. (A server
			// that offers no probe endpoint says nothing of this network.)
			if len(servers) > 0 {
				route = cmp.Or(route, rendezvous.RestrictedNoUDP)
			}
			d.nat.setRestricted(route)
			d.log.WithError(err).WithField("network", rendezvous.RestrictionText(d.nat.restriction())).Warn("NAT discovery failed")
			d.reportNAT()
			d.nat.markReady()
			continue
		}
		d.nat.set(nat)
		// UDP gets out after all (a proxy in the environment of a
		// machine whose network lets everything out, a configured port
		// that was only slow): direct paths are worth their head start.
		d.nat.setRestricted("")
		if d.ports != nil {
			d.ports.hold(ctx)
		}
		// Behind no NAT there is no mapping to name: say "none", not "".
		d.log.WithFields(logrus.Fields{"nat": nat.String(), "mapping": cmp.Or(string(nat.Mapping), "none"),
			"allocation": nat.Allocation}).Info("NAT classified")
		d.reportNAT()
		d.nat.markReady()
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

// reportNAT sends the server this daemon's NAT (selfNAT) and why its
// network leaves no direct path, if it does. Before the first
// classification it sends nothing unless the network is restricted: a
// server that got a mapping alone would take the NAT for classified, and
// unknown (for a restricted network that is what it is for punching).
func (d *Daemon) reportNAT() {
	d.nat.reportMu.Lock()
	defer d.nat.reportMu.Unlock()
	nat, ok := d.selfNAT()
	r := *rendezvous.ReportNAT(nat)
	r.Restricted = d.nat.restriction()
	if !ok && r.Restricted == "" {
		return
	}
	if err := d.rv.Report(r); err != nil {
		d.log.WithError(err).Debug("NAT report not sent")
	}
	// Report keeps the report for the next registration even when it
	// could not send it now: it counts as reported.
	if prev := d.nat.reported; prev != nil && *prev != r {
		d.log.WithFields(logrus.Fields{"mapped_tcp": nat.MappedTCP, "restricted": r.Restricted}).Debug("NAT report changed")
		d.nat.bump()
	}
	d.nat.reported = &r
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

// markReady ends the wait for the first discovery.
func (n *natState) markReady() { n.readyOnce.Do(func() { close(n.ready) }) }

func (n *natState) setRestricted(r string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.restricted = r
}

// restriction is why this network leaves no direct path, or "".
func (n *natState) restriction() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.restricted
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
