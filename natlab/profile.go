package natlab

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Path is what one direction of a site's uplink does to the packets that
// cross it. The zero value passes every packet at once, unchanged. The
// stages run in this order: the rate limit's queue (tail drop when full),
// random loss, bursty loss, then delay and jitter.
type Path struct {
	// Delay is added to every packet. Default 0.
	Delay time.Duration

	// Jitter adds a further delay between -Jitter and +Jitter (never
	// below zero in total). Unless Reorder is set, packets keep their
	// order: the jitter drifts from one random value to the next over
	// 4×Jitter, so packets close together see nearly the same delay, as
	// behind a real link's changing queue, and packets further apart
	// (pings, round trips) see independent ones. Default 0.
	Jitter time.Duration

	// Reorder draws the jitter afresh for every packet, so that packets
	// overtake each other. Default false.
	Reorder bool

	// LossPercent is the share (0-100) of packets dropped independently
	// at random. Default 0.
	LossPercent float64

	// Burst adds loss that comes in runs (Gilbert–Elliott). Default: none.
	Burst Burst

	// RateBitps limits the direction to this many bits per second
	// (Ethernet frames counted whole), as the bottleneck of an uplink
	// would. Default 0: no limit.
	RateBitps int64

	// QueueBytes bounds the queue in front of the rate limit: a packet
	// that would find more than this many bytes waiting is dropped, so a
	// sender that fills the queue sees its round trip grow by up to
	// QueueBytes*8/RateBitps (bufferbloat) and then loss. Ignored without
	// RateBitps. Default (0): 100 ms worth of RateBitps, at least 64 KiB.
	QueueBytes int
}

// Burst is the Gilbert–Elliott two-state loss model: the path is either
// good or bad, moving from good to bad with probability 1/GoodLen and back
// with probability 1/BadLen at each packet, and dropping a packet with
// probability LossGood or LossBad depending on its state. Runs of loss
// last BadLen packets on average when LossBad is 1. The zero value never
// drops anything. The chain moves per packet of the direction, not per
// unit of time (as in netem): sparse traffic, such as a retransmission
// every few hundred milliseconds, meets a run that spans seconds, and
// bulk traffic a run of a few milliseconds.
type Burst struct {
	GoodLen, BadLen   float64 // mean packets spent in each state, >= 1 when set
	LossGood, LossBad float64 // drop probability (0-1) in each state
}

// BurstLoss returns a Gilbert (LossGood 0, LossBad 1) model whose long-run
// loss is percent, in runs of meanRun packets on average.
func BurstLoss(percent, meanRun float64) Burst {
	if percent <= 0 {
		return Burst{}
	}
	p := percent / 100
	// The bad state's share of packets is BadLen/(GoodLen+BadLen) = p.
	return Burst{GoodLen: meanRun * (1 - p) / p, BadLen: meanRun, LossBad: 1}
}

// LossPercent returns the model's long-run loss in percent.
func (b Burst) LossPercent() float64 {
	if b.GoodLen <= 0 || b.BadLen <= 0 {
		return 0
	}
	bad := b.BadLen / (b.GoodLen + b.BadLen)
	return 100 * (bad*b.LossBad + (1-bad)*b.LossGood)
}

// Profile is what a site's uplink does: each direction's Path and the
// uplink's MTU. See the package documentation for the named profiles.
type Profile struct {
	// Name is for messages; "lan" (like the zero Profile) means no
	// emulator at all.
	Name string

	// Up is the direction from the site to the internet, Down the
	// direction back.
	Up, Down Path

	// MTU, if > 0, is the largest IP packet the uplink carries (at least
	// 576). A larger IPv4 packet with Don't Fragment set is dropped and,
	// unless DropICMP, answered with ICMP "fragmentation needed" from the
	// internet's gateway (203.0.113.1); one without DF is fragmented.
	// Default 0: the devices' 1500.
	MTU int

	// DropICMP makes the uplink a PMTU black hole: oversize packets are
	// dropped and nobody is told. Default false.
	DropICMP bool
}

// Emulated reports whether a site with this profile gets an emulator on
// its uplink: every profile but the zero one and those named "lan". A
// profile with no impairment under another name ("clean") still gets
// one, so that SetProfile can impair it later.
func (p Profile) Emulated() bool {
	return p.Name != "lan" && p != (Profile{}) || p.impaired()
}

func (p Profile) impaired() bool {
	return p.Up != (Path{}) || p.Down != (Path{}) || p.MTU > 0
}

// Verify reports the first problem with p, or nil.
func (p Profile) Verify() error {
	if p.MTU != 0 && (p.MTU < 576 || p.MTU > 1500) {
		return fmt.Errorf("natlab: profile %s: MTU %d: want 576-1500 (or 0)", p.Name, p.MTU)
	}
	for _, d := range []struct {
		name string
		path Path
	}{{"up", p.Up}, {"down", p.Down}} {
		if err := d.path.verify(); err != nil {
			return fmt.Errorf("natlab: profile %s: %s: %w", p.Name, d.name, err)
		}
	}
	return nil
}

func (p Path) verify() error {
	b := p.Burst
	switch {
	case p.Delay < 0 || p.Jitter < 0:
		return errors.New("negative delay or jitter")
	case p.Delay+p.Jitter > time.Minute:
		return errors.New("delay plus jitter over a minute")
	case p.LossPercent < 0 || p.LossPercent > 100 || math.IsNaN(p.LossPercent):
		return fmt.Errorf("loss %v%%: want 0-100", p.LossPercent)
	case p.RateBitps < 0 || p.QueueBytes < 0:
		return errors.New("negative rate or queue")
	case p.RateBitps > 0 && p.RateBitps < 8000:
		return fmt.Errorf("rate %d bit/s: want at least 8000", p.RateBitps)
	case b != (Burst{}) && (b.GoodLen < 1 || b.BadLen < 1):
		return errors.New("burst: GoodLen and BadLen must be at least 1")
	case b.LossGood < 0 || b.LossGood > 1 || b.LossBad < 0 || b.LossBad > 1:
		return errors.New("burst: loss probabilities must be within 0-1")
	}
	return nil
}

