package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/warren-p2p/warren/internal/backoff"
	"github.com/warren-p2p/warren/portmap"
)

// Port mapping (config [link] port_mapping): the daemon asks its router to
// map the shared punch port, TCP and UDP (the same port number), and
// nothing else. Both go into the NAT report, so that a peer whose NAT pair
// leaves a transport nothing to do connects or pings there (punch.Choose):
// TCP reaches the punch port's listener; UDP reaches the session socket
// that holds the port number (session.UDP.Port), one session at a time.
const (
	// mapHold bounds how long after start the first NAT report waits for
	// the first mapping attempt: a report without the mapping sends the
	// peers of the first sessions through the relay (until an upgrade).
	// A router that maps answers within milliseconds on its LAN (the lab's
	// miniupnpd: under 25 ms, NAT discovery included); behind one that
	// does not, the first report goes this long after start at the latest
	// (NAT discovery itself takes about half of it).
	mapHold = 50 * time.Millisecond
	// mapRetryMin and mapRetryMax space the attempts while the router
	// offers nothing: routers turn UPnP on, and laptops change networks.
	mapRetryMin = 30 * time.Second
	mapRetryMax = 10 * time.Minute
	// unmapWait bounds the deletion of the mappings at shutdown (portmap
	// bounds each request too): a router gone silent must not hold the
	// exit up.
	unmapWait = 3 * time.Second
)

// loopbackServer reports whether the rendezvous server at addr is on this
// host: then so is every peer (a demo, a test), and a mapping on the
// router would open a port for no one.
func loopbackServer(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.IsLoopback()
	}
	return host == "localhost"
}

// portMaps is what the router granted, for the NAT report and status.
type portMaps struct {
	// tried is closed once the first attempt has ended, however.
	tried chan struct{}
	// holdUntil is when the first NAT report stops waiting for tried
	// (mapHold after the daemon started); set before mapPorts starts.
	holdUntil time.Time

	// mu guards the fields below.
	mu       sync.Mutex
	tcp, udp *portmap.Mapping // nil while not mapped
	err      error            // why the last attempt mapped nothing (or only one transport)
}

func newPortMaps() *portMaps { return &portMaps{tried: make(chan struct{})} }

// external returns the TCP and UDP mappings' external endpoints, invalid
// where there is none (or it is lost).
func (pm *portMaps) external() (tcp, udp netip.AddrPort) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	if pm.tcp != nil {
		tcp = pm.tcp.External()
	}
	if pm.udp != nil {
		udp = pm.udp.External()
	}
	return tcp, udp
}

// udpPort returns the local port the UDP mapping forwards to, 0 without
// one: a UDP session's socket takes it (session.UDP.Port).
func (pm *portMaps) udpPort() uint16 {
	if pm == nil {
		return 0
	}
	pm.mu.Lock()
	defer pm.mu.Unlock()
	if pm.udp == nil {
		return 0
	}
	return pm.udp.Internal()
}

func (pm *portMaps) set(tcp, udp *portmap.Mapping, err error) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	pm.tcp, pm.udp, pm.err = tcp, udp, err
}

// hold waits for the first mapping attempt, at most until holdUntil.
func (pm *portMaps) hold(ctx context.Context) { waitClosed(ctx, pm.tried, time.Until(pm.holdUntil)) }

// mapPorts keeps the punch port mapped until ctx ends, then deletes the
// mappings. It runs only with port_mapping on, as one of the daemon's
// goroutines: Shutdown waits for the deletion.
func (d *Daemon) mapPorts(ctx context.Context) {
	once := sync.OnceFunc(func() { close(d.ports.tried) })
	defer once()
	log := d.log.WithField("component", "portmap")
	c, err := portmap.New(portmap.Config{}, log)
	if err != nil {
		log.WithError(err).Error("port mapping off: bad configuration")
		d.ports.set(nil, nil, err)
		return
	}
	defer func() {
		// ctx is over: deleting needs a context of its own.
		cctx, cancel := context.WithTimeout(context.Background(), unmapWait)
		defer cancel()
		if err := c.Close(cctx); err != nil {
			log.WithError(err).Warn("port mappings not all deleted; they lapse with their lease")
		}
	}()
	port := uint16(d.acceptor.Port())
	retry := backoff.Backoff{Min: mapRetryMin, Max: mapRetryMax}
	for first := true; ; {
		tcp, udp, err := mapBoth(ctx, c, port, d.useTCP)
		if ctx.Err() != nil {
			return
		}
		d.ports.set(tcp, udp, err)
		once()
		if tcp == nil && udp == nil {
			wait := retry.Next()
			// Most routers offer none: say so once, then only at debug.
			l := log.WithError(err).WithField("retry_in", wait.Round(time.Second))
			if first {
				l.Info("no port mapping from the router")
			} else {
				l.Debug("still no port mapping from the router")
			}
			first = false
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return
			}
		}
		if err != nil {
			log.WithError(err).Warn("router mapped the punch port for one transport only")
		}
		d.reportNAT()
		d.followMappings(ctx, tcp, udp)
		return
	}
}

