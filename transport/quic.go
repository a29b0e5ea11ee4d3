package transport

import (
	"bytes"
	"context"
	cryptorand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/ipv4"

	"github.com/warren-p2p/warren/internal/conf"
)

// QUIC is the second way to carry a stream over a punched socket. It is
// faster than KCP because quic-go batches: it sends a burst of packets in
// one sendmsg with UDP segmentation offload, and reads with recvmmsg, so
// per-packet system-call and NAT costs are shared by dozens of packets.
//
// A QUICSocket owns the punched socket, as a Demux does, and shares it the
// same way: datagrams that start with a registered prefix go to its
// handler, everything else to quic-go. QUIC short-header packets can begin
// with PrefixByte, so the prefixes here must begin with quicReserved, and
// this side's connection IDs (the bytes that follow the first in every
// short-header packet the peer sends) never begin with its second byte.

// quicReserved begins every prefix a QUICSocket routes to a handler.
const quicReserved = "WR"

// quicALPN names the protocol inside QUIC's handshake. Version 2: the
// handshake authenticates both peers for the link above, which runs no
// TLS of its own over the stream. Version 1 carried the link's TLS inside
// QUIC's, and a peer that speaks it fails the handshake with
// ErrQUICVersion.
const quicALPN = "warren-stream/2"

// ErrQUICVersion is what Dial returns when the peer speaks another
// version of the stream (another ALPN): a warren from before the link
// took QUIC's handshake as its own.
var ErrQUICVersion = errors.New("transport: the peer speaks another version of warren's QUIC stream (" + quicALPN + "); upgrade the older end")

// tlsAlertNoApplicationProtocol is the TLS alert (RFC 7301) a QUIC
// handshake fails with when the two ends share no ALPN; QUIC carries it
// as CRYPTO_ERROR 0x100 + alert (RFC 9001 section 4.8).
const tlsAlertNoApplicationProtocol = 120

// quicHello is the first byte the dialling side writes on its stream: QUIC
// announces a stream to the peer only with its first data, and the
// accepting side should not wait for the link layer's first message.
const quicHello = 0x57

// QUICConfig tunes a QUIC stream. A zero field means its default, a
// negative one is an error (Verify; Dial refuses it); a nil *QUICConfig
// means all defaults.
type QUICConfig struct {
	// HandshakeTimeout bounds the QUIC handshake. Default 5s.
	HandshakeTimeout time.Duration
	// KeepAlive is how often an otherwise idle connection sends a ping,
	// which also keeps the NAT mappings open. Default 10s.
	KeepAlive time.Duration
	// IdleTimeout declares the peer gone after this long without a packet
	// from it. Default 30s.
	IdleTimeout time.Duration
	// Window is the most a stream (and the connection) may have in flight
	// unacknowledged: the bandwidth-delay product it can fill. quic-go
	// grows the window towards it as the transfer proves the path.
	// Default 16 MiB.
	Window int
	// CloseTimeout bounds how long Close waits for the peer to finish its
	// side before the connection is torn down. Default 5s.
	CloseTimeout time.Duration
}

// DefaultQUICConfig returns a QUICConfig with every default filled in.
func DefaultQUICConfig() QUICConfig {
	return QUICConfig{HandshakeTimeout: 5 * time.Second, KeepAlive: 10 * time.Second,
		IdleTimeout: 30 * time.Second, Window: 16 << 20, CloseTimeout: 5 * time.Second}
}

func (c *QUICConfig) withDefaults() QUICConfig {
	d := DefaultQUICConfig()
	if c == nil {
		return d
	}
	out := *c
	conf.Default(&out.HandshakeTimeout, d.HandshakeTimeout)
	conf.Default(&out.KeepAlive, d.KeepAlive)
	conf.Default(&out.IdleTimeout, d.IdleTimeout)
	conf.Default(&out.Window, d.Window)
	conf.Default(&out.CloseTimeout, d.CloseTimeout)
	return out
}

