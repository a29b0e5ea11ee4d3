package link

import (
	"encoding/binary"
	"io"
	"sync"
	"sync/atomic"
)

// yamux frame header layout (spec.md in hashicorp/yamux): version, type,
// flags, stream ID, length. Only a data frame has a body, of length bytes;
// the other types carry a number in length.
const (
	yamuxHeaderSize       = 12
	yamuxTypeData         = 0
	yamuxTypeWindowUpdate = 1
	yamuxFlagSYN          = 0x1
	yamuxFlagFIN          = 0x4
	yamuxFlagRST          = 0x8

	// yamuxFlagAbort is warren's own flag, which yamux ignores (it acts
	// on the flags it knows and no others). On a window update of 0 sent
	// ahead of a stream's FIN, it says that FIN ends an aborted stream
	// (Stream.Abort): the peer reads everything sent before it, then a
	// reset. A yamux RST would not do: yamux drops the data a reset
	// stream still holds unread.
	yamuxFlagAbort = 0x100
)

// frameHeader is one yamux frame header.
type frameHeader [yamuxHeaderSize]byte

// rstFrame is the frame that resets stream id.
func rstFrame(id uint32) frameHeader { return controlFrame(id, yamuxFlagRST) }

// abortFrame is the notice that stream id's FIN ends an aborted stream.
func abortFrame(id uint32) frameHeader { return controlFrame(id, yamuxFlagAbort) }

// controlFrame is a window update of 0 for stream id carrying flags.
func controlFrame(id uint32, flags uint16) frameHeader {
	var h frameHeader
	h[1] = yamuxTypeWindowUpdate
	binary.BigEndian.PutUint16(h[2:4], flags)
	binary.BigEndian.PutUint32(h[4:8], id)
	return h
}

func (h *frameHeader) typ() uint8       { return h[1] }
func (h *frameHeader) flags() uint16    { return binary.BigEndian.Uint16(h[2:4]) }
func (h *frameHeader) streamID() uint32 { return binary.BigEndian.Uint32(h[4:8]) }
func (h *frameHeader) length() uint32   { return binary.BigEndian.Uint32(h[8:12]) }

// bodyLength is how many bytes follow the header.
func (h *frameHeader) bodyLength() int64 {
	if h.typ() != yamuxTypeData {
		return 0
	}
	return int64(h.length())
}

// frameReader is what yamux reads the peer's frames from. It follows the
// frame boundaries in the byte stream, so that it can show the link each
// header as it goes by (observe) and put resets of the link's own between
// the peer's frames (drop): yamux v0.1.2 forgets a stream only when the
// peer finishes it, and offers no way to abort one.
//
// It can also swallow a frame of the peer's: yamux reads a reset of its
// stream instead, and never buffers the body (the receive budget). So that
// a header can be replaced before yamux has seen any of it, a header split
// across two reads below is held back until it is whole.
//
// Following the boundaries costs a few comparisons per Read, not per byte:
// a Read inside a body only counts the body down.
type frameReader struct {
	r io.Reader

	// observe, if not nil, is shown each of the peer's frame headers, on
	// yamux's reader goroutine, before yamux handles the frame, and
	// returns whether to swallow the frame. It must not block: the whole
	// link waits for it.
	observe func(*frameHeader) (swallow bool)

	// processed, if not nil, is shown each header yamux read (the peer's,
	// or the reset that replaced one) once yamux has handled the whole
	// frame: at the next Read, as yamux reads on only when it has handled
	// what it read. It runs on yamux's reader and must not block.
	processed func(*frameHeader)
	due       []frameHeader // frames returned whole, for processed
	inBody    bool          // hdr's body is being returned: due at its end

	// Where the stream stands, after what Read last returned. Only the one
	// goroutine that reads (yamux's recv loop) touches these.
	hdr     frameHeader
	nhdr    int    // bytes of hdr read so far, none of them returned yet
	body    int64  // bytes of the current frame's body still to come
	discard bool   // the current body is swallowed
	slip    []byte // the rest of a header (ours or the peer's) that Read is returning
	own     frameHeader
	whole   frameHeader // a header completed at the start of a Read

	// queued is whether drops is not empty, for Read to check without mu.
	// Only Read takes drops, so once it sees queued, a drop is there.
	queued atomic.Bool
	mu     sync.Mutex
	drops  []uint32
}

