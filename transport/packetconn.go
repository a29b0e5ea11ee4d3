package transport

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// packetConn is the net.PacketConn one kcp.UDPSession sees instead of the
// socket. ReadFrom returns the packets the demux queued for the session;
// WriteTo sends on the demux's socket to the session's remote; Close closes
// only this view.
//
// kcp-go's session over a PacketConn runs its own goroutine calling
// ReadFrom, and drops packets whose source differs (by String()) from the
// first packet's. The demux already routes by remote address, so ReadFrom
// always reports the same remote (an Addr whose String is computed once),
// and kcp-go's check never fires. Letting a stream follow its peer to a new
// address (roaming) therefore needs only the demux to re-key the session.
//
// On the way through, packetConn reads the KCP headers to learn what the
// peer has acknowledged, which kcp-go does not expose and Close needs (see
// acked).
type packetConn struct {
	d *Demux
	// remote is where packets go; Demux.Rebind moves it when the peer
	// roams. raddr stays the first remote: kcp-go only uses it as a label.
	remote atomic.Pointer[netip.AddrPort]
	raddr  *peerAddr
	in     chan *packet

	closeOnce sync.Once
	closed    chan struct{}

	lastRecv atomic.Int64 // UnixNano of the last packet from the peer (any kind)

	// Acknowledgement tracking, KCP sequence numbers (wrapping uint32).
	peerUna   atomic.Uint32 // the peer's "all below this received", highest seen
	nextSN    atomic.Uint32 // lowest sequence number not yet sent once
	sentBytes atomic.Uint64 // payload bytes of the segments below nextSN
}

func newPacketConn(d *Demux, remote netip.AddrPort) *packetConn {
	p := &packetConn{
		d:      d,
		raddr:  &peerAddr{s: remote.String()},
		in:     make(chan *packet, sessionQueue),
		closed: make(chan struct{}),
	}
	p.remote.Store(&remote)
	p.lastRecv.Store(time.Now().UnixNano())
	return p
}

// peerAddr is the remote as kcp-go sees it: it calls String on every
// packet, so the string is made once.
type peerAddr struct{ s string }

func (a *peerAddr) Network() string { return "udp" }
func (a *peerAddr) String() string  { return a.s }

// deliver queues p for the session without blocking; false means the
// queue is full (or the conn closed) and p was not taken.
func (p *packetConn) deliver(pkt *packet) bool {
	p.touch()
	if isClosed(p.closed) {
		return false
	}
	select {
	case p.in <- pkt:
		return true
	default:
		return false
	}
}

// touch records that the peer is alive.
func (p *packetConn) touch() { p.lastRecv.Store(time.Now().UnixNano()) }

func (p *packetConn) idle() time.Duration {
	return time.Duration(time.Now().UnixNano() - p.lastRecv.Load())
}

func (p *packetConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case pkt := <-p.in:
		n := copy(b, pkt.b[:pkt.n])
		p.d.pool.Put(pkt)
		p.trackIn(b[:n])
		return n, p.raddr, nil
	case <-p.closed:
		return 0, nil, &net.OpError{Op: "read", Net: "udp", Addr: p.raddr, Err: net.ErrClosed}
	}
}

// WriteTo sends b to the session's remote; addr (kcp-go passes the remote
// back) is ignored. Send errors other than close are swallowed: to KCP
// they are packet loss, which it repairs, whereas an error would make
// kcp-go fail every later Write on the session.
func (p *packetConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	if isClosed(p.closed) {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: p.raddr, Err: net.ErrClosed}
	}
	p.trackOut(b)
	_, _ = p.d.conn.WriteToUDPAddrPort(b, *p.remote.Load())
	return len(b), nil
}

func (p *packetConn) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

func (p *packetConn) LocalAddr() net.Addr { return p.d.local }

// Deadlines are never set by kcp-go's session on its conn; a closed view
// is how its reader stops.
func (p *packetConn) SetDeadline(time.Time) error      { return errNoDeadlines }
func (p *packetConn) SetReadDeadline(time.Time) error  { return errNoDeadlines }
func (p *packetConn) SetWriteDeadline(time.Time) error { return errNoDeadlines }

var errNoDeadlines = fmt.Errorf("transport: internal packet conn has no deadlines")

// KCP segment header: conv(4) cmd(1) frg(1) wnd(2) ts(4) sn(4) una(4) len(4),
// all little-endian, followed by len payload bytes (PUSH only); one packet
// carries one or more segments back to back.
const cmdPush = 81

func segments(pkt []byte, fn func(cmd byte, sn, una uint32, n int)) {
	for len(pkt) >= kcpHeaderLen {
		n := binary.LittleEndian.Uint32(pkt[20:])
		if uint64(n) > uint64(len(pkt)-kcpHeaderLen) {
			return // malformed; kcp-go rejects it too
		}
		fn(pkt[4], binary.LittleEndian.Uint32(pkt[12:]), binary.LittleEndian.Uint32(pkt[16:]), int(n))
		pkt = pkt[kcpHeaderLen+int(n):]
	}
}

// trackIn records the peer's cumulative acknowledgement. Only kcp-go's
// reader goroutine calls it.
func (p *packetConn) trackIn(pkt []byte) {
	segments(pkt, func(_ byte, _, una uint32, _ int) {
		if int32(una-p.peerUna.Load()) > 0 {
			p.peerUna.Store(una)
		}
	})
}

// trackOut counts first transmissions. kcp-go numbers segments as it
// moves them into its send buffer and transmits every new one in order in
// the same flush, so first transmissions arrive here in sequence; anything
// below nextSN is a retransmission. Only kcp-go's sender goroutine calls
// it.
func (p *packetConn) trackOut(pkt []byte) {
	segments(pkt, func(cmd byte, sn, _ uint32, n int) {
		if cmd == cmdPush && sn == p.nextSN.Load() {
			// nextSN first: acked loads sentBytes first, so it never
			// sees the bytes without the segment that carries them.
			p.nextSN.Store(sn + 1)
			p.sentBytes.Add(uint64(n))
		}
	})
}

// acked reports whether the peer has received, in order, all of the first
// total bytes written into the session.
func (p *packetConn) acked(total uint64) bool {
	if p.sentBytes.Load() < total {
		return false // some are still queued in KCP, unsent
	}
	return int32(p.peerUna.Load()-p.nextSN.Load()) >= 0
}