// Verify reports whether c (nil means defaults) is usable.
func (c *QUICConfig) Verify() error {
	if c == nil {
		return nil
	}
	return errors.Join(conf.NotNegative("transport: QUIC HandshakeTimeout", c.HandshakeTimeout),
		conf.NotNegative("transport: QUIC KeepAlive", c.KeepAlive), conf.NotNegative("transport: QUIC IdleTimeout", c.IdleTimeout),
		conf.NotNegative("transport: QUIC Window", c.Window), conf.NotNegative("transport: QUIC CloseTimeout", c.CloseTimeout))
}

// QUICSocket shares one punched UDP socket between a single QUIC
// connection and prefix handlers, and can follow the peer to a new
// endpoint (Rebind) without quic-go noticing.
type QUICSocket struct {
	conn     *net.UDPConn
	batch    *ipv4.PacketConn
	handlers handlerTable
	tr       *quic.Transport

	// alias is the peer's move, if it moved: quic-go keeps addressing the
	// endpoint it connected to, and the socket translates.
	alias atomic.Pointer[quicAlias]

	// gro is set when the kernel coalesces received datagrams; quic-go
	// does not expect that, so ReadBatch splits them (see groReader).
	gro *groReader

	closeOnce sync.Once
}

type quicAlias struct{ orig, cur netip.AddrPort }

// NewQUICSocket takes ownership of conn (Close closes it) and enlarges its
// socket buffers to SocketBuffer. conn must not be read by anyone else
// from now on; write to it through WriteTo.
func NewQUICSocket(conn *net.UDPConn) (*QUICSocket, error) {
	if conn == nil {
		return nil, errors.New("transport: NewQUICSocket: nil conn")
	}
	setSocketBuffers(conn, SocketBuffer)
	s := &QUICSocket{conn: conn, batch: ipv4.NewPacketConn(conn)}
	s.handlers.init()
	if enableGRO(conn) {
		s.gro = newGROReader()
	}
	s.tr = &quic.Transport{
		Conn:                  (*quicPacketConn)(s),
		ConnectionIDGenerator: quicConnIDs{},
		// Nothing but our peer should talk QUIC to this socket.
		DisableVersionNegotiationPackets: true,
	}
	return s, nil
}

// LocalAddr returns the socket's local address.
func (s *QUICSocket) LocalAddr() net.Addr { return s.conn.LocalAddr() }

// Handle routes datagrams that start with prefix to fn; a nil fn removes
// the prefix's handler. The prefix must start with "WR", be at most 16
// bytes and not overlap another handler's. fn runs on quic-go's read
// goroutine and must return quickly; pkt is valid only until it returns.
func (s *QUICSocket) Handle(prefix []byte, fn func(pkt []byte, from netip.AddrPort)) error {
	if !bytes.HasPrefix(prefix, []byte(quicReserved)) {
		return fmt.Errorf("%w: %q does not start with %q", ErrBadPrefix, prefix, quicReserved)
	}
	return s.handlers.set(prefix, fn)
}

// WriteTo sends one prefixed datagram (a punch or roam packet).
func (s *QUICSocket) WriteTo(b []byte, to netip.AddrPort) (int, error) {
	if !bytes.HasPrefix(b, []byte(quicReserved)) {
		return 0, fmt.Errorf("transport: write to %v: datagram does not start with %q", to, quicReserved)
	}
	return writeUDP(s.conn, b, to)
}

// Rebind moves the peer that the connection was opened to (orig) to
// endpoint to: packets for orig go to to, and packets from to reach quic-go
// as from orig. QUIC would validate a new path itself only when the client
// moves; either side may be the one whose NAT rebinds, and our roam
// packets have already authenticated the move.
func (s *QUICSocket) Rebind(orig, to netip.AddrPort) {
	orig, to = unmap(orig), unmap(to)
	if orig == to {
		s.alias.Store(nil)
		return
	}
	s.alias.Store(&quicAlias{orig: orig, cur: to})
}

// Close closes the QUIC transport and the socket, ending every stream.
func (s *QUICSocket) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.tr.Close()
		err = s.conn.Close()
	})
	return err
}

