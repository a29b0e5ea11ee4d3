package daemon

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/link"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

const pathUDP = "direct-udp"

// udpInfoWait bounds the wait for the server's UDP instruction, which it
// sends within its own UDPWait (1s) of the punch.
const udpInfoWait = 3 * time.Second

// udpInfos hands each punch session's second-step instruction (the peer's
// session endpoints) from the rendezvous client's read loop to the
// goroutines punching that session, whichever of them comes first.
type udpInfos struct {
	mu sync.Mutex // guards m
	m  map[string]*sessionBox
}

// sessionBox holds one session's instruction once it has arrived.
type sessionBox struct {
	ready   chan struct{} // closed when info is set
	once    sync.Once
	info    rendezvous.UDPInfo
	created time.Time
}

func (b *sessionBox) set(info rendezvous.UDPInfo) {
	b.once.Do(func() {
		b.info = info
		close(b.ready)
	})
}

// wait returns the instruction, or false if it does not come within max.
func (b *sessionBox) wait(ctx context.Context, max time.Duration) (rendezvous.UDPInfo, bool) {
	select {
	case <-b.ready:
		return b.info, true
	case <-time.After(max):
	case <-ctx.Done():
	}
	return rendezvous.UDPInfo{}, false
}

// box returns the session's box, creating it, and drops boxes nobody
// claimed for a minute.
func (u *udpInfos) box(session string) *sessionBox {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.m == nil {
		u.m = make(map[string]*sessionBox)
	}
	b, ok := u.m[session]
	if !ok {
		for k, old := range u.m {
			if time.Since(old.created) > time.Minute {
				delete(u.m, k)
			}
		}
		b = &sessionBox{ready: make(chan struct{}), created: time.Now()}
		u.m[session] = b
	}
	return b
}

func (u *udpInfos) done(session string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.m, session)
}

func (d *Daemon) onUDP(info rendezvous.UDPInfo) { d.udpInfos.box(info.Session).set(info) }

// discoverLoop classifies this daemon's NAT after each registration and
// reports it to the rendezvous server.
func (d *Daemon) discoverLoop(ctx context.Context) {
	var once sync.Once
	for {
		var servers []netip.AddrPort
		select {
		case servers = <-d.discover:
		case <-ctx.Done():
			return
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		nat, _, err := rendezvous.Discover(dctx, rendezvous.DiscoverConfig{Servers: servers})
		cancel()
		once.Do(func() { close(d.natReady) })
		if err != nil {
			d.log.WithError(err).Warn("NAT discovery failed")
			continue
		}
		d.natMu.Lock()
		d.nat, d.natKnown = nat, true
		d.natMu.Unlock()
		d.log.WithFields(logrus.Fields{"nat": nat.String(), "mapping": nat.Mapping, "allocation": nat.Allocation}).Info("NAT classified")
		if err := d.rv.SetNAT(nat); err != nil {
			d.log.WithError(err).Debug("NAT report not sent")
		}
	}
}

// onRegistered hands discovery the server's endpoints; it only needs the
// latest.
func (d *Daemon) onRegistered(udp []netip.AddrPort) { putNewest(d.discover, udp) }

// natWait bounds how long punching waits for the first NAT discovery: a
// strategy chosen without it is usually wrong for symmetric NATs.
const natWait = 3 * time.Second

// awaitNAT waits for the first NAT discovery, at most natWait.
func (d *Daemon) awaitNAT(ctx context.Context) {
	select {
	case <-d.natReady:
	case <-time.After(natWait):
	case <-ctx.Done():
	}
}

// selfNAT returns this daemon's NAT as last classified (zero if unknown).
func (d *Daemon) selfNAT() punch.NAT {
	n, _ := d.classifiedNAT()
	return n
}

func (d *Daemon) classifiedNAT() (punch.NAT, bool) {
	d.natMu.Lock()
	defer d.natMu.Unlock()
	return d.nat, d.natKnown
}

// punchUDP runs the UDP half of a punch session and sends the resulting
// stream, if any, on out. Its session probe also tells the server this
// side is ready, so it runs even when UDP is not used for links.
func (d *Daemon) punchUDP(ctx context.Context, p *peer, pu rendezvous.Punch, id punch.SessionID, role punch.UDPRole,
	scope punch.Scope, box *sessionBox, out chan<- link.Candidate) error {
	sock, err := net.ListenUDP("udp", nil)
	if err != nil {
		return fmt.Errorf("udp socket: %w", err)
	}
	servers := d.rv.UDPServers()
	if len(servers) == 0 {
		sock.Close()
		return fmt.Errorf("no rendezvous UDP endpoint")
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	mapped, err := rendezvous.ProbeSession(pctx, sock, net.UDPAddrFromAddrPort(servers[0]), id, pu.Side)
	cancel()
	if err != nil || !d.useUDP {
		sock.Close()
		if err != nil {
			return fmt.Errorf("session probe: %w", err)
		}
		return nil
	}
	info, ok := box.wait(ctx, udpInfoWait)
	if !ok {
		sock.Close()
		return fmt.Errorf("no UDP instruction from the rendezvous server within %v", udpInfoWait)
	}
	var lan []netip.AddrPort
	if info.PeerLANPort != 0 {
		for _, a := range pu.LAN {
			lan = append(lan, netip.AddrPortFrom(a.Addr(), info.PeerLANPort))
		}
	}
	if !info.PeerUDP.IsValid() && len(lan) == 0 {
		sock.Close()
		return fmt.Errorf("the peer's session socket was not observed")
	}
	if err := scope.Check(info.PeerUDP); err != nil && info.PeerUDP.IsValid() {
		p.log.WithError(err).Debug("udp punch: not punching towards the peer's observed session socket")
	}
	p.log.WithFields(logrus.Fields{"role": role, "mapped": mapped, "peer_udp": info.PeerUDP, "delay": info.Delay}).Debug("punching udp")
	select {
	case <-time.After(info.Delay):
	case <-ctx.Done():
		sock.Close()
		return ctx.Err()
	}
	began := time.Now()
	res, err := punch.PunchUDP(ctx, &punch.UDPConfig{Budget: d.punchBudget}, punch.UDPSession{
		ID:           id,
		Controlling:  d.self.Public.Less(p.key),
		Role:         role,
		Peer:         pu.PeerNAT,
		PeerEndpoint: info.PeerUDP,
		LAN:          lan,
		Stream:       udpStreamCode(d.cfg.Link.UDPStream),
		Scope:        scope,
	}, sock)
	if err != nil {
		return err
	}
	p.log.WithFields(logrus.Fields{"remote": res.Remote, "sent": res.Sent, "took": time.Since(began).Round(time.Millisecond)}).Debug("udp punched")
	conn, err := d.udpStream(ctx, res, id, p)
	if err != nil {
		res.Conn.Close()
		return err
	}
	return sendCandidate(ctx, out, link.Candidate{Conn: conn, Path: pathUDP})
}

// sendCandidate hands c to the link's race, or closes it if the race is
// over.
func sendCandidate(ctx context.Context, out chan<- link.Candidate, c link.Candidate) error {
	select {
	case out <- c:
		return nil
	case <-ctx.Done():
		c.Conn.Close()
		return ctx.Err()
	}
}
