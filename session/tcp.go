package session

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// tcpWindow is how many predicted ports a TCP spray covers: each is a
// concurrent connect, so it stays smaller than the UDP window.
const tcpWindow = 24

// Inbound is the passive half of direct TCP: the peer's punched
// connections arriving at the shared port. It takes them whether or not
// this end punches TCP itself.
type Inbound struct {
	// Acceptor serves the shared port. Required.
	Acceptor *punch.Acceptor
}

func (in *Inbound) Name() string       { return PathTCP }
func (in *Inbound) Plan(*Session) Plan { return Plan{Passive: true} }

func (in *Inbound) Run(ctx context.Context, s *Session, out *Out) error {
	defer in.Acceptor.Register(ctx, s.ID, out.Sink())()
	<-ctx.Done()
	return ctx.Err()
}

// TCP is the active half of direct TCP: connects from the shared port to
// the peer's on-link LAN endpoints, and to its public side by the
// strategy's TCP role (its NAT's punched endpoint, predicted ports, or the
// port mapping its router made). Under the role punch.TCPAcceptMapped
// Inbound takes what arrives at our mapping; this path only stays in the
// race for as long as the peer keeps connecting to it.
type TCP struct {
	// Acceptor serves the shared port the connects leave from. Required.
	Acceptor *punch.Acceptor
	// Server is the rendezvous server's address, for a connect-fixed
	// role's TCP session probe. Required.
	Server string
	// Budget paces the connect attempts with every other punch of the
	// daemon (punch.Config.Budget). Nil: no pacing.
	Budget *punch.Budget
}

func (t *TCP) Name() string { return PathTCP }

// Plan: a connect-fixed role's TCP session probe must reach the server
// before the UDP one (TCPProbed).
func (t *TCP) Plan(s *Session) Plan {
	if s.Strategy.TCP == punch.TCPConnectFixed {
		return Plan{Reaches: TCPProbed}
	}
	return Plan{}
}

func (t *TCP) Run(ctx context.Context, s *Session, out *Out) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	// Deferred after wg.Wait, so it runs first: a connect-fixed role that
	// gave up early must not hold the UDP path back.
	defer out.Reached()
	run := func(port int, cands []netip.AddrPort) {
		wg.Go(func() { punch.TCP(ctx, t.config(), port, s.ID, cands, out.Sink()) })
	}
	shared := t.Acceptor.Port()
	if len(s.PeerLAN) > 0 {
		run(shared, s.PeerLAN)
	}
	switch s.Strategy.TCP {
	case punch.TCPSimultaneous:
		run(shared, []netip.AddrPort{s.PeerPublic})
	case punch.TCPConnectMapped:
		// The peer's router forwards this to its shared port: a plain
		// connect, retried like a punch until the peer's session is
		// registered there.
		run(shared, []netip.AddrPort{s.PeerMappedTCP})
	case punch.TCPAcceptMapped:
		// The peer connects to our mapping until the race ends, however
		// late its session starts: counting as done here would leave
		// the connection only the race's grace to arrive in.
		<-ctx.Done()
		return ctx.Err()
	case punch.TCPConnectFixed:
		return t.connectFixed(ctx, s, out)
	case punch.TCPSprayWindow:
		return t.spray(ctx, s, out, run)
	}
	return nil
}

// connectFixed punches from a port of our own for this session: the
// server's view of it is the base of the peer's prediction, and our
// connect from it to the peer gets the next port. Its listener catches the
// peer's SYNs should they arrive between our attempts.
func (t *TCP) connectFixed(ctx context.Context, s *Session, out *Out) error {
	ln, err := punch.Listen(ctx, ":0")
	if err != nil {
		return fmt.Errorf("tcp punch: no fixed port: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer out.Reached() // before the wait for Serve, which ends with ctx
	acc := punch.NewAcceptor(ln, nil)
	defer acc.Register(ctx, s.ID, out.Sink())()
	wg.Go(func() { acc.Serve(ctx) })
	conn, err := punch.DialFrom(ctx, acc.Port(), cmp.Or(s.Server, t.Server))
	if err != nil {
		return fmt.Errorf("tcp punch: probe dial: %w", err)
	}
	mapped, err := rendezvous.ProbeSessionTCP(ctx, conn, s.ID, s.Side)
	if err != nil {
		return fmt.Errorf("tcp punch: probe: %w", err)
	}
	s.Log.WithField("mapped", mapped).Debug("tcp punch: connecting from a predicted port")
	wg.Go(func() { punch.TCP(ctx, t.config(), acc.Port(), s.ID, []netip.AddrPort{s.PeerPublic}, out.Sink()) })
	out.Reached()
	<-ctx.Done()
	return ctx.Err()
}

// spray connects to a window of the peer's predicted ports, from the base
// its TCP session probe gave the server.
func (t *TCP) spray(ctx context.Context, s *Session, out *Out, run func(int, []netip.AddrPort)) error {
	info, ok := s.UDP.Wait(ctx, stepWait)
	if !ok || !info.PeerTCP.IsValid() {
		return errNoPeerTCPProbe
	}
	if err := s.Scope.Check(info.PeerTCP); err != nil {
		return fmt.Errorf("tcp punch: not spraying: %w", err)
	}
	var cands []netip.AddrPort
	for _, port := range punch.PredictPorts(s.PeerNAT, info.PeerTCP.Port(), tcpWindow, 0) {
		cands = append(cands, netip.AddrPortFrom(info.PeerTCP.Addr(), port))
	}
	s.Log.WithFields(logrus.Fields{"base": info.PeerTCP, "ports": len(cands)}).Debug("tcp punch: spraying predicted ports")
	run(t.Acceptor.Port(), cands)
	return nil
}

// config is the punch.Config of every connect of the path.
func (t *TCP) config() *punch.Config { return &punch.Config{Budget: t.Budget} }

var errNoPeerTCPProbe = errors.New("tcp punch: the peer's TCP probe was not observed")
