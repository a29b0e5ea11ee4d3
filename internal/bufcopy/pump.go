package bufcopy

import (
	"io"
	"sync/atomic"
)

// Notifier is a source that calls back once it may have become
// readable, after which a read with a deadline in the past returns what it
// holds (readBuffered): the link's stream (link.Stream.NotifyReadable).
type Notifier interface {
	NotifyReadable(f func())
}

// shrinker is a source that can let go of its empty receive buffer: a
// yamux stream keeps the buffer its frames grew (1 KiB for a short
// request) for as long as it lives, idle or not, and a stream that takes
// a new one for each frame of a bulk transfer would allocate as much.
type shrinker interface {
	Shrink()
}

// States of a Pump.
const (
	pumpIdle    int32 = iota // no goroutine: src had nothing to read
	pumpRunning              // a goroutine copies
	pumpAgain                // one copies, and src may have more since it last found none
	pumpDone                 // src ended, or the copy failed
)

// Pump copies a source that says when it may be readable (Notifier)
// on a goroutine that runs only while the source has data: an idle
// connection's stream side holds no goroutine and no buffer, where a
// copy blocked in Read held both (a goroutine's stack and a 2 KiB buffer,
// a third of what an idle forwarded connection cost).
type Pump struct {
	cp    *Copier
	dst   io.Writer
	src   io.Reader
	state atomic.Int32
	total int64              // only the running goroutine touches it
	end   func(int64, error) // called once, when the copy ends
	done  chan struct{}      // closed after end
}

// Pump starts pumping src, which n is, into dst; end gets the bytes
// copied and the error that ended the copy (nil at EOF).
func (cp *Copier) Pump(dst io.Writer, src io.Reader, n Notifier, end func(int64, error)) *Pump {
	p := &Pump{cp: cp, dst: dst, src: src, end: end, done: make(chan struct{})}
	n.NotifyReadable(p.kick)
	p.kick() // for what came before
	return p
}

// kick has a goroutine copy what src has, unless one is at it. It does
// not block: the link's reader calls it.
func (p *Pump) kick() {
	for {
		switch p.state.Load() {
		case pumpIdle:
			if p.state.CompareAndSwap(pumpIdle, pumpRunning) {
				go p.run()
				return
			}
		case pumpRunning:
			if p.state.CompareAndSwap(pumpRunning, pumpAgain) {
				return
			}
		default:
			return
		}
	}
}

// wait waits for the copy to end. The other direction has ended, and may
// have closed src (a failure closes both), which src need not announce:
// the kick lets a goroutine find out.
func (p *Pump) Wait() {
	p.kick()
	<-p.done
}

func (p *Pump) run() {
	for {
		n, err, more := p.cp.burst(p.dst, p.src)
		p.total += n
		if !more {
			p.state.Store(pumpDone)
			p.end(p.total, err)
			close(p.done)
			return
		}
		if n >= mediumCopyBuf {
			// A transfer is under way: wait for its next frame here,
			// holding no buffer (a zero-length Read waits for data), as a
			// goroutine started per frame would cost it a fifth of its
			// speed. Whatever ends the wait, the burst finds.
			p.src.Read(nil)
			continue
		}
		// After a short burst (a request, a keystroke), src's buffer goes
		// too, and so does this goroutine.
		if s, ok := p.src.(shrinker); ok {
			s.Shrink()
		}
		if p.state.CompareAndSwap(pumpRunning, pumpIdle) {
			return
		}
		p.state.Store(pumpRunning) // it was pumpAgain: look again
	}
}

// burst copies what src has ready to dst, reading without waiting
// (readBuffered) into a pooled buffer for as long as reads find more,
// and moving to a large buffer when a read fills the medium one. more is
// false when src ended (err is nil at EOF) or a read or write failed.
func (cp *Copier) burst(dst io.Writer, src io.Reader) (total int64, err error, more bool) {
	held := cp.get(mediumCopyBuf)
	defer func() { cp.put(held) }()
	for {
		n, rerr := readBuffered(src, *held)
		if n == 0 && rerr == nil {
			return total, nil, true
		}
		if n > 0 {
			w, werr := dst.Write((*held)[:n])
			total += int64(w)
			if werr == nil && w != n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr, false
			}
		}
		if rerr == io.EOF {
			return total, nil, false
		}
		if rerr != nil {
			return total, rerr, false
		}
		if n == len(*held) && n < bigCopyBuf {
			cp.put(held)
			held = cp.get(bigCopyBuf)
		}
	}
}
