//go:build linux

package natlab

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
	"time"
)

// pump carries one direction of an uplink: it reads frames from one veth
// end, shapes them (shaper, MTU) and writes them to the other, on two
// goroutines: readLoop decides each frame's fate as it arrives and sends
// frames due at once itself (the unimpaired fast path), writeLoop releases
// the frames held for later.
type pump struct {
	from, to *packetSock
	epoch    time.Time
	icmpFrom netip.Addr // source of "fragmentation needed"
	frames   sync.Pool  // of *frame
	timer    *releaseTimer

	// mu guards all following fields.
	mu       sync.Mutex
	sh       *shaper
	mtu      int
	dropICMP bool
	q        frameQueue
	seq      uint64
	armed    time.Duration // when timer fires; noTimer if disarmed
	stats    PathStats
	// sending is set while writeLoop writes frames it popped: a frame of
	// the fast path must not overtake them. directing is set while
	// readLoop writes frames of the fast path: writeLoop must not
	// overtake them.
	sending, directing bool
}

// noTimer is pump.armed when the timer is disarmed.
const noTimer = time.Duration(math.MaxInt64)

func newPump(from, to *packetSock, icmpFrom netip.Addr) (*pump, error) {
	t, err := newReleaseTimer()
	if err != nil {
		return nil, err
	}
	p := &pump{
		from: from, to: to, epoch: time.Now(), icmpFrom: icmpFrom, timer: t,
		sh:    newShaper(Path{}, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))),
		armed: noTimer,
	}
	p.frames.New = func() any { return &frame{buf: make([]byte, frameCap)} }
	return p, nil
}

// armLocked sets the timer to fire at at (noTimer: never). The timer is
// only set under mu, so that its setting always matches the queue.
func (p *pump) armLocked(at time.Duration) {
	if at == p.armed {
		return
	}
	p.armed = at
	// An error means the timer is closed: the pump is stopping.
	_ = p.timer.arm(at-p.now(), at == noTimer)
}

func (p *pump) now() time.Duration { return time.Since(p.epoch) }

// set changes the direction's path and the uplink's MTU.
func (p *pump) set(path Path, mtu int, dropICMP bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sh.setPath(path)
	p.mtu, p.dropICMP = mtu, dropICMP
}

// counters returns a copy of the direction's counters.
func (p *pump) counters() PathStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.DroppedOverrun += p.from.drops()
	return p.stats
}

// readLoop runs until the socket it reads is closed.
func (p *pump) readLoop() error {
	var rb, wb batch
	slots := make([]*frame, batchLen)
	for i := range slots {
		slots[i] = p.frames.Get().(*frame)
	}
	var direct []*frame
	var back, out [][]byte
	for {
		n, err := p.from.recv(&rb, slots)
		if err != nil {
			return err
		}
		direct, back = direct[:0], back[:0]
		p.mu.Lock()
		now := p.now()
		for i := 0; i < n; i++ {
			f := slots[i]
			slots[i] = p.frames.Get().(*frame)
			direct, back = p.admitLocked(now, f, direct, back)
		}
		p.directing = len(direct) > 0
		p.mu.Unlock()
		// Errors go back the way the oversize frame came.
		if err := p.from.send(&wb, back); err != nil {
			return err
		}
		out = out[:0]
		for _, f := range direct {
			out = append(out, f.buf[:f.n])
		}
		err = p.to.send(&wb, out)
		for _, f := range direct {
			p.frames.Put(f)
		}
		if len(direct) > 0 {
			p.doneDirecting()
		}
		if err != nil {
			return err
		}
	}
}

// doneDirecting lets writeLoop go on after readLoop's fast-path frames
// are out, waking it for the frames it held back meanwhile.
func (p *pump) doneDirecting() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.directing = false
	if p.q.Len() > 0 {
		p.armed = -1
		p.armLocked(p.q[0].at)
	}
}