// Dial opens the QUIC connection to remote and its one stream. Exactly one
// side dials (client true) and the other accepts (client false), which
// takes only a connection from remote. tlsConf authenticates the QUIC
// handshake, and it is the stream's only authentication and encryption:
// it must present this end's certificate and verify the peer's (the link
// layer's TLS configuration does, and the link checks the outcome again,
// QUICStream.TLSState). Session resumption is off, so every handshake
// proves both keys afresh.
func (s *QUICSocket) Dial(ctx context.Context, remote netip.AddrPort, client bool, tlsConf *tls.Config, cfg *QUICConfig) (*QUICStream, error) {
	if err := cfg.Verify(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	remote = unmap(remote)
	tlsConf = tlsConf.Clone()
	tlsConf.NextProtos = []string{quicALPN}
	tlsConf.SessionTicketsDisabled = true
	qc := &quic.Config{
		HandshakeIdleTimeout:           c.HandshakeTimeout,
		MaxIdleTimeout:                 c.IdleTimeout,
		KeepAlivePeriod:                c.KeepAlive,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         uint64(c.Window),
		InitialConnectionReceiveWindow: 3 << 19,
		MaxConnectionReceiveWindow:     uint64(c.Window) * 3 / 2,
		MaxIncomingStreams:             1,
		MaxIncomingUniStreams:          -1,
		// QUIC's smallest datagram, which a 1280-byte path carries with
		// IPv6 and UDP headers; path MTU discovery (DPLPMTUD, which needs
		// no ICMP) grows it. quic-go starts at 1280, which such a path
		// drops silently where it drops ICMP too: no handshake at all.
		InitialPacketSize: 1200,
	}
	ctx, cancel := context.WithTimeout(ctx, c.HandshakeTimeout)
	defer cancel()
	var (
		conn *quic.Conn
		st   *quic.Stream
		err  error
	)
	if client {
		conn, st, err = s.dial(ctx, remote, tlsConf, qc)
	} else {
		conn, st, err = s.accept(ctx, remote, tlsConf, qc)
	}
	if err != nil {
		return nil, fmt.Errorf("quic %v: %w", remote, versionError(err))
	}
	return &QUICStream{Stream: st, conn: conn, cfg: c, done: make(chan struct{}), closed: make(chan struct{})}, nil
}

func (s *QUICSocket) dial(ctx context.Context, remote netip.AddrPort, tlsConf *tls.Config, qc *quic.Config) (*quic.Conn, *quic.Stream, error) {
	conn, err := s.tr.Dial(ctx, net.UDPAddrFromAddrPort(remote), tlsConf, qc)
	if err != nil {
		return nil, nil, err
	}
	st, err := conn.OpenStreamSync(ctx)
	if err == nil {
		_, err = st.Write([]byte{quicHello})
	}
	if err != nil {
		conn.CloseWithError(0, "")
		return nil, nil, err
	}
	return conn, st, nil
}

func (s *QUICSocket) accept(ctx context.Context, remote netip.AddrPort, tlsConf *tls.Config, qc *quic.Config) (*quic.Conn, *quic.Stream, error) {
	var refused refusal
	ln, err := s.tr.Listen(refused.watch(tlsConf), qc)
	if err != nil {
		return nil, nil, err
	}
	// Closing the listener leaves accepted connections alone.
	defer ln.Close()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return nil, nil, refused.explain(err)
		}
		if from, ok := conn.RemoteAddr().(*net.UDPAddr); !ok || unmap(from.AddrPort()) != remote {
			conn.CloseWithError(quicErrWrongPeer, "not the punched peer")
			continue
		}
		st, err := conn.AcceptStream(ctx)
		if err == nil {
			var hello [1]byte
			if _, err = st.Read(hello[:]); err == nil && hello[0] != quicHello {
				err = errors.New("bad stream hello")
			}
		}
		if err != nil {
			conn.CloseWithError(quicErrWrongPeer, "")
			return nil, nil, err
		}
		return conn, st, nil
	}
}

