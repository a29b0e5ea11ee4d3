package link

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"github.com/sirupsen/logrus"
)

// Stream is one bidirectional byte stream on a link. It is a net.Conn whose
// CloseWrite and Close behave as shutdown(SHUT_WR) and close(2) do on a TCP
// socket.
type Stream struct {
	*yamux.Stream
	link      *Link
	slots     chan struct{} // nil for streams we opened
	closeOnce sync.Once
	closed    atomic.Bool
	finished  atomic.Bool // the peer's FIN arrived
	released  atomic.Bool // slots has its token back
	readable  atomic.Pointer[func()]
	aborted   atomic.Bool // the peer aborted the stream: its FIN is a reset
}

// Read reads from the stream. yamux ends every stream of a session that
// dies with a plain io.EOF, as if the peer had finished it; only a stream
// the peer did finish ends so here, and one cut off by the link's end
// returns ErrStreamLost, so that a forward resets its connection instead
// of passing on a truncated transfer as a whole one.
//
// A stream the peer aborted (Stream.Abort) reads to the end of what the
// peer sent, then ErrStreamReset, as a TCP socket reads queued data and
// then ECONNRESET. So does a stream the peer reset, or refused.
func (s *Stream) Read(b []byte) (int, error) {
	n, err := s.Stream.Read(b)
	s.link.budget.read(s.StreamID(), n)
	switch {
	case err == io.EOF && s.aborted.Load():
		err = ErrStreamReset
	case err == io.EOF && !s.finished.Load() && !s.closed.Load() && s.link.sess.IsClosed():
		err = ErrStreamLost
	case err == yamux.ErrConnectionReset:
		err = ErrStreamReset
	}
	return n, err
}

// NotifyReadable has f called whenever the stream may have become
// readable: once yamux has taken in data from the peer, or its end or
// reset, and when the link ends. A Read may find nothing (one since took
// it). f must not block: it runs on the link's reader. So a copy from the
// stream needs no goroutine waiting in Read while the stream is idle:
// after f, Read with a read deadline in the past returns what is there.
//
// A zero-length Read waits until the stream has data, has ended or
// failed, without taking any.
func (s *Stream) NotifyReadable(f func()) { s.readable.Store(&f) }

// notifyReadable calls the stream's NotifyReadable function, if any.
func (s *Stream) notifyReadable() {
	if f := s.readable.Load(); f != nil {
		(*f)()
	}
}

// SetReadDeadline sets the read deadline, until Close: Close sets one in
// the past to end every Read, and a caller racing it (a copy that peeks
// with a past deadline and then clears it) must not undo that and leave a
// Read waiting on a closed stream.
func (s *Stream) SetReadDeadline(t time.Time) error {
	if s.closed.Load() {
		return net.ErrClosed
	}
	return s.Stream.SetReadDeadline(t)
}

// SetDeadline is SetReadDeadline and SetWriteDeadline.
func (s *Stream) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.Stream.SetWriteDeadline(t)
}

func (l *Link) newStream(s *yamux.Stream, slots chan struct{}) *Stream {
	l.streams.Add(1)
	st := &Stream{Stream: s, link: l, slots: slots}
	l.open.add(st)
	return st
}

// Write writes to the stream. After a connection-level write timeout yamux
// may still send the frame it reported as failed (advisory GO-2025-3408), so
// the byte stream can no longer be trusted: close the whole link.
func (s *Stream) Write(b []byte) (int, error) {
	if s.aborted.Load() {
		return 0, ErrStreamReset
	}
	n, err := s.Stream.Write(b)
	if err != nil && s.aborted.Load() || err == yamux.ErrConnectionReset {
		err = ErrStreamReset // or woken by observe's deadline
	}
	if errors.Is(err, yamux.ErrConnectionWriteTimeout) {
		s.link.log.Warn("link write timed out; closing link")
		s.link.shutdown()
	}
	return n, err
}

// CloseWrite half-closes the stream: the peer reads EOF, and this end goes
// on reading for as long as the peer sends. Nothing times that out (yamux's
// own close timeout is off): a download that follows an upload's end may
// take as long as it takes.
func (s *Stream) CloseWrite() error {
	if err := s.Stream.Close(); err != nil {
		return fmt.Errorf("link stream %d: close write: %w", s.StreamID(), err)
	}
	return nil
}

