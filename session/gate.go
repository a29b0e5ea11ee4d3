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
// waits for our TLS handshake link.Config.HandshakeTimeout (10s by
// default), so this stays well below it.
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
// did before measurements.
type tcpGate struct {
	s   *Session
	in  chan link.Candidate
	out chan<- link.Candidate
}

type heldCandidate struct {
	c     link.Candidate
	since time.Time
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

// run passes candidates from in to out, holding them as hold says, until
// in is closed (then it passes what it holds) or ctx ends (then it closes
// it).
func (g *tcpGate) run(ctx context.Context) {
	q := &heldQueue{g: g, limit: min(g.s.scaled(holdBase, holdPerRTT), holdMax)}
	defer q.close()
	decided, gone := g.s.verdict.decided, g.s.verdict.gone
	expire := time.NewTimer(q.limit)
	defer expire.Stop()
	for {
		var expired <-chan time.Time
		if len(q.held) > 0 {
			expire.Reset(q.limit - time.Since(q.held[0].since))
			expired = expire.C
		}
		select {
		case c, ok := <-g.in:
			if !ok {
				q.release(ctx, true)
				return
			}
			q.held = append(q.held, heldCandidate{c: c, since: time.Now()})
		case <-decided:
			decided = nil
		case <-gone:
			gone = nil
		case <-expired:
		case <-ctx.Done():
			return
		}
		if !q.release(ctx, false) {
			return
		}
	}
}

// heldQueue is what a gate holds, oldest first.
type heldQueue struct {
	g     *tcpGate
	held  []heldCandidate
	limit time.Duration // the longest any candidate is held
}

// release passes every held candidate that need not (or may no longer)
// wait, or all of them; false when ctx ended first.
func (q *heldQueue) release(ctx context.Context, all bool) bool {
	keep := q.held[:0]
	defer func() { q.held = keep }()
	for i, h := range q.held {
		if !all && q.g.hold(h.c) && time.Since(h.since) < q.limit {
			keep = append(keep, h)
			continue
		}
		q.g.s.verdict.passedTCP(time.Since(h.since))
		select {
		case q.g.out <- h.c:
		case <-ctx.Done():
			keep = append(keep, q.held[i:]...)
			return false
		}
	}
	return true
}

// close closes the connections of the candidates still held.
func (q *heldQueue) close() {
	for _, h := range q.held {
		h.c.Conn.Close()
	}
}
