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
	// KCP for the path: a TCP link would carry TCP over a loss-limited
	// TCP, so the race prefers the UDP link.
	Lossy bool
	// HeldTCP is how long the race held direct TCP candidates back for
	// the measurement or the UDP link (controlling end only).
	HeldTCP time.Duration
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
	if c.Quality.Sent == 0 {
		return fmt.Sprintf("udp stream %s (not measured: set by udp_stream, or the peer does not measure)", c.Stream)
	}
	s := fmt.Sprintf("probe train: %d of %d lost, round trip %.1f ms: udp stream %s", c.Quality.Lost, c.Quality.Sent,
		float64(c.Quality.RTT.Microseconds())/1000, c.Stream)
	switch {
	case c.Lossy && winner == PathUDP:
		s += "; lossy path, so the UDP link was preferred to direct TCP (TCP over a lossy TCP suffers twice)"
	case c.Lossy:
		s += "; lossy path: the UDP link was preferred, but " + winner + " won"
	}
	return s
}

// verdict is a session's Choice while the race runs: the UDP path sets it,
// and the race's TCP gate waits on it.
type verdict struct {
	decided chan struct{} // closed once the UDP path chose, or gave up
	gone    chan struct{} // closed once the UDP candidate is gone (failed)

	decideOnce, goneOnce sync.Once

	mu sync.Mutex // guards c
	c  Choice
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
	return v.c
}

func (v *verdict) addHeld(d time.Duration) {
	v.mu.Lock()
	v.c.HeldTCP = max(v.c.HeldTCP, d)
	v.mu.Unlock()
}

// chooseStream is the stream for a path of quality q under
// udp_stream = "auto".
func chooseStream(q punch.Quality) byte {
	if q.Sent == 0 {
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