const quicErrWrongPeer quic.ApplicationErrorCode = 1

// refusal is the last handshake a listener refused, and why. quic-go's
// listener drops a connection whose handshake failed without a word, so
// an accept that then times out would not say that a peer did come, with
// a key not pinned or another version of the stream.
type refusal struct{ last atomic.Pointer[error] }

// watch returns conf with its checks of the client (its ALPN, its
// certificate) reporting their refusals to r.
func (r *refusal) watch(conf *tls.Config) *tls.Config {
	conf = conf.Clone()
	conf.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if !slices.Contains(hello.SupportedProtos, quicALPN) {
			err := fmt.Errorf("%w: it offered %q", ErrQUICVersion, hello.SupportedProtos)
			r.last.Store(&err)
		}
		return nil, nil // conf itself, which refuses such a client
	}
	if verify := conf.VerifyPeerCertificate; verify != nil {
		conf.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
			err := verify(raw, chains)
			if err != nil {
				r.last.Store(&err)
			}
			return err
		}
	}
	return conf
}

// explain adds the last refusal, if any, to the error an accept failed
// with.
func (r *refusal) explain(err error) error {
	if last := r.last.Load(); last != nil {
		return fmt.Errorf("%w (refused a handshake: %w)", err, *last)
	}
	return err
}

// versionError names a handshake that failed because the two ends share
// no ALPN, which is how a peer of another stream version fails: QUIC's
// own message ("no application protocol") does not say what to do.
func versionError(err error) error {
	var te *quic.TransportError
	if errors.As(err, &te) && te.ErrorCode == quic.TransportErrorCode(0x100+tlsAlertNoApplicationProtocol) {
		return fmt.Errorf("%w: %w", ErrQUICVersion, err)
	}
	return err
}

// QUICStream is the one stream of a QUIC connection, as a net.Conn. Close
// ends this side's writing and then, once the peer has ended its side too
// (at most CloseTimeout later), the connection; Done is closed then.
// Closing the stream does not close the QUICSocket.
type QUICStream struct {
	*quic.Stream
	conn *quic.Conn
	cfg  QUICConfig

	// readMu is held shared by Reads. Close takes it once, after failing
	// them with a past deadline, so that its drain's deadline cannot
	// reach a Read still blocked from before.
	readMu    sync.RWMutex
	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{}
}

var _ net.Conn = (*QUICStream)(nil)

// LocalAddr returns the local endpoint of the connection.
func (q *QUICStream) LocalAddr() net.Addr { return q.conn.LocalAddr() }

// RemoteAddr returns the endpoint the connection was opened to (also after
// a Rebind).
func (q *QUICStream) RemoteAddr() net.Addr { return q.conn.RemoteAddr() }

// Read reads from the stream; after Close it returns net.ErrClosed, and a
// Read blocked at Close returns at once.
func (q *QUICStream) Read(b []byte) (int, error) {
	q.readMu.RLock()
	defer q.readMu.RUnlock()
	if isClosed(q.closed) {
		return 0, net.ErrClosed
	}
	return q.Stream.Read(b)
}

// Write writes to the stream; after Close it returns net.ErrClosed.
func (q *QUICStream) Write(b []byte) (int, error) {
	if isClosed(q.closed) {
		return 0, net.ErrClosed
	}
	return q.Stream.Write(b)
}

// Close ends this side's writing at once and tears the connection down in
// the background: after the peer's end of stream, so that what both sides
// wrote is delivered, or after CloseTimeout.
func (q *QUICStream) Close() error {
	q.closeOnce.Do(func() {
		close(q.closed)
		q.Stream.Close()
		q.Stream.SetReadDeadline(time.Unix(1, 0))
		go func() {
			defer close(q.done)
			// A barrier: every Read from before Close has returned.
			q.readMu.Lock()
			q.readMu.Unlock()
			q.Stream.SetReadDeadline(time.Now().Add(q.cfg.CloseTimeout))
			buf := make([]byte, 16<<10)
			for {
				if _, err := q.Stream.Read(buf); err != nil {
					break
				}
			}
			// The peer may still be waiting for the acknowledgement of its
			// FIN; a connection close that raced ahead of it would reach
			// the peer as an error. One round trip is plenty.
			select {
			case <-time.After(2 * q.conn.ConnectionStats().SmoothedRTT):
			case <-q.conn.Context().Done():
			}
			q.conn.CloseWithError(0, "")
		}()
	})
	return nil
}

