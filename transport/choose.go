package transport

import (
	"math"
	"time"
)

// StreamKind names the protocol a UDP link runs over its punched socket,
// spelled as the [link] udp_stream setting spells it.
type StreamKind string

const (
	StreamQUIC StreamKind = "quic"
	StreamKCP  StreamKind = "kcp"
	// StreamAuto measures each path and lets ChooseStream pick.
	StreamAuto StreamKind = "auto"
)

// PathQuality is what a link layer measured of a path: the round trip and
// the share of packets lost (punch probes, keepalives, retransmissions).
type PathQuality struct {
	RTT         time.Duration
	LossPercent float64
}

const (
	// quicMSS is the payload of quic-go's packets before path MTU
	// discovery grows them: the segment size of the Mathis bound below.
	quicMSS = 1200
	// kcpCeilingBitps is about what one KCP stream carried on the lab's
	// loss-free path (docs/benchmarks.md: 150-200 Mbit/s through a
	// forward in BenchmarkLossy's "lan" rows, up to 440 in the grid's
	// throughput run, CPU-bound); QUIC carried several times more there.
	// The lower figure keeps QUIC on paths up to ~2 ms with no loss seen
	// (a LAN, Wi-Fi included, on a loaded machine), where it is faster.
	kcpCeilingBitps = 200e6
)

// ChooseStream returns the UDP stream protocol expected to carry the most
// over a path of quality q, from what each can reach:
//
//   - QUIC runs quic-go's CUBIC, a loss-based controller that quic-go (as
//     of v0.65) does not let a caller replace, so its ceiling is the
//     Mathis bound, 1.22·MSS/(RTT·√p): ~1 Mbit/s at 100 ms and 2% loss.
//   - KCP, as configured here (no congestion window, see
//     Config.CongestionWindow), is bounded by its send window per round
//     trip and by CPU (kcpCeilingBitps), whatever the loss.
//
// With no measured loss QUIC wins: its batching makes it the faster of the
// two on a clean path. A zero RTT is taken as 1 ms.
func ChooseStream(q PathQuality) StreamKind {
	if q.LossPercent <= 0 {
		return StreamQUIC
	}
	rtt := q.RTT.Seconds()
	if q.RTT <= 0 {
		rtt = time.Millisecond.Seconds()
	}
	p := min(q.LossPercent, 100) / 100
	mathis := 1.22 * quicMSS * 8 / (rtt * math.Sqrt(p))
	d := DefaultConfig()
	kcp := min(kcpCeilingBitps, float64(d.SendWindow*d.MTU*8)/rtt)
	if kcp > mathis {
		return StreamKCP
	}
	return StreamQUIC
}

// LossFloorPercent is the loss EstimateQuality assumes when a probe train
// lost nothing: the loss of a good broadband path (FCC's Measuring
// Broadband America: well under 1%; natlab's "broadband" has 0.1%). A
// train of a few dozen probes cannot tell 0 from 1% (on bursty loss, a
// run of luck hides even 2%), and a loss-based controller's ceiling
// depends on loss far below that, so "none seen" is not "none".
const LossFloorPercent = 0.1

// EstimateQuality turns a probe train's counts into a PathQuality: its
// smallest round trip, and its loss with LossFloorPercent as the least.
// With this floor ChooseStream keeps QUIC where the round trip is under
// about 2 ms (a LAN, a machine's own links) unless the train
// saw real loss, and picks KCP on every longer path, as the lab's
// measurements say it should (transport/doc.go).
func EstimateQuality(sent, lost int, rtt time.Duration) PathQuality {
	loss := LossFloorPercent
	if sent > 0 && lost > 0 {
		loss = max(loss, 100*float64(min(lost, sent))/float64(sent))
	}
	return PathQuality{RTT: rtt, LossPercent: loss}
}