// Close closes both directions, as close(2) closes a TCP socket, and
// unblocks pending reads. A FIN goes out, so that a reply written just
// before Close (a refusal, say) still reaches a peer that reads it. The
// peer is reset if it sent, or goes on sending, data that no one will
// read: a peer still sending learns at once, instead of blocking on a
// window we will never open again. A peer that neither sends nor finishes
// its side is reset after StreamCloseTimeout, as Linux ends an orphaned
// TCP connection after tcp_fin_timeout, and the link forgets the stream.
func (s *Stream) Close() error {
	return s.end(func() error {
		if err := s.link.shut(s.Stream, s.release); err != nil {
			return fmt.Errorf("link stream %d: close: %w", s.StreamID(), err)
		}
		return nil
	})
}

// Abort ends the stream as close(2) with SO_LINGER 0 ends a TCP socket:
// the peer's reads end in a reset (ErrStreamReset) instead of
// io.EOF, and its writes fail, so that a transfer cut off on this side
// (its application reset the connection, or went away mid-upload) is
// never taken for a whole one. Unlike a TCP RST, what was written before
// Abort still reaches the peer's reader first: a reply followed by a reset
// is common (a server closing with a request unread) and must arrive.
// Pending reads and writes here return at once. After Close, Abort does
// nothing.
//
// On the wire: a notice (abortFrame), then yamux's FIN after the data it
// has queued; then this end forgets the stream. A peer that does not know
// the notice sees a plain FIN.
func (s *Stream) Abort() error {
	return s.end(func() error {
		s.release() // forgotten here at once, whatever the peer does
		past := time.Unix(1, 0)
		s.Stream.SetReadDeadline(past)
		s.Stream.SetWriteDeadline(past)
		l, id := s.link, s.StreamID()
		// The notice and FIN may wait for the link's writer, which a
		// stalled link holds: whoever aborts (a copy resetting its other
		// side too) must not wait for that.
		l.spawn(func() {
			if err := l.frames.sendControl(abortFrame(id)); err != nil {
				l.log.WithError(err).Debug("stream abort not sent")
				return // the link is failing, and every stream with it
			}
			s.Stream.Close()
			l.frames.drop(id)
			l.kick()
		})
		return nil
	})
}

// end runs how, Close's or Abort's, once, and gives up the stream's
// place in the link's accounting. how must arrange for release to run:
// at once, or once the link forgets the stream.
//
// The link no longer tells the stream's reader what arrives, so end does
// once more: a copy waiting for a notice with no goroutine in Read (a
// forward's idle pump, whose connection is cut off at shutdown) must find
// the stream closed, or it would wait for ever.
func (s *Stream) end(how func() error) error {
	var err error
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.link.open.remove(s.StreamID())
		s.link.budget.forget(s.StreamID())
		err = how()
		s.link.streams.Add(-1)
		s.notifyReadable()
	})
	return err
}

// release gives back the stream's slot (MaxStreams), once. A stream closed
// here that the peer has not finished keeps its slot until the link
// forgets it: otherwise a peer that never finishes the streams we close
// would have yamux hold any number of them for StreamCloseTimeout.
func (s *Stream) release() {
	if s.slots != nil && s.released.CompareAndSwap(false, true) {
		<-s.slots
	}
}

// shut fully closes s (see Stream.Close); release runs once the link
// forgets it.
func (l *Link) shut(s *yamux.Stream, release func()) error {
	id := s.StreamID()
	// Watch the peer's frames from before our FIN goes out, so that none
	// that answers it goes unseen.
	l.closing.watch(id, release)
	err := s.Close()
	// yamux's Close only half-closes; a reader blocked on a peer that never
	// closes would hang without this. It also makes the Read below return
	// at once.
	s.SetReadDeadline(time.Unix(1, 0))
	var b [1]byte
	switch n, rerr := s.Read(b[:]); {
	case n > 0:
		// Data is waiting that no one will read: reset, as TCP does.
		l.abort(id)
	case errors.Is(rerr, yamux.ErrTimeout):
		// The peer has not finished. Its FIN ends the watch (and yamux
		// forgets the stream); data from it, or the timer, resets it.
		l.closing.arm(id, l.cfg.StreamCloseTimeout, func() {
			if l.closing.end(id) {
				l.abort(id)
			}
		})
	default:
		// io.EOF: the peer had finished, so our FIN finished the stream and
		// yamux has forgotten it. ErrConnectionReset: so had its reset.
		l.closing.end(id)
	}
	return err
}