// admitLocked applies the MTU and the shaper to frame f, which arrived at
// now: it appends it to direct if it is to leave at once, holds it in the
// queue for later, or drops it, and appends any ICMP answer to back.
func (p *pump) admitLocked(now time.Duration, f *frame, direct []*frame, back [][]byte) ([]*frame, [][]byte) {
	if !carriesIP(f.buf[:f.n]) {
		// ARP: on a real uplink it stays on the local link and never
		// meets the WAN's delay or loss; here a lost ARP request would
		// stall a flow for the kernel's second-long retry.
		return append(direct, f), back
	}
	switch checkMTU(f.buf[:f.n], p.mtu) {
	case tooBigDF:
		p.stats.DroppedMTU++
		if !p.dropICMP {
			if r := fragNeeded(f.buf[:f.n], p.mtu, p.icmpFrom); r != nil {
				back = append(back, r)
				p.stats.ICMPSent++
			}
		}
		p.frames.Put(f)
		return direct, back
	case fragments:
		p.stats.Fragmented++
		fragment(f.buf[:f.n], p.mtu, func(b []byte) {
			g := p.frames.Get().(*frame)
			g.n = copy(g.buf, b)
			direct = p.shapeLocked(now, g, direct)
		})
		p.frames.Put(f)
		return direct, back
	}
	return p.shapeLocked(now, f, direct), back
}

// maxHeld bounds the frames a direction holds (a long delay at a high
// rate): beyond it frames are dropped rather than memory exhausted.
const maxHeld = 1 << 16

func (p *pump) shapeLocked(now time.Duration, f *frame, direct []*frame) []*frame {
	at, v := p.sh.admit(now, f.n)
	if v == pass && p.q.Len() >= maxHeld {
		v = dropQueue
	}
	switch v {
	case dropQueue:
		p.stats.DroppedQueue++
	case dropLoss:
		p.stats.DroppedLoss++
	case dropBurst:
		p.stats.DroppedBurst++
	default:
		p.stats.Frames++
		p.stats.Bytes += int64(f.n)
	}
	switch {
	case v != pass:
		p.frames.Put(f)
	case at <= now && p.q.Len() == 0 && !p.sending:
		direct = append(direct, f)
	default:
		p.seq++
		f.at, f.seq = at, p.seq
		p.q.push(f)
		if at < p.armed {
			p.armLocked(at)
		}
	}
	return direct
}

// writeLoop releases held frames at their time until the timer or the
// socket it writes is closed.
func (p *pump) writeLoop() error {
	var wb batch
	var due []*frame
	var out [][]byte
	for {
		p.mu.Lock()
		if p.directing {
			// Held frames come after those readLoop is writing, which
			// wakes this loop again when they are out.
			p.armed = -1
			p.armLocked(noTimer)
			p.mu.Unlock()
			if err := p.timer.wait(); err != nil {
				return err
			}
			continue
		}
		var next time.Duration
		due, next = p.q.popDue(p.now(), due[:0], batchLen)
		p.sending = len(due) > 0
		if next < 0 {
			next = noTimer
		}
		p.armed = -1 // the timer may have fired: always set it again
		p.armLocked(next)
		p.mu.Unlock()
		if len(due) == 0 {
			if err := p.timer.wait(); err != nil {
				return err
			}
			continue
		}
		out = out[:0]
		for _, f := range due {
			out = append(out, f.buf[:f.n])
		}
		err := p.to.send(&wb, out)
		for _, f := range due {
			p.frames.Put(f)
		}
		p.mu.Lock()
		p.sending = false
		p.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// runPumps runs both directions between the veth ends in and out until
// ctx ends or a socket fails, then closes the sockets.
func runPumps(ctx context.Context, in, out *packetSock, up, down *pump) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, fn := range []func() error{up.readLoop, down.readLoop, up.writeLoop, down.writeLoop} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := fn()
			cancel()
			errs <- err
		}()
	}
	<-ctx.Done()
	// Closing the sockets ends the read loops, the timers the write
	// loops.
	in.Close()
	out.Close()
	up.timer.Close()
	down.timer.Close()
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		if err != nil && !errors.Is(err, os.ErrClosed) {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}
