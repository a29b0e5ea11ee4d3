package transport

import (
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
)

const (
	// Read side: kcp-go's Read returns at most one segment, so chunks are
	// packet-sized; rxChunks of them (~384 KiB) buffer ahead of the caller.
	rxChunkSize = maxKCPPacket
	rxChunks    = 256

	// Write side: Write copies into up to txChunks chunks (256 KiB) that
	// the sender goroutine feeds into KCP.
	txChunkSize = 32 << 10
	txChunks    = 8

	// lingerPoll is how often Close checks whether the peer has
	// acknowledged everything.
	lingerPoll = 2 * time.Millisecond
)

// Conn is one KCP stream over a Demux's socket, returned by Demux.Dial. It
// implements net.Conn, with deadlines.
//
// Contract:
//   - Close returns at once, and the stream lingers in the background (as a
//     TCP socket does in the kernel): it keeps retransmitting until the
//     peer has acknowledged everything written before Close, then tells
//     the peer, whose Reads return the remaining data and then io.EOF, and
//     whose Writes fail with ErrPeerClosed. If that takes longer than
//     Config.CloseTimeout, it resets the stream instead (the peer's
//     operations fail with ErrPeerReset). Either way, everything the
//     stream holds is released within CloseTimeout of Close, or at once
//     when its Demux is closed.
//   - Close is a full close: there is no half-close, as KCP has none. Data
//     that arrives after Close is acknowledged and dropped.
//   - After Close, Read and Write return net.ErrClosed.
//   - A peer that goes away without closing (crash, lost path) is detected
//     after Config.IdleTimeout: Read (after any buffered data) and Write
//     fail with ErrPeerTimeout. Each end sends a keepalive every
//     Config.KeepAliveInterval, so an idle stream does not time out.
//   - A stream whose Demux is closed fails with an error matching
//     net.ErrClosed, and its peer is sent RST (or FIN, if the stream was
//     closed and everything acknowledged). Wait for Done before closing
//     the Demux to let a closed stream finish its linger.
//
// Errors are *net.OpErrors wrapping the sentinels named here (match them
// with errors.Is), except io.EOF, which is returned as is. Close must be
// called in every case, including after an error.
//
// Why the goroutines: kcp-go's UDPSession reads its deadline fields without
// a lock, so setting a deadline while a Read or Write is blocked (which
// net.Conn allows, and crypto/tls does to cancel a handshake) is a data
// race. Conn therefore never sets kcp-go deadlines: one goroutine (rxPump)
// reads the session and another (txPump) writes it, and Read and Write wait
// on Conn's own buffers, where deadlines are safe. A third (run) owns the
// keepalive, the idle check, the close handshake and teardown.
type Conn struct {
	d    *Demux
	key  sessionKey
	cfg  *Config
	pc   *packetConn
	sess *kcp.UDPSession

	readMu  sync.Mutex // serializes Reads, so each returns contiguous bytes
	writeMu sync.Mutex // serializes Writes, so each is contiguous in the stream
	rd, wd  *deadline

	mu          sync.Mutex
	rxq, txq    ring
	rxOff       int // bytes of rxq's oldest chunk already read
	rxFree      [][]byte
	txFree      [][]byte
	rxBytes     uint64 // bytes rxPump took from KCP, in total
	sessWritten uint64 // bytes txPump gave to KCP, in total
	closing     bool   // Close was called: txPump drains txq and stops
	finRecv     bool   // the peer closed cleanly, having written finLen bytes
	finLen      uint64
	err         error // set once by fail: the stream is broken

	rxReady chan struct{} // cap 1: rxq gained data, or state changed (Read waits)
	rxSpace chan struct{} // cap 1: rxq has room (rxPump waits)
	txReady chan struct{} // cap 1: txq gained data, or closing (txPump waits)
	txSpace chan struct{} // cap 1: txq has room, or state changed (Write waits)

	closeOnce sync.Once
	closed    chan struct{} // closed by Close
	failOnce  sync.Once
	broken    chan struct{} // closed by fail
	dying     chan struct{} // closed by teardown: pumps stop waiting
	rxDone    chan struct{} // rxPump returned
	txDone    chan struct{} // txPump returned
	runDone   chan struct{} // run returned: everything is released
}

var _ net.Conn = (*Conn)(nil)

