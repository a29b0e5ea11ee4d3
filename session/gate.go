package session

import (
	"context"
	"time"

	"github.com/warren-p2p/warren/link"
)

// holdBase and holdPerRTT bound how long the race holds a direct TCP
// candidate back for the UDP path's measurement and link: on a path of no
// delay 2s, plus 16 round trips (the session probe, the server's second
// step, the punch, the probe train's wait and the UDP link's handshakes,
// with a retransmission or two). The peer's end of the held connection
// waits for the nomination link.Config.HandshakeTimeout (10s by default)
// from the start of its handshake, so this stays well below it.
const (
	holdBase   = 2 * time.Second
	holdPerRTT = 16
	holdMax    = 6 * time.Second
)

// tcpGate stands between a race's direct TCP paths and link.Establish at
// the controlling end of a session whose UDP path measures the path
// (udp_stream "auto"). On a long lossy path (Choice.PreferUDP) a TCP link
// is loss-limited, so the gate holds TCP candidates until the UDP link has
// won or failed; on other paths it lets them through as soon as the
// measurement is in (and the UDP path then gives them a head start), and
// on a path known to be short (a LAN: by the server's estimate, or by the
// connection's own round trip) at once, so that a LAN links as fast as it
// did before measurements. It holds only the nomination (link.Candidate's
// Hold): a held candidate's TLS handshake runs meanwhile, so that once let
// go it wins at once instead of two round trips later.
type tcpGate struct {
	s   *Session
	in  chan link.Candidate
	out chan<- link.Candidate
}

// hold reports whether candidate c must wait, as far as is known now.
func (g *tcpGate) hold(c link.Candidate) bool {
	v := g.s.verdict
	select {
	case <-v.gone:
		return false
	default:
	}
	if v.isDecided() {
		return v.choice().PreferUDP
	}
	// Not measured yet: a path known to be short, by the server's
	// estimate or by the connection's own round trip, is no place for KCP
	// (ChooseStream keeps QUIC below about 2 ms), nor for the wait.
	rtt := g.s.RTT
	if rtt == 0 {
		rtt, _ = tcpRTT(c.Conn)
	}
	return rtt == 0 || !shortPath(rtt)
}

// run passes the candidates from in to out, each with a Hold that waits as
// hold says, until in is closed or ctx ends (then it closes what it has).
func (g *tcpGate) run(ctx context.Context) {
	for {
		select {
		case c, ok := <-g.in:
			if !ok {
				return
			}
			since := time.Now()
			c.Hold = func(ctx context.Context) bool { return g.wait(ctx, c, since) }
			select {
			case g.out <- c:
			case <-ctx.Done():
				c.Conn.Close()
			}
		case <-ctx.Done():
			return
		}
	}
}

// wait returns true once candidate c, which arrived at since, need not (or
// may no longer) wait, false if ctx ends first.
func (g *tcpGate) wait(ctx context.Context, c link.Candidate, since time.Time) bool {
	limit := time.NewTimer(time.Until(since.Add(min(g.s.scaled(holdBase, holdPerRTT), holdMax))))
	defer limit.Stop()
	decided, gone := g.s.verdict.decided, g.s.verdict.gone
	for g.hold(c) {
		select {
		case <-decided:
			decided = nil
		case <-gone:
			gone = nil
		case <-limit.C:
			return g.pass(since)
		case <-ctx.Done():
			return false
		}
	}
	return g.pass(since)
}

// pass records a candidate let through after being held since since.
func (g *tcpGate) pass(since time.Time) bool {
	g.s.verdict.passedTCP(time.Since(since))
	return true
}
