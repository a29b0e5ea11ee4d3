package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
	"github.com/warren-p2p/warren/transport"
)

// stepWait bounds the wait for the session's second step, which the server
// sends within its own UDPWait (1s) of the punch.
const stepWait = 3 * time.Second

// probeTimeout bounds the UDP session probe.
const probeTimeout = 2 * time.Second

// tcpProbeWait is how long the UDP path waits for TCPProbed.
const tcpProbeWait = time.Second

// errNoPeerSocket: the server saw no session socket of the peer's, and the
// peer has no LAN endpoint to try either.
var errNoPeerSocket = errors.New("the peer's session socket was not observed")

// UDP is the direct UDP path: a punched UDP socket carrying QUIC or KCP.
// Its session probe also tells the server this side is ready (the server
// then sends both sides the second step), so it runs even when links do
// not run over UDP.
type UDP struct {
	// Servers returns the rendezvous server's UDP probe endpoints.
	// Required.
	Servers func() []netip.AddrPort
	// ProbeOnly keeps links off UDP: the path sends its session probe and
	// stops.
	ProbeOnly bool
	// Budget paces and caps the punch packets of every session of the
	// daemon together (spray_rate). Nil: a budget of each punch's own at
	// punch's default rate.
	Budget *punch.Budget
	// Stream is the protocol the link runs over the socket, "quic" or
	// "kcp", or "auto": measured per path (a probe train after the punch)
	// and picked by transport.ChooseStream, with direct TCP held back for
	// the UDP link on a lossy path. It counts only at the controlling end,
	// whose choice both ends run. Empty means QUIC.
	Stream string
	// Closing counts UDP links whose close handshake is under way: the
	// daemon waits for it before it exits. Required.
	Closing *sync.WaitGroup
	// Port returns the local port the router maps for UDP
	// (punch.NAT.MappedUDP), which the session socket takes when this
	// end reports a UDP mapping and no other session holds it; 0 or a nil
	// Port: any port.
	Port func() uint16
}

func (u *UDP) Name() string { return PathUDP }

// Plan: the UDP session probe goes after the TCP one (TCPProbed), but a
// TCP path slow to probe holds it back no longer than tcpProbeWait.
func (u *UDP) Plan(s *Session) Plan {
	return Plan{After: TCPProbed, AtMost: s.scaled(tcpProbeWait, 2)}
}

// measures reports whether the path measures the path before it offers a
// link in s, and so may ask the race to hold direct TCP back for it.
func (u *UDP) measures(s *Session) bool {
	return u.Stream == string(transport.StreamAuto) && !u.ProbeOnly && s.Controlling
}

func (u *UDP) Run(ctx context.Context, s *Session, out *Out) (err error) {
	// Whatever ends the path before its candidate is offered, the race
	// must not hold TCP back for it.
	defer func() {
		if err != nil {
			s.verdict.fail()
		}
	}()
	sock, mapped, err := u.probe(ctx, s)
	if err != nil || u.ProbeOnly {
		s.verdict.fail()
		return err
	}
	info, lan, err := awaitPeerSocket(ctx, s)
	if err != nil {
		sock.Close()
		return err
	}
	info.PeerUDP = sameFamily(s, info.PeerUDP, mapped)
	if err := s.Scope.Check(info.PeerUDP); err != nil && info.PeerUDP.IsValid() {
		s.Log.WithError(err).Debug("udp punch: not punching towards the peer's observed session socket")
	}
	s.Log.WithFields(logrus.Fields{"role": s.Strategy.UDP, "mapped": mapped, "peer_udp": info.PeerUDP, "delay": info.Delay}).Debug("punching udp")
	if err := sleep(ctx, info.Delay); err != nil {
		sock.Close()
		return err
	}
	began := time.Now()
	res, err := u.punch(ctx, s, sock, info, lan)
	if err != nil {
		return err
	}
	c := choiceOf(res)
	s.verdict.decide(c)
	s.Log.WithFields(logrus.Fields{"remote": res.Remote, "sent": res.Sent, "took": time.Since(began).Round(time.Millisecond),
		"stream": c.Stream, "probes": res.Quality.Sent, "lost": res.Quality.Lost, "rtt": res.Quality.RTT}).Debug("udp punched")
	conn, err := u.udpStream(ctx, s, res)
	if err != nil {
		res.Conn.Close()
		return err
	}
	// A candidate the link closes (its handshake failed) is gone: the
	// race holds TCP back for it no longer.
	conn.closed = s.verdict.fail
	if !c.PreferUDP && s.verdict.tcpPassed() {
		// The race prefers the TCP candidates the gate has just let
		// through: they get the time to win before this one competes.
		if err := sleep(ctx, tcpHeadStart(res.Quality.RTT)); err != nil {
			conn.Close()
			return err
		}
	}
	return out.Offer(ctx, conn)
}

// punch runs the UDP punch from sock towards the peer's session socket
// (or its router's mapping of it), measuring the path when the stream is
// to be chosen from it.
func (u *UDP) punch(ctx context.Context, s *Session, sock punch.PacketConn, info rendezvous.UDPInfo, lan []netip.AddrPort) (punch.UDPResult, error) {
	var choose func(punch.Quality) byte
	if u.Stream == string(transport.StreamAuto) {
		choose = chooseStream
	}
	peerEP := info.PeerUDP
	if s.PeerMappedUDP.IsValid() {
		// Its router forwards this to its session socket's port.
		peerEP = s.PeerMappedUDP
	}
	return punch.PunchUDP(ctx, &punch.UDPConfig{Budget: u.Budget}, punch.UDPSession{
		ID:           s.ID,
		Controlling:  s.Controlling,
		Role:         s.Strategy.UDP,
		Peer:         s.PeerNAT,
		PeerEndpoint: peerEP,
		LAN:          lan,
		Stream:       streamCode(u.Stream),
		Scope:        s.Scope,
		Choose:       choose,
		Estimate:     untrained(s, choose != nil),
		Short:        shortPath,
	}, sock)
}