// abort resets stream id: the peer is sent a RST, and yamux forgets the
// stream as if the peer had sent one.
func (l *Link) abort(id uint32) {
	l.closing.end(id)
	l.budget.forget(id)
	l.frames.drop(id)
	l.kick()
	if err := l.frames.reset(id); err != nil {
		// The link cannot write, so it is failing, and every stream with it.
		l.log.WithError(err).Debug("stream reset not sent")
	}
}

// observe is shown each frame header the peer sends (frameReader.observe).
// It ends the watch on a stream we closed once the peer finishes it too,
// and resets the stream if the peer sends data into it instead, as TCP
// answers data for a closed socket.
func (l *Link) observe(h *frameHeader) (swallow bool) {
	if h.typ() > yamuxTypeWindowUpdate {
		return false // not a stream's frame
	}
	swallow = l.account(h)
	id := h.streamID()
	l.open.observe(h)
	if swallow {
		return true
	}
	if l.closing.n.Load() == 0 {
		return false
	}
	switch {
	case h.flags()&(yamuxFlagFIN|yamuxFlagRST) != 0:
		// yamux forgets the stream when it handles this frame.
		l.closing.end(id)
	case h.typ() == yamuxTypeData && h.length() > 0 && l.closing.end(id):
		// yamux reads a reset in the frame's place (no kick needed), and
		// never buffers data no one will read.
		l.resetPeer(id)
		return true
	}
	return false
}

// resetPeer sends the peer a reset of stream id from a goroutine of its
// own: observe runs on the reader, which must never wait for the writer,
// or two ends doing so would both stop reading.
func (l *Link) resetPeer(id uint32) {
	l.spawn(func() {
		if err := l.frames.reset(id); err != nil {
			l.log.WithError(err).Debug("stream reset not sent")
		}
	})
}

// account keeps the budget's count of the peer's unread bytes (see
// budget) and reports whether to swallow the frame: one that would take
// the link over ReceiveBudget. yamux then reads a reset of the stream in
// its place and never buffers the body, and the peer is sent a reset.
// What the stream holds from before stays counted until the stream ends
// here: until then it is in memory, whoever holds the stream.
func (l *Link) account(h *frameHeader) (swallow bool) {
	id := h.streamID()
	if h.flags()&yamuxFlagSYN != 0 {
		l.budget.open(id)
	}
	if h.typ() != yamuxTypeData || h.length() == 0 || !l.budget.received(id, int64(h.length())) {
		return false
	}
	if h.flags()&yamuxFlagSYN != 0 {
		l.budget.forget(id) // yamux never learns of the stream
	}
	l.overBudget.refused("peer exceeded its receive budget; stream reset", logrus.Fields{
		"receive_budget": l.cfg.ReceiveBudget,
		"buffered":       l.budget.buffered(),
	})
	l.resetPeer(id)
	return true
}

// kick has the peer send us a frame, a ping's answer, so that yamux's Read,
// blocked at a boundary on a quiet link, returns and a queued drop goes in
// now rather than with the next keepalive. One kick at a time is enough:
// a drop queued while a ping is out goes in when its answer is read,
// unless the answer was read already, which the loop checks for.
func (l *Link) kick() {
	if !l.kicking.CompareAndSwap(false, true) {
		return
	}
	started := l.spawn(func() {
		for {
			_, err := l.Ping()
			l.kicking.Store(false)
			if err != nil || !l.frames.in.dropping() || !l.kicking.CompareAndSwap(false, true) {
				return
			}
		}
	})
	if !started {
		l.kicking.Store(false)
	}
}