// RoundTrip returns the nominal round trip between peers at a site with
// profile p and one with profile q: the four uplink crossings' delays,
// without jitter, queueing or the lab's own fraction of a millisecond.
// With q the zero Profile it is the round trip to the server.
func (p Profile) RoundTrip(q Profile) time.Duration {
	return p.Up.Delay + q.Down.Delay + q.Up.Delay + p.Down.Delay
}

// Capacity returns the bottleneck rate, in bit/s, from a site with
// profile p to one with profile q, or 0 if neither uplink limits it.
func (p Profile) Capacity(q Profile) int64 {
	a, b := p.Up.RateBitps, q.Down.RateBitps
	switch {
	case a == 0:
		return b
	case b == 0:
		return a
	}
	return min(a, b)
}

// PathStats counts what one direction of an emulated uplink has done
// since the site was built.
type PathStats struct {
	Frames, Bytes int64 // passed on, fragments counted one by one
	DroppedQueue  int64 // the rate limit's queue was full
	DroppedLoss   int64 // random loss
	DroppedBurst  int64 // Gilbert–Elliott loss
	DroppedMTU    int64 // over the MTU with Don't Fragment
	ICMPSent      int64 // "fragmentation needed" sent back
	Fragmented    int64 // packets split to fit the MTU
	// DroppedOverrun counts frames the emulator could not keep up with
	// (its socket's buffer was full): loss that no profile asked for,
	// which a measurement should not blame on the path.
	DroppedOverrun int64
}

// UplinkStats counts both directions of an emulated uplink.
type UplinkStats struct{ Up, Down PathStats }

// queueLimit is the queue bound in bytes that applies with p's rate.
func (p Path) queueLimit() int {
	if p.QueueBytes > 0 {
		return p.QueueBytes
	}
	return max(64<<10, int(p.RateBitps/8/10))
}

// The named profiles describe the path between two peers whose sites both
// have the profile: a packet crosses the sender's uplink up and the
// receiver's down, so the round trip crosses four uplink directions and
// each gets a quarter of the delay, and the one-way loss of a path is
// split evenly between its two uplink crossings. See the package
// documentation.
var profileTable = []struct {
	name string
	rtt  time.Duration
	// jitter is the most the round trip varies, either way.
	jitter  time.Duration
	loss    float64 // one-way path loss, percent
	burst   float64 // mean loss run, packets (0: independent loss)
	rate    int64   // bit/s, each uplink, each direction
	mtu     int
	dropICM bool
	desc    string
}{
	{name: "lan", desc: "no emulator: the lab as it always was"},
	{name: "clean", desc: "an emulator that impairs nothing (measures its own cost; change it later with SetProfile)"},
	{name: "broadband", rtt: 30 * time.Millisecond, loss: 0.1, rate: 100_000_000,
		desc: "home broadband in one region: 30 ms RTT, 0.1% loss, 100 Mbit/s"},
	{name: "intercontinental", rtt: 200 * time.Millisecond, loss: 0.5,
		desc: "peers on two continents: 200 ms RTT, 0.5% loss"},
	{name: "mobile", rtt: 90 * time.Millisecond, jitter: 20 * time.Millisecond, loss: 2, burst: 3,
		rate: 20_000_000, mtu: 1400,
		desc: "LTE: 90 ms RTT ±20 ms, 2% loss in runs of 3, 20 Mbit/s, MTU 1400"},
	{name: "bad-wifi", rtt: 20 * time.Millisecond, loss: 5, burst: 4,
		desc: "busy Wi-Fi: 20 ms RTT, 5% loss in runs of 4"},
	{name: "blackhole-mtu", mtu: 1280, dropICM: true,
		desc: "a tunnelled uplink with MTU 1280 that drops ICMP: a PMTU black hole"},
}

// Profiles returns the names of the named profiles, in a fixed order.
func Profiles() []string {
	names := make([]string, len(profileTable))
	for i, e := range profileTable {
		names[i] = e.name
	}
	return names
}

// DescribeProfile returns a one-line description of a named profile, or "".
func DescribeProfile(name string) string {
	for _, e := range profileTable {
		if e.name == name {
			return e.desc
		}
	}
	return ""
}

// LookupProfile returns the named profile, or an error listing the names.
func LookupProfile(name string) (Profile, error) {
	for _, e := range profileTable {
		if e.name != name {
			continue
		}
		// Per uplink direction: a quarter of the round trip's delay and
		// jitter, and the loss that, met twice, makes the path's.
		path := Path{
			Delay:     e.rtt / 4,
			Jitter:    e.jitter / 4,
			RateBitps: e.rate,
		}
		perHop := 100 * (1 - math.Sqrt(1-e.loss/100))
		if e.burst > 0 {
			path.Burst = BurstLoss(perHop, e.burst)
		} else {
			path.LossPercent = perHop
		}
		return Profile{Name: name, Up: path, Down: path, MTU: e.mtu, DropICMP: e.dropICM}, nil
	}
	return Profile{}, fmt.Errorf("natlab: unknown profile %q (want one of %s)", name, strings.Join(Profiles(), ", "))
}
