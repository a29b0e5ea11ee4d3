package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
)

// addrPollInterval is how often the daemon looks for changed local
// addresses. Polling costs one interface listing a second and works the
// same on every OS, where a routing-socket monitor differs on each.
const addrPollInterval = time.Second

// watchAddrs notices when this machine's addresses change (a new DHCP
// lease, another network) and moves what used an address that is gone:
// the rendezvous connection registers again at once, and each link that
// left from such an address is closed, so that its peer loop punches a new
// one. Without this, both would wait for keepalives to fail.
func (d *Daemon) watchAddrs(ctx context.Context) {
	t := time.NewTicker(addrPollInterval)
	defer t.Stop()
	last, _ := punch.InterfaceAddrs()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now, err := punch.InterfaceAddrs()
		if err != nil {
			continue // try again at the next tick; last stays right meanwhile
		}
		gone, added := missing(last, now), missing(now, last)
		if len(gone) == 0 && len(added) == 0 {
			continue
		}
		last = now
		d.log.WithFields(logrus.Fields{"gone": fmt.Sprint(gone), "added": fmt.Sprint(added)}).Info("local addresses changed")
		if len(gone) == 0 {
			continue // what runs now still has its address
		}
		if ap := d.rv.LocalAddr(); ap.IsValid() && slices.Contains(gone, ap.Addr().Unmap()) {
			d.rv.Redial()
		}
		for _, p := range d.peerList() {
			p.dropLinkFrom(gone)
		}
	}
}

// missing returns the addresses of a that b lacks.
func missing(a, b []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, x := range a {
		if _, found := slices.BinarySearchFunc(b, x, netip.Addr.Compare); !found {
			out = append(out, x)
		}
	}
	return out
}

// linkSource returns the local address l's packets leave from. A UDP link's
// socket is bound to every address, so the routing table decides; a
// connected UDP socket asks it without sending anything.
func linkSource(l *link.Link) netip.Addr {
	if ap, err := netip.ParseAddrPort(l.Local().String()); err == nil && !ap.Addr().IsUnspecified() {
		return ap.Addr().Unmap()
	}
	remote, err := netip.ParseAddrPort(l.Remote().String())
	if err != nil {
		return netip.Addr{}
	}
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(remote))
	if err != nil {
		return netip.Addr{}
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
}