// newConn builds a stream and starts its goroutines. The caller registers
// it with the demux.
func newConn(d *Demux, key sessionKey, cfg *Config) (*Conn, error) {
	pc := newPacketConn(d, key.remote)
	// ownConn=true: closing the session closes pc, which stops kcp-go's
	// reader goroutine. No FEC and no kcp-go encryption: FEC would move
	// conv away from the first bytes the demux routes by, and TLS runs
	// above.
	sess, err := kcp.NewConn4(key.conv, pc.raddr, nil, 0, 0, true, pc)
	if err != nil {
		return nil, fmt.Errorf("kcp session: %w", err)
	}
	sess.SetStreamMode(true)
	sess.SetWriteDelay(false)
	sess.SetWindowSize(cfg.SendWindow, cfg.RecvWindow)
	sess.SetMtu(cfg.MTU)
	// Acknowledge every packet at once. Delayed (per-Interval) acks arrive
	// in bursts that grow KCP's congestion window by one per burst rather
	// than per packet: on loopback that cut throughput ~50x. So no knob.
	sess.SetACKNoDelay(true)
	nodelay, nc := 1, 1
	if cfg.ConservativeRTO {
		nodelay = 0
	}
	if cfg.CongestionWindow {
		nc = 0
	}
	sess.SetNoDelay(nodelay, int(cfg.Interval/time.Millisecond), max(cfg.FastResend, 0), nc)

	c := &Conn{
		d:       d,
		key:     key,
		cfg:     cfg,
		pc:      pc,
		sess:    sess,
		rd:      newDeadline(),
		wd:      newDeadline(),
		rxq:     newRing(rxChunks),
		txq:     newRing(txChunks),
		rxReady: make(chan struct{}, 1),
		rxSpace: make(chan struct{}, 1),
		txReady: make(chan struct{}, 1),
		txSpace: make(chan struct{}, 1),
		closed:  make(chan struct{}),
		broken:  make(chan struct{}),
		dying:   make(chan struct{}),
		rxDone:  make(chan struct{}),
		txDone:  make(chan struct{}),
		runDone: make(chan struct{}),
	}
	go c.rxPump()
	go c.txPump()
	go c.run()
	return c, nil
}

// LocalAddr returns the demuxed socket's address.
func (c *Conn) LocalAddr() net.Addr { return c.d.local }

// RemoteAddr returns the peer's address, a *net.UDPAddr.
func (c *Conn) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(*c.pc.remote.Load()) }

// Done returns a channel that is closed once the stream has released
// everything it holds: after Close's linger (so the peer has been told),
// after a failure, or when the Demux closed. A caller about to close the
// Demux right after Close should wait for it (it takes at most
// Config.CloseTimeout), or the peer is told of a reset instead of a clean
// close.
func (c *Conn) Done() <-chan struct{} { return c.runDone }

// SRTT returns KCP's smoothed round-trip time estimate.
func (c *Conn) SRTT() time.Duration { return time.Duration(c.sess.GetSRTT()) * time.Millisecond }

func (c *Conn) SetDeadline(t time.Time) error {
	if isClosed(c.closed) {
		return net.ErrClosed
	}
	c.rd.set(t)
	c.wd.set(t)
	return nil
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	if isClosed(c.closed) {
		return net.ErrClosed
	}
	c.rd.set(t)
	return nil
}

func (c *Conn) SetWriteDeadline(t time.Time) error {
	if isClosed(c.closed) {
		return net.ErrClosed
	}
	c.wd.set(t)
	return nil
}

// Read reads stream data. Errors other than io.EOF are *net.OpErrors;
// see Conn for the ones it returns once the stream ends.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.read(b)
	if err != nil && err != io.EOF {
		err = c.opError("read", err)
	}
	return n, err
}

