package natlab

import (
	"container/heap"
	"math/rand/v2"
	"time"
)

// This file is the emulator's pure core: what happens to each packet of one
// direction of an uplink, decided when it arrives, with time passed in so
// that tests need neither a clock nor a kernel.

// verdict is what the shaper does with a packet.
type verdict uint8

const (
	pass      verdict = iota
	dropQueue         // the rate limit's queue was full (tail drop)
	dropLoss          // random loss
	dropBurst         // Gilbert–Elliott loss
)

// shaper applies a Path to the packets of one direction, in arrival order.
// Times are durations since an arbitrary epoch, on a monotonic clock. It is
// not safe for concurrent use.
type shaper struct {
	path Path
	rnd  *rand.Rand

	bad       bool          // Gilbert–Elliott state
	busyUntil time.Duration // when the rate limit's queue will have drained
	lastExit  time.Duration // latest release time handed out, for ordering

	// The jitter of an order-keeping path moves linearly from jitFrom at
	// jitStart to jitTo at jitEnd, then on to a new random target.
	jitStart, jitEnd, jitFrom, jitTo time.Duration
}

func newShaper(p Path, rnd *rand.Rand) *shaper { return &shaper{path: p, rnd: rnd} }

// setPath changes the path from the next packet on. Packets already
// scheduled keep their times, and packets after them still leave after
// them unless the new path reorders.
func (s *shaper) setPath(p Path) { s.path = p }

// admit decides the fate of a packet of size bytes arriving at now: when it
// leaves (at >= now), or why it is dropped.
func (s *shaper) admit(now time.Duration, size int) (at time.Duration, v verdict) {
	p := &s.path
	at = now
	if p.RateBitps > 0 {
		start := max(now, s.busyUntil)
		backlog := int64(start-now) * p.RateBitps / 8 / int64(time.Second)
		if backlog+int64(size) > int64(p.queueLimit()) {
			return 0, dropQueue
		}
		s.busyUntil = start + time.Duration(int64(size)*8*int64(time.Second)/p.RateBitps)
		at = s.busyUntil
	}
	if p.LossPercent > 0 && s.rnd.Float64()*100 < p.LossPercent {
		return 0, dropLoss
	}
	if s.burstDrop() {
		return 0, dropBurst
	}
	at += p.Delay
	if p.Jitter > 0 {
		at = max(at+s.jitter(now), now)
	}
	if !p.Reorder {
		at = max(at, s.lastExit)
	}
	s.lastExit = max(s.lastExit, at)
	return at, pass
}

// jitter returns the jitter of a packet arriving at now, within ±Jitter.
//
// A reordering path draws it afresh for every packet. An order-keeping
// one cannot: a packet drawn early would wait for its predecessor, and at
// a high packet rate every packet would wait for the latest of many
// draws, turning jitter into a constant extra delay of +Jitter. Instead
// the jitter moves between random targets over 4×Jitter each, so it
// changes by at most half the time that passes and successive packets
// keep their order by themselves, while packets more than a few Jitter
// apart (pings, a round trip) see independent values, as they do behind
// the changing queues and radio schedules that cause jitter.
func (s *shaper) jitter(now time.Duration) time.Duration {
	j := s.path.Jitter
	if s.path.Reorder {
		return s.uniform(j)
	}
	seg := 4 * j
	if now >= s.jitEnd+seg || now < s.jitStart {
		s.jitStart, s.jitEnd, s.jitTo = now, now, s.uniform(j)
	}
	for now >= s.jitEnd {
		s.jitStart, s.jitEnd = s.jitEnd, s.jitEnd+seg
		s.jitFrom, s.jitTo = s.jitTo, s.uniform(j)
	}
	off := s.jitFrom + time.Duration(float64(s.jitTo-s.jitFrom)*float64(now-s.jitStart)/float64(seg))
	return min(max(off, -j), j) // a jitter made smaller since
}

// uniform returns a duration drawn uniformly from [-j, +j].
func (s *shaper) uniform(j time.Duration) time.Duration {
	return time.Duration(s.rnd.Int64N(int64(2*j)+1)) - j
}

// burstDrop moves the Gilbert–Elliott chain one packet on and reports
// whether that packet is lost.
func (s *shaper) burstDrop() bool {
	b := &s.path.Burst
	if b.GoodLen <= 0 || b.BadLen <= 0 {
		return false
	}
	if s.bad {
		s.bad = s.rnd.Float64() >= 1/b.BadLen
	} else {
		s.bad = s.rnd.Float64() < 1/b.GoodLen
	}
	loss := b.LossGood
	if s.bad {
		loss = b.LossBad
	}
	return loss > 0 && s.rnd.Float64() < loss
}

// frame is one Ethernet frame held by the emulator.
type frame struct {
	buf []byte // frameCap bytes; the frame is buf[:n]
	n   int
	at  time.Duration // release time
	seq uint64        // arrival order, to break ties
}

// frameCap is the largest frame the emulator carries: offloads are off on
// every device it touches, so frames are at most 1514 bytes.
const frameCap = 2048

// frameQueue holds frames until their release time, earliest first (in
// arrival order among equal times). It is a heap rather than a FIFO so
// that a reordering path needs nothing else.
type frameQueue []*frame

func (q frameQueue) Len() int { return len(q) }
func (q frameQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q frameQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *frameQueue) Push(x any)   { *q = append(*q, x.(*frame)) }
func (q *frameQueue) Pop() any {
	old := *q
	f := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return f
}

func (q *frameQueue) push(f *frame) { heap.Push(q, f) }

// popDue moves the frames due at now to out, earliest first, until out
// holds limit frames; it returns out and the release time of the next
// frame still held, or -1 if none.
func (q *frameQueue) popDue(now time.Duration, out []*frame, limit int) ([]*frame, time.Duration) {
	for q.Len() > 0 && len(out) < limit {
		if (*q)[0].at > now {
			return out, (*q)[0].at
		}
		out = append(out, heap.Pop(q).(*frame))
	}
	if q.Len() > 0 {
		return out, (*q)[0].at
	}
	return out, -1
}