// drop has yamux forget stream id: a RST for it goes into what yamux reads,
// as if the peer had sent one, at the next frame boundary. If the peer is
// sending, that is the end of the frame it is in; if it is quiet and
// yamux's Read is blocked at a boundary, it is when the next frame arrives
// (Link.kick asks for one).
func (r *frameReader) drop(id uint32) {
	r.mu.Lock()
	r.drops = append(r.drops, id)
	r.queued.Store(true)
	r.mu.Unlock()
}

// dropping reports whether a drop waits for a boundary.
func (r *frameReader) dropping() bool { return r.queued.Load() }

func (r *frameReader) Read(b []byte) (int, error) {
	for i := range r.due {
		r.processed(&r.due[i])
	}
	r.due = r.due[:0]
	for {
		n, err := r.read(b)
		// A read whose bytes were all swallowed or held back returns
		// nothing: read on, as yamux's bufio.Reader would give up after a
		// hundred empty reads.
		if n > 0 || err != nil || len(b) == 0 {
			return n, err
		}
	}
}

func (r *frameReader) read(b []byte) (int, error) {
	if len(r.slip) == 0 {
		switch {
		case r.body == 0 && r.queued.Load():
			// Between frames, as far as yamux knows: a header held back
			// is not returned yet.
			r.slip = r.nextDrop()
		case r.nhdr > 0:
			if err := r.completeHeader(); err != nil {
				return 0, err
			}
		case r.queued.Load() && r.body < int64(len(b)):
			// End this read where the body ends, so that the next one
			// starts at a boundary: a drop need not wait for whatever the
			// peer sends after this frame.
			b = b[:r.body]
		}
	}
	if len(r.slip) > 0 {
		n := copy(b, r.slip)
		r.slip = r.slip[n:]
		return n, nil
	}
	n, err := r.r.Read(b)
	return r.filter(b[:n]), err
}

// completeHeader reads the rest of a header held back by filter, and
// has Read return it (or what replaces it) next.
func (r *frameReader) completeHeader() error {
	if _, err := io.ReadFull(r.r, r.hdr[r.nhdr:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // the header's start came
		}
		return err
	}
	r.nhdr = 0
	r.header()
	r.whole = r.hdr
	r.slip = r.whole[:]
	return nil
}

// filter moves the stream's position over p, which the peer sent, in
// place: it drops the bodies of swallowed frames and the start of a header
// that p does not hold whole, and returns how many bytes are left.
func (r *frameReader) filter(p []byte) int {
	w, i := 0, 0
	for i < len(p) {
		if r.body > 0 {
			k := int(min(r.body, int64(len(p)-i)))
			switch {
			case r.discard:
			case w == i:
				w += k // in place: no need to move a body's bytes
			default:
				w += copy(p[w:], p[i:i+k])
			}
			r.body -= int64(k)
			i += k
			if r.body == 0 && r.inBody {
				r.inBody = false
				r.due = append(r.due, r.hdr)
			}
			continue
		}
		k := copy(r.hdr[r.nhdr:], p[i:])
		r.nhdr += k
		i += k
		if r.nhdr < yamuxHeaderSize {
			break // held back: completeHeader returns it
		}
		r.nhdr = 0
		r.header()
		w += copy(p[w:], r.hdr[:]) // a small copy, even in place
	}
	return w
}

// header acts on a whole header in hdr: it shows it to observe and, for a
// frame to swallow, puts a reset of its stream in its place.
func (r *frameReader) header() {
	r.body = r.hdr.bodyLength()
	r.discard = false
	if r.observe != nil && r.observe(&r.hdr) {
		r.hdr = rstFrame(r.hdr.streamID())
		r.discard = r.body > 0
	}
	if r.processed == nil {
		return
	}
	if r.body > 0 && !r.discard {
		r.inBody = true
	} else {
		r.due = append(r.due, r.hdr)
	}
}

// nextDrop takes the first queued drop and returns its RST.
func (r *frameReader) nextDrop() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.own = rstFrame(r.drops[0])
	r.drops = r.drops[:copy(r.drops, r.drops[1:])]
	r.queued.Store(len(r.drops) > 0)
	return r.own[:]
}