func (c *Conn) read(b []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		case <-c.rd.wait():
			return 0, os.ErrDeadlineExceeded
		default:
		}
		if len(b) == 0 {
			return 0, nil
		}
		c.mu.Lock()
		if chunk := c.rxq.peek(); chunk != nil {
			n := copy(b, chunk[c.rxOff:])
			c.rxOff += n
			if c.rxOff == len(chunk) {
				c.rxq.pop()
				c.rxOff = 0
				c.rxFree = append(c.rxFree, chunk[:cap(chunk)])
				notify(c.rxSpace)
			}
			c.mu.Unlock()
			return n, nil
		}
		if c.finRecv && c.rxBytes >= c.finLen {
			c.mu.Unlock()
			return 0, io.EOF
		}
		if err := c.err; err != nil {
			c.mu.Unlock()
			return 0, err
		}
		c.mu.Unlock()

		select {
		case <-c.rxReady:
		case <-c.closed:
			return 0, net.ErrClosed
		case <-c.rd.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// Write queues b for the stream; it returns once all of b is buffered
// (KCP then owns getting it across), or on the first error, a
// *net.OpError.
func (c *Conn) Write(b []byte) (int, error) {
	n, err := c.write(b)
	if err != nil {
		err = c.opError("write", err)
	}
	return n, err
}

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "kcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

func (c *Conn) write(b []byte) (int, error) {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	n := 0
	for {
		select {
		case <-c.closed:
			return n, net.ErrClosed
		case <-c.wd.wait():
			return n, os.ErrDeadlineExceeded
		default:
		}
		c.mu.Lock()
		switch {
		case c.closing:
			c.mu.Unlock()
			return n, net.ErrClosed
		case c.finRecv:
			c.mu.Unlock()
			return n, ErrPeerClosed
		case c.err != nil:
			err := c.err
			c.mu.Unlock()
			return n, err
		}
		for len(b) > 0 && c.txq.len() < txChunks {
			var chunk []byte
			if k := len(c.txFree); k > 0 {
				chunk, c.txFree = c.txFree[k-1], c.txFree[:k-1]
			} else {
				chunk = make([]byte, txChunkSize)
			}
			k := copy(chunk, b)
			c.txq.push(chunk[:k])
			b = b[k:]
			n += k
			notify(c.txReady)
		}
		c.mu.Unlock()
		if len(b) == 0 {
			return n, nil
		}

		select {
		case <-c.txSpace:
		case <-c.closed:
			return n, net.ErrClosed
		case <-c.wd.wait():
			return n, os.ErrDeadlineExceeded
		}
	}
}

// Close closes the stream and returns at once; calls after the first
// return net.ErrClosed. Like a TCP socket's close, delivery of what was
// written before it goes on in the background (see Conn).
func (c *Conn) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.mu.Lock()
		c.closing = true
		for c.rxq.len() > 0 { // unread data is dropped; see rxPump
			chunk := c.rxq.peek()
			c.rxFree = append(c.rxFree, chunk[:cap(chunk)])
			c.rxq.pop()
		}
		c.rxOff = 0
		c.mu.Unlock()
		close(c.closed)
		notify(c.txReady)
		notify(c.rxSpace)
	})
	if !first {
		return net.ErrClosed
	}
	return nil
}

// fail marks the stream broken with err (the first error wins) and wakes
// everyone waiting on it. It never blocks: the demux's read goroutine calls
// it.
func (c *Conn) fail(err error) {
	c.failOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.broken)
		notify(c.rxReady)
		notify(c.txSpace)
		notify(c.txReady)
	})
}

// control handles a control packet from the peer (on the demux goroutine).
func (c *Conn) control(typ byte, length uint64) {
	c.pc.touch()
	switch typ {
	case ctlFin:
		c.mu.Lock()
		if !c.finRecv {
			c.finRecv, c.finLen = true, length
		}
		c.mu.Unlock()
		notify(c.rxReady)
		notify(c.txSpace)
	case ctlRst:
		c.fail(ErrPeerReset)
	}
}

// farewell tells the peer, best effort, that the stream ends because its
// Demux is closing: FIN if Close was called and everything written has
// been acknowledged, RST otherwise. Silent if the peer is already gone.
func (c *Conn) farewell() {
	c.mu.Lock()
	gone := c.finRecv || c.err != nil
	clean := c.closing && c.txq.len() == 0
	total := c.sessWritten
	c.mu.Unlock()
	switch {
	case gone:
	case clean && isClosed(c.txDone) && c.pc.acked(total):
		c.sendControl(ctlFin, total)
	default:
		c.sendControl(ctlRst, 0)
	}
}

func (c *Conn) sendControl(typ byte, length uint64) {
	var buf [controlFinLen]byte
	// A lost control packet is covered by the peer's idle timeout.
	_, _ = c.d.conn.WriteToUDPAddrPort(appendControl(buf[:0], typ, c.key.conv, length), *c.pc.remote.Load())
}

// rxPump moves data from the KCP session into rxq.
func (c *Conn) rxPump() {
	defer close(c.rxDone)
	for {
		c.mu.Lock()
		for c.rxq.len() >= rxChunks {
			c.mu.Unlock()
			select {
			case <-c.rxSpace:
			case <-c.dying:
				return
			}
			c.mu.Lock()
		}
		var buf []byte
		if k := len(c.rxFree); k > 0 {
			buf, c.rxFree = c.rxFree[k-1], c.rxFree[:k-1]
		} else {
			buf = make([]byte, rxChunkSize)
		}
		c.mu.Unlock()

		n, err := c.sess.Read(buf) // blocks; returns an error once teardown closes the session
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.closing {
			// Nobody will read it, but consuming it keeps our receive
			// window open, so that a peer blocked writing to us can
			// still read (and acknowledge) what Close is lingering on.
			c.rxFree = append(c.rxFree, buf)
			c.mu.Unlock()
			continue
		}
		c.rxq.push(buf[:n])
		c.rxBytes += uint64(n)
		c.mu.Unlock()
		notify(c.rxReady)
	}
}

