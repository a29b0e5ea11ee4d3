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

	// mu guards nat and known.
	mu    sync.Mutex
	nat   punch.NAT
	known bool
}

func newNATState() *natState {
	return &natState{discover: make(chan []netip.AddrPort, 1), ready: make(chan struct{})}
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
		// Behind no NAT there is no mapping to name: say "none", not "".
		d.log.WithFields(logrus.Fields{"nat": nat.String(), "mapping": cmp.Or(string(nat.Mapping), "none"),
			"allocation": nat.Allocation}).Info("NAT classified")
		if err := d.rv.SetNAT(nat); err != nil {
			d.log.WithError(err).Debug("NAT report not sent")
		}
	}
}

// onRegistered hands discovery the server's endpoints.
func (d *Daemon) onRegistered(udp []netip.AddrPort) { putNewest(d.nat.discover, udp) }

// await waits for the first NAT discovery, at most natWait.
func (n *natState) await(ctx context.Context) {
	t := time.NewTimer(natWait)
	defer t.Stop()
	select {
	case <-n.ready:
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