// untrained is the punch's Estimate: the server's round trip estimate,
// for a path that needs no probe train, else the zero Quality. The train
// measures loss for two choices: the stream on a short path (QUIC unless
// the LAN loses packets) and, on a long one, whether to prefer the UDP
// link to direct TCP. With no direct TCP in the race and a path the
// server knows to be long, neither is left to make (every long path runs
// KCP), and the train would only cost its round trips.
func untrained(s *Session, choosing bool) punch.Quality {
	if !choosing || s.RTT <= 0 || shortPath(s.RTT) || s.verdict.choice().RacedTCP {
		return punch.Quality{}
	}
	return punch.Quality{RTT: s.RTT}
}

// choiceOf is what a punch's measurement chose: the stream, and whether
// the path is lossy and long enough for the UDP link to be preferred to
// direct TCP.
func choiceOf(res punch.UDPResult) Choice {
	c := Choice{Punched: true, Quality: res.Quality, Stream: streamKind(res.Stream)}
	c.Lossy = res.Quality.Lost > 0 && res.Stream == streamKCP
	c.PreferUDP = c.Lossy && res.Quality.RTT >= preferUDPMinRTT
	return c
}

// shortPath reports whether a path of round trip rtt is short enough for
// its probe train to end early (punch.UDPConfig.ShortTrain pings): one
// where ChooseStream keeps QUIC unless there is loss (a LAN), which only
// heavy loss, showing in a short train too, would change. A LAN's UDP
// link then comes up about as fast as without a train.
func shortPath(rtt time.Duration) bool {
	return transport.ChooseStream(transport.EstimateQuality(0, 0, rtt)) == transport.StreamQUIC
}

// probe opens the session socket and sends its session probe; with
// ProbeOnly, or on error, it closes the socket again.
func (u *UDP) probe(ctx context.Context, s *Session) (*net.UDPConn, netip.AddrPort, error) {
	sock, err := u.listen(s)
	if err != nil {
		return nil, netip.AddrPort{}, fmt.Errorf("udp socket: %w", err)
	}
	servers := u.Servers()
	if len(servers) == 0 {
		sock.Close()
		return nil, netip.AddrPort{}, errors.New("no rendezvous UDP endpoint")
	}
	pctx, cancel := context.WithTimeout(ctx, s.scaled(probeTimeout, 4))
	mapped, err := rendezvous.ProbeSession(pctx, sock, net.UDPAddrFromAddrPort(servers[0]), s.ID, s.Side)
	cancel()
	if err != nil {
		sock.Close()
		return nil, netip.AddrPort{}, fmt.Errorf("session probe: %w", err)
	}
	if u.ProbeOnly {
		sock.Close()
		return nil, mapped, nil
	}
	return sock, mapped, nil
}

// listen opens the session socket: on the port the router maps when this
// end reports a UDP mapping and the port is free, else on any port.
func (u *UDP) listen(s *Session) (*net.UDPConn, error) {
	if u.Port != nil && s.SelfNAT.MappedUDP.IsValid() {
		if port := u.Port(); port != 0 {
			sock, err := net.ListenUDP("udp", &net.UDPAddr{Port: int(port)})
			if err == nil {
				return sock, nil
			}
			// Another session's link holds it: the peer's pings to the
			// mapping reach that socket, which ignores them.
			s.Log.WithError(err).Debug("udp punch: the mapped port is taken; this session's socket is not mapped")
		}
	}
	return net.ListenUDP("udp", nil)
}

// awaitPeerSocket waits for the second step and returns it with the
// peer's session socket at its LAN addresses.
func awaitPeerSocket(ctx context.Context, s *Session) (rendezvous.UDPInfo, []netip.AddrPort, error) {
	wait := s.scaled(stepWait, 4)
	info, ok := s.UDP.Wait(ctx, wait)
	if !ok {
		return info, nil, fmt.Errorf("no UDP instruction from the rendezvous server within %v", wait)
	}
	var lan []netip.AddrPort
	if info.PeerLANPort != 0 {
		for _, a := range s.PeerLAN {
			lan = append(lan, netip.AddrPortFrom(a.Addr(), info.PeerLANPort))
		}
	}
	if !info.PeerUDP.IsValid() && len(lan) == 0 {
		return info, nil, errNoPeerSocket
	}
	return info, lan, nil
}

// sameFamily returns the peer's observed session socket peer if the
// server saw it over the IP family it saw ours (mapped) over, else the
// zero AddrPort. The strategy's role was chosen for NATs classified over
// that family; an endpoint of the other one was seen on the way to the
// server from an IPv6-only peer, or from a dual-stack one by an IPv6-only
// end, which cannot reach IPv4 at all. Such a pair has its IPv6 LAN
// endpoints (and the observed IPv6 endpoint among them) to ping.
func sameFamily(s *Session, peer, mapped netip.AddrPort) netip.AddrPort {
	if !peer.IsValid() || !mapped.IsValid() || peer.Addr().Unmap().Is4() == mapped.Addr().Unmap().Is4() {
		return peer
	}
	s.Log.WithFields(logrus.Fields{"peer_udp": peer, "mapped": mapped}).Debug("udp punch: the peer's session socket was seen over the other IP family; pinging its LAN endpoints only")
	return netip.AddrPort{}
}

// sleep waits d, or returns ctx's error if it ends first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
