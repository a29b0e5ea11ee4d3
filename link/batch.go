package link

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"sync"
	"time"
)

// maxBatch bounds the ciphertext held back before it is written to the
// connection below TLS.
const maxBatch = 256 << 10

// batchConn sits between TLS and the candidate connection. While a batch is
// open it collects what TLS writes, so that the records of one yamux frame
// leave in one write: without it every 16 KiB record is a syscall and, with
// TCP_NODELAY, a frame's 12-byte header is a packet of its own. Close is
// the connection's: only frameConn opens batches, and frameConn.Close fails
// the connection's writes (a past deadline) first, so a batch left open
// could not be flushed anyway.
type batchConn struct {
	net.Conn

	mu   sync.Mutex
	open bool
	buf  []byte
}

func (c *batchConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.open {
		return c.Conn.Write(b)
	}
	c.buf = append(c.buf, b...)
	if len(c.buf) >= maxBatch {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

func (c *batchConn) begin() {
	c.mu.Lock()
	c.open = true
	c.mu.Unlock()
}

// end writes what the batch holds and closes it.
func (c *batchConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open = false
	return c.flushLocked()
}

func (c *batchConn) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	return err
}

// frameConn is the connection yamux reads from and writes to. yamux writes
// a data frame as a header and then its body; frameConn keeps the batch
// below TLS open across the two, so a frame costs one write to the socket.
// It also lets the link put frames of its own between yamux's (reset) and
// between the peer's (drop).
type frameConn struct {
	// Conn is what yamux's bytes go through: the link's TLS over the
	// candidate connection, or a secured candidate connection itself.
	net.Conn
	// raw is the candidate connection, below Conn (Conn itself if the link
	// runs no TLS).
	raw net.Conn
	// out is between TLS and raw; nil if the link runs no TLS, whose
	// records there would be nothing to gather.
	out *batchConn
	in  frameReader // over Conn

	// mu is held from a data frame's header to its body, so that a frame
	// of the link's own never lands inside one of yamux's.
	mu       sync.Mutex
	midFrame bool // only yamux's send loop, the one writer, touches it
	// small holds a small frame's header until its body comes, so that
	// the two go out as one TLS record (or one write to a secured
	// transport): for the 64-byte requests of an interactive session, a
	// record's 22 bytes and its encryption are a fair share of the cost.
	// Only yamux's send loop touches it.
	small []byte
}

// smallFrame is the largest body sent in one record with its header;
// larger ones are not worth copying.
const smallFrame = 4 << 10

// newTLSFrameConn is the frameConn of a link that runs its own TLS (tc)
// over out.
func newTLSFrameConn(tc *tls.Conn, out *batchConn) *frameConn {
	c := &frameConn{Conn: tc, raw: out.Conn, out: out}
	c.in.r = tc
	return c
}

// newPlainFrameConn is the frameConn of a link over a candidate
// connection that its transport secures (Secured): no TLS of the link's.
func newPlainFrameConn(conn net.Conn) *frameConn {
	c := &frameConn{Conn: conn, raw: conn}
	c.in.r = conn
	return c
}

func (c *frameConn) Read(b []byte) (int, error) { return c.in.Read(b) }

func (c *frameConn) Write(b []byte) (int, error) {
	if !c.midFrame {
		c.mu.Lock()
	}
	if bodyFollows(b) && binary.BigEndian.Uint32(b[8:12]) <= smallFrame {
		c.small = append(c.small[:0], b...)
		c.midFrame = true
		return len(b), nil
	}
	c.begin()
	var n int
	var err error
	if c.midFrame && len(c.small) > 0 {
		c.small = append(c.small, b...)
		n, err = c.Conn.Write(c.small)
		n = max(n-yamuxHeaderSize, 0)
		c.small = c.small[:0]
	} else {
		n, err = c.Conn.Write(b)
	}
	if err == nil && bodyFollows(b) {
		c.midFrame = true
		return n, nil
	}
	c.midFrame = false
	if ferr := c.end(); err == nil {
		err = ferr
	}
	c.mu.Unlock()
	return n, err
}

// begin and end open and flush the batch below TLS, if there is one.
func (c *frameConn) begin() {
	if c.out != nil {
		c.out.begin()
	}
}

func (c *frameConn) end() error {
	if c.out == nil {
		return nil
	}
	return c.out.end()
}

// Close ends the connection at once. yamux's reader and writer may be
// blocked on a peer that is gone (its address changed, its NAT forgot us),
// and a transport that closes gracefully (QUIC lingers for the peer's
// acknowledgements) or TLS's close_notify (which waits up to 5s to be
// written) would hold the link's Close that long: the link is over, so
// the candidate connection is unblocked and closed first.
func (c *frameConn) Close() error {
	c.raw.SetDeadline(time.Unix(1, 0))
	err := c.raw.Close()
	if c.Conn != c.raw {
		c.Conn.Close()
	}
	return err
}

// reset sends the peer a RST for stream id: yamux v0.1.2 offers no way to
// abort a stream, but a peer still writing to a stream we closed must
// learn it at once, as a TCP sender does from a RST, not block on a window
// that never reopens.
func (c *frameConn) reset(id uint32) error {
	if err := c.sendControl(rstFrame(id)); err != nil {
		return fmt.Errorf("reset stream %d: %w", id, err)
	}
	return nil
}

// sendControl writes a frame of the link's own, between yamux's frames.
// It may wait for yamux's writer to finish a frame, so yamux's reader
// must not call it.
func (c *frameConn) sendControl(h frameHeader) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.begin()
	_, err := c.Conn.Write(h[:])
	if ferr := c.end(); err == nil {
		err = ferr
	}
	return err
}

// drop makes yamux forget stream id, as if the peer had reset it (see
// frameReader.drop). It never blocks.
func (c *frameConn) drop(id uint32) { c.in.drop(id) }

// bodyFollows reports whether b is exactly the header of a data frame that
// carries a body, which yamux writes next.
func bodyFollows(b []byte) bool {
	return len(b) == yamuxHeaderSize && b[0] == 0 && b[1] == yamuxTypeData &&
		binary.BigEndian.Uint32(b[8:12]) > 0
}
