package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// SocketBuffer is the SO_RCVBUF/SO_SNDBUF size NewDemux asks for. A
	// full KCP window arrives in bursts far larger than the kernel's
	// default ~200 KiB, and every datagram the kernel drops costs a
	// retransmission timeout.
	SocketBuffer = 4 << 20

	// maxKCPPacket is kcp-go's packet buffer size (its mtuLimit): larger
	// datagrams cannot be KCP packets of ours.
	maxKCPPacket = 1500

	// kcpHeaderLen is the length of one KCP segment header.
	kcpHeaderLen = 24

	// sessionQueue is how many packets wait for one stream's KCP input
	// before the demux drops more (as a full socket buffer would). It
	// covers a default receive window's worth of burst.
	sessionQueue = 2048
)

// Demux shares one UDP socket between KCP streams and prefix handlers. A
// single goroutine reads the socket and routes each datagram (see the
// package documentation); handlers and streams never read it themselves.
type Demux struct {
	conn  *net.UDPConn
	local net.Addr

	handlers handlerTable

	mu       sync.RWMutex
	sessions map[sessionKey]*Conn
	closed   bool

	closeOnce sync.Once
	done      chan struct{} // closed when readLoop has returned

	pool  sync.Pool // *packet, for datagrams queued to streams
	stats demuxCounters
}

// sessionKey names a stream: KCP conversation IDs are chosen by the two
// peers, so only together with the remote address are they unique.
type sessionKey struct {
	remote netip.AddrPort
	conv   uint32
}

// packet is one datagram queued for a stream.
type packet struct {
	b [maxKCPPacket]byte
	n int
}

// DemuxStats counts datagrams by where the demux sent them.
type DemuxStats struct {
	Handled    uint64 // given to a prefix handler
	Unhandled  uint64 // started with PrefixByte but matched no handler
	KCP        uint64 // queued to a stream
	Control    uint64 // transport control packets for a known stream
	NoSession  uint64 // KCP or control packets for no open stream
	QueueFull  uint64 // dropped because a stream's input queue was full
	Malformed  uint64 // empty, too short or too long to be a KCP packet
	ReadErrors uint64 // socket read errors other than close (skipped)
}

type demuxCounters struct {
	handled, unhandled, kcp, control, noSession, queueFull, malformed, readErrors atomic.Uint64
}

// NewDemux takes ownership of conn (Close closes it), enlarges its socket
// buffers to SocketBuffer (best effort: the kernel may cap them), and
// starts reading it. conn must not be read by anyone else from now on;
// write to it through WriteTo.
func NewDemux(conn *net.UDPConn) (*Demux, error) {
	if conn == nil {
		return nil, errors.New("transport: NewDemux: nil conn")
	}
	setSocketBuffers(conn, SocketBuffer)
	d := &Demux{
		conn:     conn,
		local:    conn.LocalAddr(),
		sessions: make(map[sessionKey]*Conn),
		done:     make(chan struct{}),
	}
	d.pool.New = func() any { return new(packet) }
	d.handlers.init()
	go d.readLoop()
	return d, nil
}

// LocalAddr returns the socket's local address.
func (d *Demux) LocalAddr() net.Addr { return d.local }

// SocketBuffers reports the socket's effective receive and send buffer
// sizes in bytes (0 where the platform cannot tell).
func (d *Demux) SocketBuffers() (rcv, snd int) { return socketBuffers(d.conn) }

// Stats returns the routing counters.
func (d *Demux) Stats() DemuxStats {
	s := &d.stats
	return DemuxStats{
		Handled:    s.handled.Load(),
		Unhandled:  s.unhandled.Load(),
		KCP:        s.kcp.Load(),
		Control:    s.control.Load(),
		NoSession:  s.noSession.Load(),
		QueueFull:  s.queueFull.Load(),
		Malformed:  s.malformed.Load(),
		ReadErrors: s.readErrors.Load(),
	}
}