// Done is closed once a closed stream's connection is torn down.
func (q *QUICStream) Done() <-chan struct{} { return q.done }

// TLSState returns the state of the connection's TLS 1.3 handshake, which
// authenticated both ends and keys the stream's encryption (and the link's
// exporter): the link takes it as its own (link.Secured).
func (q *QUICStream) TLSState() (tls.ConnectionState, bool) {
	return q.conn.ConnectionState().TLS, true
}

// quicConnIDs makes this side's connection IDs: random, and never
// starting with 'R', so that no short-header packet the peer sends begins
// with quicReserved.
type quicConnIDs struct{}

const quicConnIDLen = 8

func (quicConnIDs) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [quicConnIDLen]byte
	if _, err := cryptorand.Read(b[:]); err != nil {
		return quic.ConnectionID{}, err
	}
	if b[0] == quicReserved[1] {
		b[0] ^= 0x80
	}
	return quic.ConnectionIDFromBytes(b[:]), nil
}

func (quicConnIDs) ConnectionIDLen() int { return quicConnIDLen }

// quicPacketConn is the QUICSocket as quic-go sees it: the UDP socket with
// prefixed datagrams taken out and the peer's move translated. It has
// every method quic-go looks for to batch reads (ReadBatch, recvmmsg) and
// writes (WriteMsgUDP with a segmentation-offload control message), so
// the batching survives the wrapping.
type quicPacketConn QUICSocket

// ReadBatch reads datagrams in one recvmmsg. Handled ones are passed on
// and left in the batch empty, which quic-go skips: its buffers are tied to
// batch positions, so the batch cannot be compacted.
func (p *quicPacketConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	if p.gro != nil {
		return p.readSplit(ms, flags)
	}
	n, err := p.batch.ReadBatch(ms, flags)
	alias := p.alias.Load()
	for i := range n {
		m := &ms[i]
		from, ok := m.Addr.(*net.UDPAddr)
		if !ok {
			continue
		}
		if p.divert(m.Buffers[0][:m.N], from) {
			m.N = 0
			continue
		}
		m.Addr = seenFrom(from, alias)
	}
	return n, err
}

// groReader holds what one recvmmsg on a GRO socket returned: coalesced
// datagrams, split into the segments quic-go reads one by one.
type groReader struct {
	msgs    []ipv4.Message
	pending []groSegment
	next    int // pending[next:] are still to be read
}

type groSegment struct {
	data []byte
	oob  []byte
	from *net.UDPAddr // the sender, for handlers
	seen *net.UDPAddr // the sender as quic-go sees it
}

const (
	groBatch  = 8
	groBufLen = 1 << 16 // the largest coalesced datagram
)

func newGROReader() *groReader {
	g := &groReader{msgs: make([]ipv4.Message, groBatch)}
	for i := range g.msgs {
		g.msgs[i].Buffers = [][]byte{make([]byte, groBufLen)}
		g.msgs[i].OOB = make([]byte, 256)
	}
	return g
}

