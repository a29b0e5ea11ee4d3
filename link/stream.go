package link

import (
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// Stream is one bidirectional byte stream on a link. It is a net.Conn, and
// CloseWrite sends the peer EOF while reads go on, as a TCP half-close does.
type Stream struct {
	*yamux.Stream
	link      *Link
	slots     chan struct{} // nil for streams we opened
	closeOnce sync.Once
}

func (l *Link) newStream(s *yamux.Stream, slots chan struct{}) *Stream {
	l.streams.Add(1)
	return &Stream{Stream: s, link: l, slots: slots}
}

// Write writes to the stream. After a connection-level write timeout yamux
// may still send the frame it reported as failed (advisory GO-2025-3408), so
// the byte stream can no longer be trusted: close the whole link.
func (s *Stream) Write(b []byte) (int, error) {
	n, err := s.Stream.Write(b)
	if errors.Is(err, yamux.ErrConnectionWriteTimeout) {
		s.link.log.Warn("link write timed out; closing link")
		go s.link.Close()
	}
	return n, err
}

// CloseWrite half-closes the stream: the peer reads EOF, and this end can
// still read until the peer closes its side.
func (s *Stream) CloseWrite() error { return s.Stream.Close() }

// Close closes both directions and unblocks pending reads. If data from
// the peer is still waiting unread, the stream is reset, as TCP does when
// a socket closes with unread data: a peer still sending learns at once,
// instead of blocking on a window we will never open again. Without unread
// data only a FIN goes out, so that a reply written just before Close (a
// refusal, say) still reaches a peer that reads it.
func (s *Stream) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.Stream.Close()
		// yamux's Close only half-closes; a reader blocked on a peer that
		// never closes would hang without this.
		s.Stream.SetReadDeadline(time.Unix(1, 0))
		if s.unread() {
			s.link.frames.reset(s.StreamID())
		}
		s.link.streams.Add(-1)
		if s.slots != nil {
			<-s.slots
		}
	})
	return err
}

// unread reports whether the peer's data is waiting in the stream; it
// needs a read deadline in the past, and takes a byte if so. A peer that
// has finished sending leaves nothing, so its stream is not reset.
func (s *Stream) unread() bool {
	var b [1]byte
	n, _ := s.Stream.Read(b[:])
	return n > 0
}