// Handle routes datagrams that start with prefix to fn; a nil fn removes
// the prefix's handler. The prefix must start with PrefixByte, be at most
// 16 bytes, and neither be a prefix of nor extend another registered prefix
// (nor transport's own control prefix, "WRK\x01"), so that every datagram
// has at most one destination.
//
// fn runs on the demux's read goroutine: it must return quickly (hand work
// to another goroutine if it has any), and pkt is only valid until it
// returns (copy what it keeps).
func (d *Demux) Handle(prefix []byte, fn func(pkt []byte, from netip.AddrPort)) error {
	if len(prefix) == 0 || prefix[0] != PrefixByte {
		return fmt.Errorf("%w: %q", ErrBadPrefix, prefix)
	}
	if overlaps(prefix, controlMagic) {
		return fmt.Errorf("%w: %q overlaps transport's control prefix", ErrBadPrefix, prefix)
	}
	return d.handlers.set(prefix, fn)
}

// WriteTo sends one datagram (a punch or keepalive packet) on the socket.
// It must start with PrefixByte, or the peer's demux would take it for KCP.
func (d *Demux) WriteTo(b []byte, to netip.AddrPort) (int, error) {
	if len(b) == 0 || b[0] != PrefixByte {
		return 0, fmt.Errorf("transport: write to %v: datagram does not start with PrefixByte", to)
	}
	return writeUDP(d.conn, b, to)
}

// writeUDP sends one datagram on conn, naming its destination in the error.
func writeUDP(conn *net.UDPConn, b []byte, to netip.AddrPort) (int, error) {
	n, err := conn.WriteToUDPAddrPort(b, to)
	if err != nil {
		return n, fmt.Errorf("transport: write to %v: %w", to, err)
	}
	return n, nil
}

// Close stops the read goroutine, closes the socket and fails every stream
// still open on it (their operations return errors matching
// net.ErrClosed); each stream's peer is first sent RST, or FIN if the
// stream was closed and everything it wrote acknowledged (see Conn.Done
// to let a closed stream finish first). It waits until those streams have
// released their resources. Handlers are not called after Close returns.
func (d *Demux) Close() error {
	var err error
	d.closeOnce.Do(func() {
		d.mu.Lock()
		d.closed = true
		conns := make([]*Conn, 0, len(d.sessions))
		for _, c := range d.sessions {
			conns = append(conns, c)
		}
		d.mu.Unlock()

		// Tell the peers while the socket is still open, so they need not
		// wait out their idle timeout.
		for _, c := range conns {
			c.farewell()
		}
		err = d.conn.Close()
		<-d.done
		for _, c := range conns {
			c.fail(errDemuxClosed)
		}
		for _, c := range conns {
			<-c.runDone
		}
	})
	if err != nil {
		return fmt.Errorf("transport: close demux: %w", err)
	}
	return nil
}

// readLoop is the socket's only reader.
func (d *Demux) readLoop() {
	defer close(d.done)
	// Prefix packets are handed over in place, so this buffer takes any
	// datagram; KCP packets are copied out into pooled packets.
	buf := make([]byte, 64<<10)
	for {
		n, from, err := d.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Some platforms report ICMP errors from earlier sends as
			// read errors on unconnected UDP sockets (Windows'
			// WSAECONNRESET); they say nothing about the socket.
			d.stats.readErrors.Add(1)
			time.Sleep(time.Millisecond) // no hot loop if an error persists
			continue
		}
		d.route(buf[:n], unmap(from))
	}
}