// readSplit fills ms with single datagrams, reading the socket only when
// the last read's segments are used up (they point into its buffers).
func (p *quicPacketConn) readSplit(ms []ipv4.Message, flags int) (int, error) {
	g := p.gro
	for {
		if g.next == len(g.pending) {
			g.pending, g.next = g.pending[:0], 0
			n, err := p.batch.ReadBatch(g.msgs, flags)
			if err != nil {
				return 0, err
			}
			alias := p.alias.Load()
			for _, m := range g.msgs[:n] {
				from, ok := m.Addr.(*net.UDPAddr)
				if !ok {
					continue
				}
				data, oob := m.Buffers[0][:m.N], m.OOB[:m.NN]
				size := groSegmentSize(oob)
				if size <= 0 {
					size = len(data)
				}
				seen := seenFrom(from, alias)
				for len(data) > 0 {
					seg := data[:min(size, len(data))]
					data = data[len(seg):]
					g.pending = append(g.pending, groSegment{data: seg, oob: oob, from: from, seen: seen})
				}
			}
		}
		j := 0
		for j < len(ms) && g.next < len(g.pending) {
			seg := g.pending[g.next]
			g.next++
			if p.divert(seg.data, seg.from) {
				continue
			}
			m := &ms[j]
			m.N = copy(m.Buffers[0], seg.data)
			m.NN = 0
			if len(seg.oob) <= len(m.OOB) { // a cut control message would be an error
				m.NN = copy(m.OOB, seg.oob)
			}
			m.Addr = seg.seen
			m.Flags = 0
			j++
		}
		if j > 0 {
			return j, nil
		}
	}
}

// divert passes a prefixed datagram to its handler and reports whether it
// did.
func (p *quicPacketConn) divert(pkt []byte, from *net.UDPAddr) bool {
	if len(pkt) < len(quicReserved) || string(pkt[:len(quicReserved)]) != quicReserved {
		return false
	}
	fn := p.handlers.lookup(pkt)
	if fn == nil {
		return false
	}
	fn(pkt, unmap(from.AddrPort()))
	return true
}

// seenFrom is the sender of a QUIC datagram as quic-go should see it: the
// endpoint it connected to, if the peer moved from there to from.
func seenFrom(from *net.UDPAddr, alias *quicAlias) *net.UDPAddr {
	if alias != nil && unmap(from.AddrPort()) == alias.cur {
		return net.UDPAddrFromAddrPort(alias.orig)
	}
	return from
}

func (p *quicPacketConn) to(addr *net.UDPAddr) *net.UDPAddr {
	if alias := p.alias.Load(); alias != nil && addr != nil && unmap(addr.AddrPort()) == alias.orig {
		return net.UDPAddrFromAddrPort(alias.cur)
	}
	return addr
}

func (p *quicPacketConn) ReadMsgUDP(b, oob []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	for {
		n, oobn, flags, addr, err = p.conn.ReadMsgUDP(b, oob)
		if err != nil || addr == nil {
			return n, oobn, flags, addr, err
		}
		if !p.divert(b[:n], addr) {
			return n, oobn, flags, seenFrom(addr, p.alias.Load()), nil
		}
	}
}

func (p *quicPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, _, _, addr, err := p.ReadMsgUDP(b, nil)
	if addr == nil {
		return n, nil, err
	}
	return n, addr, err
}

func (p *quicPacketConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (n, oobn int, err error) {
	return p.conn.WriteMsgUDP(b, oob, p.to(addr))
}

func (p *quicPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok {
		addr = p.to(ua)
	}
	return p.conn.WriteTo(b, addr)
}

func (p *quicPacketConn) Close() error                       { return p.conn.Close() }
func (p *quicPacketConn) LocalAddr() net.Addr                { return p.conn.LocalAddr() }
func (p *quicPacketConn) SetDeadline(t time.Time) error      { return p.conn.SetDeadline(t) }
func (p *quicPacketConn) SetReadDeadline(t time.Time) error  { return p.conn.SetReadDeadline(t) }
func (p *quicPacketConn) SetWriteDeadline(t time.Time) error { return p.conn.SetWriteDeadline(t) }
func (p *quicPacketConn) SetReadBuffer(n int) error          { return p.conn.SetReadBuffer(n) }
func (p *quicPacketConn) SetWriteBuffer(n int) error         { return p.conn.SetWriteBuffer(n) }

func (p *quicPacketConn) SyscallConn() (syscall.RawConn, error) { return p.conn.SyscallConn() }