// txPump moves data from txq into the KCP session, which blocks it while
// KCP's send window is full. Once Close was called it stops when txq is
// empty, so sessWritten is then the stream's final length.
func (c *Conn) txPump() {
	defer close(c.txDone)
	for {
		c.mu.Lock()
		chunk := c.txq.peek()
		if c.err != nil || c.finRecv || (chunk == nil && c.closing) {
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		if chunk == nil {
			select {
			case <-c.txReady:
				continue
			case <-c.dying:
				return
			}
		}

		_, err := c.sess.Write(chunk)
		c.mu.Lock()
		c.txq.pop()
		c.txFree = append(c.txFree, chunk[:cap(chunk)])
		if err == nil {
			c.sessWritten += uint64(len(chunk))
		}
		c.mu.Unlock()
		notify(c.txSpace)
		if err != nil {
			return // the session was closed under us: teardown is under way
		}
	}
}

// run owns the stream's lifecycle: keepalives and the idle check while it
// is open, then the close handshake and teardown.
func (c *Conn) run() {
	defer close(c.runDone)
	tick := time.NewTicker(c.cfg.KeepAliveInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			c.mu.Lock()
			fin := c.finRecv
			c.mu.Unlock()
			if fin {
				continue // the peer is gone on purpose; its silence is expected
			}
			if c.pc.idle() > c.cfg.IdleTimeout {
				c.fail(ErrPeerTimeout)
				continue
			}
			c.sendControl(ctlPing, 0)
		case <-c.broken:
			c.teardown()
			return
		case <-c.closed:
			c.linger()
			c.teardown()
			return
		}
	}
}

// linger waits, at most CloseTimeout, until the peer has acknowledged
// everything written, then sends FIN; if time runs out it sends RST. It
// sends nothing when the peer is already gone.
func (c *Conn) linger() {
	timeout := time.NewTimer(c.cfg.CloseTimeout)
	defer timeout.Stop()
	select {
	case <-c.txDone:
	case <-c.broken:
		return
	case <-timeout.C:
		c.sendControl(ctlRst, 0)
		return
	}

	c.mu.Lock()
	total, fin := c.sessWritten, c.finRecv
	c.mu.Unlock()
	if fin {
		return
	}
	poll := time.NewTicker(lingerPoll)
	defer poll.Stop()
	for !c.pc.acked(total) {
		select {
		case <-poll.C:
			c.mu.Lock()
			fin = c.finRecv
			c.mu.Unlock()
			if fin {
				return // the peer closed too and no longer acknowledges
			}
		case <-c.broken:
			return
		case <-timeout.C:
			c.sendControl(ctlRst, 0)
			return
		}
	}
	// Twice, as a cheap guard against losing it; the peer ignores the
	// second, and if both are lost its idle timeout ends the stream.
	c.sendControl(ctlFin, total)
	c.sendControl(ctlFin, total)
}

// teardown releases the stream: it stops the pumps and kcp-go's
// goroutines, and unregisters the stream from the demux.
func (c *Conn) teardown() {
	c.fail(net.ErrClosed) // no-op if already broken; wakes any waiter
	close(c.dying)
	c.d.remove(c)
	_ = c.sess.Close() // closes pc too (ownConn): kcp-go's reader returns
	<-c.rxDone
	<-c.txDone
	c.rd.set(time.Time{})
	c.wd.set(time.Time{})
}

// ring is a fixed-capacity FIFO of byte chunks.
type ring struct {
	buf     [][]byte
	head, n int
}

func newRing(capacity int) ring { return ring{buf: make([][]byte, capacity)} }

func (r *ring) len() int { return r.n }

func (r *ring) push(b []byte) {
	r.buf[(r.head+r.n)%len(r.buf)] = b
	r.n++
}

// peek returns the oldest chunk, or nil when empty.
func (r *ring) peek() []byte {
	if r.n == 0 {
		return nil
	}
	return r.buf[r.head]
}

func (r *ring) pop() {
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
}
