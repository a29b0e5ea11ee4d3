package link

import (
	"sync"
	"sync/atomic"
	"time"
)

// closing holds the streams this end has fully closed and the peer has
// not finished: the peer's frames for them are watched (see observe), and
// each has a timer once armed, and the release of its slot (see
// Stream.release) to run when the watch ends.
type closing struct {
	n       atomic.Int32 // len(m), so that observe need not lock
	mu      sync.Mutex
	m       map[uint32]closingStream
	stopped bool // the link has closed
}

type closingStream struct {
	timer   *time.Timer // nil until armed
	release func()
}

// watch starts watching id; release runs when the watch ends (at once if
// the link has closed).
func (c *closing) watch(id uint32, release func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		release()
		return
	}
	if c.m == nil {
		c.m = make(map[uint32]closingStream)
	}
	c.m[id] = closingStream{release: release}
	c.n.Store(int32(len(c.m)))
}

// arm calls f after d if id is still watched then; f must call end.
func (c *closing) arm(id uint32, d time.Duration, f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs, ok := c.m[id]; ok {
		cs.timer = time.AfterFunc(d, f)
		c.m[id] = cs
	}
}

// end stops watching id and reports whether it was watched: only one of
// those who race to end it (peer's frame, timer, Close) acts on it.
func (c *closing) end(id uint32) bool {
	c.mu.Lock()
	cs, ok := c.m[id]
	if ok {
		delete(c.m, id)
		c.n.Store(int32(len(c.m)))
	}
	c.mu.Unlock()
	if !ok {
		return false
	}
	if cs.timer != nil {
		cs.timer.Stop()
	}
	cs.release()
	return true
}

// stop ends every watch, for good: the link has closed, and yamux has
// closed every stream with it.
func (c *closing) stop() {
	c.mu.Lock()
	m := c.m
	c.m = nil
	c.n.Store(0)
	c.stopped = true
	c.mu.Unlock()
	for _, cs := range m {
		if cs.timer != nil {
			cs.timer.Stop()
		}
		cs.release()
	}
}

// streamTable maps the IDs of the streams the link handed out, until they
// are closed, to their wrappers, so that the peer's FIN can be noted on
// its stream (Stream.Read). A FIN that arrives before Accept or Open has
// wrapped its stream is not noted; it matters only if the link then dies
// before the stream is read to its end, and then the stream is reported
// lost, which is the safe side.
type streamTable struct {
	mu sync.Mutex
	m  map[uint32]*Stream
}

func (o *streamTable) add(s *Stream) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = make(map[uint32]*Stream)
	}
	o.m[s.StreamID()] = s
}

func (o *streamTable) remove(id uint32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.m, id)
}

// observe notes on its stream what a frame of the peer's says, before
// yamux handles it: its FIN, or an abort notice (which also wakes a write
// blocked on a window the peer will never open again: SetWriteDeadline
// does not block). It runs on yamux's reader.
func (o *streamTable) observe(h *frameHeader) {
	flags := h.flags()
	if flags&(yamuxFlagFIN|yamuxFlagAbort) == 0 {
		return
	}
	o.mu.Lock()
	s := o.m[h.streamID()]
	o.mu.Unlock()
	if s == nil {
		return
	}
	if flags&yamuxFlagFIN != 0 {
		s.finished.Store(true)
	}
	if flags&yamuxFlagAbort != 0 {
		s.aborted.Store(true)
		s.Stream.SetWriteDeadline(time.Unix(1, 0))
	}
}

// processed tells the reader of a frame's stream that yamux has taken in
// data, an end or a reset for it (frameReader.processed).
func (o *streamTable) processed(h *frameHeader) {
	if h.typ() > yamuxTypeWindowUpdate || !notable(h) {
		return
	}
	o.mu.Lock()
	s := o.m[h.streamID()]
	o.mu.Unlock()
	if s != nil {
		s.notifyReadable()
	}
}

// notable reports whether a frame can make its stream readable: data, an
// end, a reset, or an abort notice.
func notable(h *frameHeader) bool {
	return h.typ() == yamuxTypeData && h.length() > 0 ||
		h.flags()&(yamuxFlagFIN|yamuxFlagRST|yamuxFlagAbort) != 0
}

// notifyAll tells every stream's reader that it may read: the link ended.
func (o *streamTable) notifyAll() {
	o.mu.Lock()
	streams := make([]*Stream, 0, len(o.m))
	for _, s := range o.m {
		streams = append(streams, s)
	}
	o.mu.Unlock()
	for _, s := range streams {
		s.notifyReadable()
	}
}

// clear forgets every stream: the link has closed.
func (o *streamTable) clear() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.m = nil
}
