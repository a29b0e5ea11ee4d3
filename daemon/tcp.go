package daemon

import (
	"context"
	"net"
	"net/netip"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// tcpWindow is how many predicted ports a TCP spray covers: each is a
// concurrent connect, so it stays smaller than the UDP window.
const tcpWindow = 24

// punchTCP runs the TCP half of a punch session: on-link LAN candidates
// from the shared port, and the public side by role. Connections go to raw
// (the shared port's acceptor delivers there too). It closes probed once
// any TCP session probe is done.
func (d *Daemon) punchTCP(ctx context.Context, p *peer, pu rendezvous.Punch, id punch.SessionID, role punch.TCPRole,
	scope punch.Scope, box *sessionBox, raw chan<- net.Conn, probed chan<- struct{}) {
	var once sync.Once
	markProbed := func() { once.Do(func() { close(probed) }) }
	if role != punch.TCPConnectFixed {
		// Only connect-fixed sends a TCP probe the UDP step must wait for.
		markProbed()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	// Deferred after wg.Wait, so it runs first: a connect-fixed role that
	// gave up early must not hold the UDP half back.
	defer markProbed()
	run := func(port int, cands []netip.AddrPort) {
		wg.Go(func() { punch.TCP(ctx, &punch.Config{Budget: d.punchBudget}, port, id, cands, raw) })
	}
	shared := d.acceptor.Port()
	if len(pu.LAN) > 0 {
		run(shared, pu.LAN)
	}
	switch role {
	case punch.TCPSimultaneous:
		run(shared, []netip.AddrPort{pu.Public})
	case punch.TCPConnectFixed:
		// A port of our own for this session: the server's view of it is
		// the base of the peer's prediction, and our connect from it to
		// the peer gets the next port. Its listener catches the peer's
		// SYNs should they arrive between our attempts.
		ln, err := punch.Listen(ctx, ":0")
		if err != nil {
			p.log.WithError(err).Debug("tcp punch: no fixed port")
			return
		}
		acc := punch.NewAcceptor(ln, nil)
		defer acc.Register(ctx, id, raw)()
		wg.Go(func() { acc.Serve(ctx) })
		conn, err := punch.DialFrom(ctx, acc.Port(), d.cfg.Rendezvous.Address)
		if err != nil {
			p.log.WithError(err).Debug("tcp punch: probe dial failed")
			return
		}
		mapped, err := rendezvous.ProbeSessionTCP(ctx, conn, id, pu.Side)
		if err != nil {
			p.log.WithError(err).Debug("tcp punch: probe failed")
			return
		}
		p.log.WithField("mapped", mapped).Debug("tcp punch: connecting from a predicted port")
		run(acc.Port(), []netip.AddrPort{pu.Public})
		markProbed()
		<-ctx.Done()
	case punch.TCPSprayWindow:
		info, ok := box.wait(ctx, udpInfoWait)
		if !ok || !info.PeerTCP.IsValid() {
			p.log.Debug("tcp punch: the peer's TCP probe was not observed")
			return
		}
		if err := scope.Check(info.PeerTCP); err != nil {
			p.log.WithError(err).Debug("tcp punch: not spraying")
			return
		}
		var cands []netip.AddrPort
		for _, port := range punch.PredictPorts(pu.PeerNAT, info.PeerTCP.Port(), tcpWindow, 0) {
			cands = append(cands, netip.AddrPortFrom(info.PeerTCP.Addr(), port))
		}
		p.log.WithFields(logrus.Fields{"base": info.PeerTCP, "ports": len(cands)}).Debug("tcp punch: spraying predicted ports")
		run(shared, cands)
	}
}
