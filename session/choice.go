package session

import (
	"fmt"
	"sync"
	"time"

	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/transport"
)

// Choice is what a session's UDP path measured of the path to the peer and
// what it chose from it: the stream below a UDP link and, at the
// controlling end, whether the race held direct TCP back for it.
type Choice struct {
	// Punched is true once the UDP punch nominated a path; the rest is
	// zero before.
	Punched bool
	// Quality is what the controlling end's probe train measured (both
	// ends know it: it travels in the nomination). Sent 0: not measured
	// (a stream forced by udp_stream, or a peer before probe trains).
	Quality punch.Quality
	// Stream is the stream the link runs over the punched socket.
	Stream transport.StreamKind
	// Lossy is true when the train lost probes and ChooseStream picked
	// KCP for the path.
	Lossy bool
	// PreferUDP is true on a lossy path of at least preferUDPMinRTT: a
	// TCP link there is loss-limited (each loss costs it round trips), so
	// the race prefers the UDP link. Elsewhere the race prefers direct
	// TCP, which the lab measured faster on short lossy paths and on
	// clean ones (docs/benchmarks.md).
	PreferUDP bool
	// HeldTCP is how long the race held direct TCP candidates back for
	// the measurement or the UDP link (controlling end only).
	HeldTCP time.Duration
	// RacedTCP is true when direct TCP was in the race: only then was
	// there a TCP link to prefer the UDP one to.
	RacedTCP bool
}

// LossPercent is the share of the train's probes that got no answer.
func (c Choice) LossPercent() float64 {
	if c.Quality.Sent == 0 {
		return 0
	}
	return 100 * float64(c.Quality.Lost) / float64(c.Quality.Sent)
}

// Reason says in a sentence why the link runs over what it does, for
// status; "" if the UDP path punched nothing.
func (c Choice) Reason(winner string) string {
	if !c.Punched {
		return ""
	}
	if c.Quality.Sent == 0 && c.Quality.RTT > 0 {
		return fmt.Sprintf("udp stream %s for a %.1f ms path (the server's estimate; no probe train: no TCP link to choose between)",
			c.Stream, float64(c.Quality.RTT.Microseconds())/1000)
	}
	if c.Quality.Sent == 0 {
		return fmt.Sprintf("udp stream %s (not measured: set by udp_stream, or the peer does not measure)", c.Stream)
	}
	s := fmt.Sprintf("probe train: %d of %d lost, round trip %.1f ms: udp stream %s", c.Quality.Lost, c.Quality.Sent,
		float64(c.Quality.RTT.Microseconds())/1000, c.Stream)
	switch {
	case !c.RacedTCP:
	case c.PreferUDP && winner == PathUDP:
		s += "; lossy long path, so the UDP link was preferred to direct TCP (a TCP link is loss-limited there)"
	case c.PreferUDP:
		s += "; lossy long path: the UDP link was preferred, but " + winner + " won"
	case c.Lossy:
		s += fmt.Sprintf("; lossy but shorter than %v: direct TCP keeps its head start (faster than KCP there in the lab)", preferUDPMinRTT)
	}
	return s
}

// preferUDPMinRTT is the shortest round trip on which a lossy path makes
// the race prefer the UDP link. In the lab, on "bad-wifi" (20 ms, 5% in
// runs) the direct TCP link carried 67-154 Mbit/s and KCP 39-66; on
// "mobile" (90 ms, 2% in runs) both 12-14; the longer the path, the more
// round trips each loss costs a TCP link.
const preferUDPMinRTT = 50 * time.Millisecond

// tcpHeadStart is how long a UDP candidate waits, on a path where the
// race prefers TCP, after direct TCP candidates were let through: enough
// for TLS and the nomination over them (about 2.5 round trips).
func tcpHeadStart(rtt time.Duration) time.Duration { return 3*rtt + 50*time.Millisecond }

// verdict is a session's Choice while the race runs: the UDP path sets it,
// and the race's TCP gate waits on it.
type verdict struct {
	decided chan struct{} // closed once the UDP path chose, or gave up
	gone    chan struct{} // closed once the UDP candidate is gone (failed)

	decideOnce, goneOnce sync.Once

	mu       sync.Mutex // guards c, passed and racedTCP
	c        Choice
	passed   bool // the gate let a TCP candidate through
	racedTCP bool // direct TCP is in the race
}

func newVerdict() *verdict {
	return &verdict{decided: make(chan struct{}), gone: make(chan struct{})}
}

// decide records what the UDP punch agreed on.
func (v *verdict) decide(c Choice) {
	v.mu.Lock()
	if !v.isDecided() {
		v.c = c
	}
	v.mu.Unlock()
	v.decideOnce.Do(func() { close(v.decided) })
}

// fail says the UDP path has no candidate (any more): it gave up before
// or after deciding, or its candidate was closed.
func (v *verdict) fail() {
	v.decideOnce.Do(func() { close(v.decided) })
	v.goneOnce.Do(func() { close(v.gone) })
}

func (v *verdict) isDecided() bool {
	select {
	case <-v.decided:
		return true
	default:
		return false
	}
}

// choice returns the Choice so far.
func (v *verdict) choice() Choice {
	v.mu.Lock()
	defer v.mu.Unlock()
	c := v.c
	c.RacedTCP = v.racedTCP
	return c
}

// raced records whether direct TCP is in the race.
func (v *verdict) raced(tcp bool) {
	v.mu.Lock()
	v.racedTCP = tcp
	v.mu.Unlock()
}

// passedTCP records a TCP candidate the gate let through after holding it
// d.
func (v *verdict) passedTCP(d time.Duration) {
	v.mu.Lock()
	v.c.HeldTCP = max(v.c.HeldTCP, d)
	v.passed = true
	v.mu.Unlock()
}

// tcpPassed reports whether the gate let a TCP candidate through.
func (v *verdict) tcpPassed() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.passed
}

// chooseStream is the stream for a path of quality q under
// udp_stream = "auto".
func chooseStream(q punch.Quality) byte {
	if q.Sent == 0 && q.RTT == 0 {
		return streamQUIC // not measured: the stream of old
	}
	if transport.ChooseStream(transport.EstimateQuality(q.Sent, q.Lost, q.RTT)) == transport.StreamKCP {
		return streamKCP
	}
	return streamQUIC
}

// streamKind names a stream code.
func streamKind(code byte) transport.StreamKind {
	if code == streamKCP {
		return transport.StreamKCP
	}
	return transport.StreamQUIC
}