// mapBoth maps port over UDP and, withTCP, over TCP; it returns what it
// got, and why not the rest. A daemon whose links do not run over TCP
// takes no connection on its punch port from a peer, so it maps no TCP.
func mapBoth(ctx context.Context, c *portmap.Client, port uint16, withTCP bool) (tcp, udp *portmap.Mapping, err error) {
	var errT, errU error
	var wg sync.WaitGroup
	if withTCP {
		wg.Go(func() { tcp, errT = c.Map(ctx, portmap.TCP, port) })
	}
	wg.Go(func() { udp, errU = c.Map(ctx, portmap.UDP, port) })
	wg.Wait()
	if errT != nil {
		errT = fmt.Errorf("tcp: %w", errT)
	}
	if errU != nil {
		errU = fmt.Errorf("udp: %w", errU)
	}
	return tcp, udp, errors.Join(errT, errU)
}

// followMappings reports the mappings again whenever an external endpoint
// changes or is lost (the mappings renew themselves), until ctx
// ends.
func (d *Daemon) followMappings(ctx context.Context, tcp, udp *portmap.Mapping) {
	var tcpCh, udpCh <-chan netip.AddrPort
	if tcp != nil {
		tcpCh = tcp.Changes()
	}
	if udp != nil {
		udpCh = udp.Changes()
	}
	for {
		select {
		case <-tcpCh:
			d.reportNAT()
		case <-udpCh:
			d.reportNAT()
		case <-ctx.Done():
			return
		}
	}
}

// PortMappingStatus is what the router granted, in GET /status.
type PortMappingStatus struct {
	// Protocol is how the TCP mapping (else the UDP one) was obtained:
	// "upnp", "nat-pmp" or "pcp".
	Protocol string `json:"protocol,omitempty"`
	// TCP and UDP are the external endpoints of the punch port's
	// mappings; absent where there is none (or it is lost).
	TCP string `json:"tcp,omitempty"`
	UDP string `json:"udp,omitempty"`
	// Expires is when the TCP mapping (else the UDP one) lapses unless
	// renewed (it is renewed at half its lease); absent for a permanent
	// one.
	Expires *time.Time `json:"expires,omitempty"`
	// Error says why there is no mapping, or only one.
	Error string `json:"error,omitempty"`
}

// status describes the mappings; nil with port mapping off.
func (pm *portMaps) status() *PortMappingStatus {
	if pm == nil {
		return nil
	}
	pm.mu.Lock()
	defer pm.mu.Unlock()
	st := &PortMappingStatus{}
	if pm.err != nil {
		st.Error = pm.err.Error()
	}
	for _, m := range []*portmap.Mapping{pm.udp, pm.tcp} { // TCP last, so it wins
		if m == nil {
			continue
		}
		ext := m.External()
		if !ext.IsValid() {
			continue
		}
		if m.Transport() == portmap.TCP {
			st.TCP = ext.String()
		} else {
			st.UDP = ext.String()
		}
		st.Protocol = string(m.Protocol())
		st.Expires = nil
		if exp := m.Expires(); !exp.IsZero() {
			exp = exp.UTC()
			st.Expires = &exp
		}
	}
	switch {
	case st.TCP != "" || st.UDP != "" || st.Error != "":
	case pm.tcp != nil || pm.udp != nil:
		st.Error = "lost: the lease expired unrenewed; asking the router again"
	default:
		st.Error = "not mapped yet"
	}
	return st
}