// route delivers one datagram. It never blocks on a stream.
func (d *Demux) route(pkt []byte, from netip.AddrPort) {
	if len(pkt) == 0 {
		d.stats.malformed.Add(1)
		return
	}
	if pkt[0] == PrefixByte {
		if bytes.HasPrefix(pkt, controlMagic) {
			d.routeControl(pkt, from)
			return
		}
		if fn := d.handlers.lookup(pkt); fn != nil {
			d.stats.handled.Add(1)
			fn(pkt, from)
			return
		}
		d.stats.unhandled.Add(1)
		return
	}
	if len(pkt) < kcpHeaderLen || len(pkt) > maxKCPPacket {
		d.stats.malformed.Add(1)
		return
	}
	c := d.lookup(sessionKey{from, binary.LittleEndian.Uint32(pkt)})
	if c == nil {
		d.stats.noSession.Add(1)
		return
	}
	p := d.pool.Get().(*packet)
	p.n = copy(p.b[:], pkt)
	if !c.pc.deliver(p) {
		d.pool.Put(p)
		d.stats.queueFull.Add(1)
		return
	}
	d.stats.kcp.Add(1)
}

func (d *Demux) routeControl(pkt []byte, from netip.AddrPort) {
	typ, conv, length, ok := parseControl(pkt)
	if !ok {
		d.stats.malformed.Add(1)
		return
	}
	c := d.lookup(sessionKey{from, conv})
	if c == nil {
		d.stats.noSession.Add(1)
		return
	}
	d.stats.control.Add(1)
	c.control(typ, length)
}

func (d *Demux) lookup(k sessionKey) *Conn {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.sessions[k]
}

// Dial opens a KCP stream to remote with conversation ID conv over the
// demuxed socket. The peer must call Dial towards our address with the same
// conv: KCP is symmetric, there is no listener and no handshake, and Dial
// returns at once. Until the peer's stream exists its packets to us are
// dropped, and ours to it; KCP retransmits, and the first Read or Write
// completes once both ends are up (or the stream fails with ErrPeerTimeout
// after Config.IdleTimeout).
//
// Use a fresh conv for every stream with the same remote: a late packet of
// an earlier stream with the same conv would be taken for the new stream's.
func (d *Demux) Dial(remote netip.AddrPort, conv uint32, cfg *Config) (*Conn, error) {
	if err := cfg.Verify(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if !remote.IsValid() {
		return nil, fmt.Errorf("transport: dial %v: invalid address", remote)
	}
	if byte(conv) == PrefixByte {
		return nil, fmt.Errorf("transport: dial %v conv %#x: %w", remote, conv, ErrReservedConv)
	}
	key := sessionKey{unmap(remote), conv}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, fmt.Errorf("transport: dial %v: %w", remote, net.ErrClosed)
	}
	if d.sessions[key] != nil {
		return nil, fmt.Errorf("transport: dial %v conv %#x: %w", remote, conv, ErrSessionExists)
	}
	c, err := newConn(d, key, cfg)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %v conv %#x: %w", remote, conv, err)
	}
	d.sessions[key] = c
	return c, nil
}

// Rebind moves the stream with conv from remote from to remote to: its
// packets are sent to to, and only packets from to reach it. It is for a
// peer that roamed (its NAT gave it a new endpoint); the caller must have
// authenticated the move, since packets here carry no proof of origin.
func (d *Demux) Rebind(conv uint32, from, to netip.AddrPort) error {
	from, to = unmap(from), unmap(to)
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.sessions[sessionKey{from, conv}]
	switch {
	case c == nil:
		return fmt.Errorf("transport: rebind %v conv %#x: no such stream", from, conv)
	case d.sessions[sessionKey{to, conv}] != nil:
		return fmt.Errorf("transport: rebind to %v conv %#x: %w", to, conv, ErrSessionExists)
	}
	delete(d.sessions, c.key)
	// Only the remote half changes: conv is read without the lock.
	c.key.remote = to
	d.sessions[c.key] = c
	c.pc.remote.Store(&to)
	return nil
}

// remove forgets c's session; packets for it are dropped from now on.
func (d *Demux) remove(c *Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sessions[c.key] == c {
		delete(d.sessions, c.key)
	}
}

// unmap turns an IPv4-mapped IPv6 address (as a dual-stack socket reports
// IPv4 peers) into plain IPv4, so a peer has one key however it is named.
func unmap(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
