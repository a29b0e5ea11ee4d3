package punch

import (
	"context"
	"crypto/hmac"
	cryptorand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warren-p2p/warren/internal/conf"
)

// UDP punch packets: magic | type | nonce | tag, where tag authenticates
// magic, type and nonce with a key derived from the session, so a stray
// packet (a scanner, an old session) never completes a punch.
const (
	udpMagic     = "WRU\x01"
	udpNonceLen  = 8
	udpTagLen    = 16
	udpPacketLen = len(udpMagic) + 1 + udpNonceLen + udpTagLen

	udpPing     byte = 1 // "can you hear me?"
	udpPong     byte = 2 // "I heard you"
	udpNominate byte = 3 // "use this path" (from the controlling side)
	udpRoam     byte = 4 // "I am here now" (on an established path; the nonce is a counter)
)

// UDPPrefix is the first bytes of every UDP punch packet, for
// demultiplexers that share the socket afterwards.
const UDPPrefix = udpMagic

// ErrUDPNoPath is returned when the UDP strategy has nothing to try.
var ErrUDPNoPath = errors.New("no direct UDP path for this NAT pair")

func (s SessionID) udpKey() []byte {
	h := sha256.Sum256(append([]byte("warren udp punch "), s[:]...))
	return h[:]
}

// Conv returns the value both peers derive for session s's KCP
// conversation ID; transport.MakeConv turns it into a valid one (its
// first byte on the wire never that of a punch packet).
func (s SessionID) Conv() uint32 {
	h := sha256.Sum256(append([]byte("warren kcp conv "), s[:]...))
	return binary.LittleEndian.Uint32(h[:4])
}

func sealPacket(key []byte, typ byte, nonce []byte) []byte {
	p := make([]byte, 0, udpPacketLen)
	p = append(p, udpMagic...)
	p = append(p, typ)
	p = append(p, nonce...)
	m := hmac.New(sha256.New, key)
	m.Write(p)
	return m.Sum(p)[:udpPacketLen]
}

// openPacket checks p and returns its type.
func openPacket(key, p []byte) (byte, bool) {
	if len(p) != udpPacketLen || string(p[:len(udpMagic)]) != udpMagic {
		return 0, false
	}
	body := p[:udpPacketLen-udpTagLen]
	m := hmac.New(sha256.New, key)
	m.Write(body)
	if !hmac.Equal(m.Sum(nil)[:udpTagLen], p[len(body):]) {
		return 0, false
	}
	return p[len(udpMagic)], true
}

// RoamPacket returns an authenticated "I am here" packet for an
// established UDP path of session s. seq must grow from packet to packet:
// the receiver ignores any it has seen a higher one than, so a captured
// packet replayed from elsewhere cannot move the path.
func (s SessionID) RoamPacket(seq uint64) []byte {
	return sealPacket(s.udpKey(), udpRoam, binary.BigEndian.AppendUint64(nil, seq))
}

// ParseRoam checks a packet made by RoamPacket for session s and returns
// its sequence number.
func (s SessionID) ParseRoam(p []byte) (uint64, bool) {
	typ, ok := openPacket(s.udpKey(), p)
	if !ok || typ != udpRoam {
		return 0, false
	}
	return binary.BigEndian.Uint64(p[len(udpMagic)+1:]), true
}

// UDPConfig tunes UDP punching. A zero field means its default; a
// negative one is an error (Verify; PunchUDP refuses it).
type UDPConfig struct {
	// Rate caps the packets per second a spray sends: bursts get users
	// flagged as port scanners. Default 2000 (DefaultSprayRate).
	Rate int
	// MaxProbes caps the packets one spray sends in all. Default 4096.
	MaxProbes int
	// Sockets is how many sockets the random-port side of a birthday
	// punch opens. Default 256.
	Sockets int
	// Window is the first prediction window, in ports, for a sequential
	// NAT; it doubles each round up to 16 times that. Default 32.
	Window int
	// Interval is how often a fixed endpoint is pinged. Default 50ms.
	Interval time.Duration
}

// DefaultSprayRate is UDPConfig.Rate's default, and [link] spray_rate's.
const DefaultSprayRate = 2000

// DefaultUDPConfig returns a UDPConfig with every default filled in.
func DefaultUDPConfig() UDPConfig {
	return UDPConfig{Rate: DefaultSprayRate, MaxProbes: 4096, Sockets: 256, Window: 32, Interval: 50 * time.Millisecond}
}

func (c *UDPConfig) withDefaults() UDPConfig {
	d := DefaultUDPConfig()
	if c == nil {
		return d
	}
	out := *c
	conf.Default(&out.Rate, d.Rate)
	conf.Default(&out.MaxProbes, d.MaxProbes)
	conf.Default(&out.Sockets, d.Sockets)
	conf.Default(&out.Window, d.Window)
	conf.Default(&out.Interval, d.Interval)
	return out
}

// Verify reports whether c (nil means defaults) is usable.
func (c *UDPConfig) Verify() error {
	if c == nil {
		return nil
	}
	return errors.Join(conf.NotNegative("punch: Rate", c.Rate), conf.NotNegative("punch: MaxProbes", c.MaxProbes),
		conf.NotNegative("punch: Sockets", c.Sockets), conf.NotNegative("punch: Window", c.Window),
		conf.NotNegative("punch: Interval", c.Interval))
}

// PacketConn is what a UDP punch needs of a socket. *net.UDPConn has it;
// unit tests substitute sockets behind a simulated NAT.
type PacketConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	SetReadDeadline(t time.Time) error
	Close() error
}

// UDPSession describes one side's UDP punch.
type UDPSession struct {
	ID SessionID
	// Controlling is true on the side with the lower key: it nominates
	// the path, the other side waits for the nomination.
	Controlling bool
	Role        UDPRole
	// Peer is the peer's NAT, as it reported it.
	Peer NAT
	// PeerEndpoint is the peer's session socket as the rendezvous server
	// saw it: the exact endpoint for an easy NAT, the base of the port
	// prediction for a sequential one, the address for a random one.
	PeerEndpoint netip.AddrPort
	// LAN are endpoints at which the peer's session socket may be reached
	// without a NAT (its interface addresses); they are pinged alongside
	// the role, so peers behind one NAT that does not hairpin still meet.
	LAN []netip.AddrPort
	// Listen opens extra sockets (RoleManySockets). Default: UDP on an
	// ephemeral port.
	Listen func() (PacketConn, error)
	// Stream names the protocol the controlling side will run over the
	// path (opaque here); it travels, authenticated, in the nomination,
	// so both sides agree whatever each prefers.
	Stream byte
}

// UDPResult is a punched UDP path: a socket and the peer's endpoint as
// seen from it. The caller owns Conn, which is the session socket or one
// that Listen returned.
type UDPResult struct {
	Conn   PacketConn
	Remote netip.AddrPort
	// Stream is the controlling side's Stream: what both sides run.
	Stream byte
	// Sent is how many punch packets this side sent, for logs: a spray
	// that needs far more than its odds say points at a NAT that does
	// not behave as classified.
	Sent int
}

type udpEvent struct {
	sock   PacketConn
	from   netip.AddrPort
	typ    byte
	stream byte // a nomination's Stream
}

// PunchUDP punches from sock (the session socket whose mapping the server
// observed) following s.Role, until a path is nominated or ctx ends. It
// takes ownership of sock: on success sock or one of the extra sockets is
// returned in the result and every other socket is closed; on failure all
// are closed.
func PunchUDP(ctx context.Context, cfg *UDPConfig, s UDPSession, sock PacketConn) (UDPResult, error) {
	if err := cfg.Verify(); err != nil {
		sock.Close()
		return UDPResult{}, err
	}
	c := cfg.withDefaults()
	if (s.Role == RoleNone || s.Role == "" || !s.PeerEndpoint.IsValid()) && len(s.LAN) == 0 {
		sock.Close()
		return UDPResult{}, ErrUDPNoPath
	}
	if s.Listen == nil {
		s.Listen = func() (PacketConn, error) { return net.ListenUDP("udp", nil) }
	}
	p := &udpPuncher{cfg: c, s: s, key: s.ID.udpKey(), events: make(chan udpEvent, 64), done: make(chan struct{})}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.add(sock)
	if s.Role == RoleManySockets {
		for range c.Sockets - 1 {
			extra, err := s.Listen()
			if err != nil {
				break // fewer sockets only lowers the odds
			}
			p.add(extra)
		}
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.send(ctx)
	}()
	if len(s.LAN) > 0 {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.pingEvery(ctx, []PacketConn{sock}, s.LAN)
		}()
	}
	res, err := p.await(ctx)
	cancel()
	p.stop(res.Conn)
	res.Sent = int(p.sent.Load())
	return res, err
}

type udpPuncher struct {
	cfg    UDPConfig
	s      UDPSession
	key    []byte
	events chan udpEvent
	done   chan struct{}
	socks  []PacketConn
	wg     sync.WaitGroup
	sent   atomic.Int64
}

func (p *udpPuncher) add(sock PacketConn) {
	p.socks = append(p.socks, sock)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.read(sock)
	}()
}

// read delivers authenticated punch packets from one socket. After the
// packet that ends the punch on this side (a pong for the controlling side,
// the nomination for the other) it stops reading, so that what the peer
// sends next (its first KCP packets) waits in the socket for whoever takes
// the socket over, instead of being read here and dropped.
func (p *udpPuncher) read(sock PacketConn) {
	final := udpNominate
	if p.s.Controlling {
		final = udpPong
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := sock.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		typ, ok := openPacket(p.key, buf[:n])
		if !ok {
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		select {
		case p.events <- udpEvent{sock: sock, from: from, typ: typ, stream: buf[len(udpMagic)+1]}:
		case <-p.done:
			return
		}
		if typ == final {
			return
		}
	}
}

func (p *udpPuncher) write(sock PacketConn, typ byte, to netip.AddrPort) {
	nonce := make([]byte, udpNonceLen)
	cryptorand.Read(nonce)
	if typ == udpNominate {
		nonce[0] = p.s.Stream
	}
	sock.WriteToUDPAddrPort(sealPacket(p.key, typ, nonce), to)
	p.sent.Add(1)
}

// await answers pings and returns the nominated path.
func (p *udpPuncher) await(ctx context.Context) (UDPResult, error) {
	for {
		select {
		case ev := <-p.events:
			switch ev.typ {
			case udpPing:
				p.write(ev.sock, udpPong, ev.from)
			case udpPong:
				if p.s.Controlling {
					// Three copies: the nomination has no ack, and losing
					// it costs a whole punch session.
					for range 3 {
						p.write(ev.sock, udpNominate, ev.from)
					}
					return UDPResult{Conn: ev.sock, Remote: ev.from, Stream: p.s.Stream}, nil
				}
			case udpNominate:
				if !p.s.Controlling {
					return UDPResult{Conn: ev.sock, Remote: ev.from, Stream: ev.stream}, nil
				}
			}
		case <-ctx.Done():
			return UDPResult{}, fmt.Errorf("udp punch (%s): %w", p.s.Role, ctx.Err())
		}
	}
}

// stop ends the readers and the sender and closes every socket but keep.
func (p *udpPuncher) stop(keep PacketConn) {
	close(p.done)
	for _, s := range p.socks {
		if s == keep {
			s.SetReadDeadline(time.Unix(1, 0))
		} else {
			s.Close()
		}
	}
	p.wg.Wait()
	if keep != nil {
		keep.SetReadDeadline(time.Time{})
	}
}

// pingEvery pings each of targets from each of socks every Interval until
// ctx ends.
func (p *udpPuncher) pingEvery(ctx context.Context, socks []PacketConn, targets []netip.AddrPort) {
	for ctx.Err() == nil {
		for _, s := range socks {
			for _, t := range targets {
				p.write(s, udpPing, t)
			}
		}
		select {
		case <-time.After(p.cfg.Interval):
		case <-ctx.Done():
			return
		}
	}
}

// send runs this side's role until it is done or ctx ends.
func (p *udpPuncher) send(ctx context.Context) {
	if p.s.Role == RoleNone || !p.s.PeerEndpoint.IsValid() {
		return
	}
	pace := newPacer(p.cfg.Rate)
	defer pace.stop()
	paced := func(sock PacketConn, to netip.AddrPort) bool {
		if !pace.wait(ctx) {
			return false
		}
		p.write(sock, udpPing, to)
		return true
	}
	main := p.socks[0]
	peerIP := p.s.PeerEndpoint.Addr()
	switch p.s.Role {
	case RoleDirect:
		p.pingEvery(ctx, []PacketConn{main}, []netip.AddrPort{p.s.PeerEndpoint})
	case RoleManySockets:
		// Each socket's first packet opens a fresh mapping towards the
		// peer, all to one destination: no scan, so no pacing. Repeats
		// keep the mappings open while the peer searches.
		p.pingEvery(ctx, p.socks, []netip.AddrPort{p.s.PeerEndpoint})
	case RoleSprayWindow:
		sent := 0
		for window := p.cfg.Window; ctx.Err() == nil && sent < p.cfg.MaxProbes; window = min(2*window, 16*p.cfg.Window) {
			// Ports in rising order: when both sides spray (seq/seq),
			// each side's i-th new mapping meets the other's i-th.
			for _, port := range PredictPorts(p.s.Peer, p.s.PeerEndpoint.Port(), window, 0) {
				if !paced(main, netip.AddrPortFrom(peerIP, port)) {
					return
				}
				sent++
			}
		}
	case RoleSprayRandom:
		// The peer's own endpoint first (its NAT may have kept the
		// port), then random ports above the reserved range.
		if !paced(main, p.s.PeerEndpoint) {
			return
		}
		for range p.cfg.MaxProbes {
			port := uint16(1024 + rand.IntN(65536-1024))
			if !paced(main, netip.AddrPortFrom(peerIP, port)) {
				return
			}
		}
	}
}

// pacer spreads sends at rate per second. A Go timer sleeps no finer than
// about a millisecond, so one packet per tick would cap a spray at ~1000
// packets/s whatever the rate; instead each tick pays out the packets that
// came due since the last, never more than pacerBurst's worth at once, so
// a stalled sender does not catch up in a scanner-like burst.
type pacer struct {
	rate  float64
	start time.Time
	sent  int
	tick  *time.Ticker
}

const pacerBurst = 5 * time.Millisecond

func newPacer(rate int) *pacer {
	return &pacer{rate: float64(rate), start: time.Now(), tick: time.NewTicker(time.Second / time.Duration(rate))}
}

// wait returns when the next packet may go, or false when ctx ends.
func (pc *pacer) wait(ctx context.Context) bool {
	burst := max(1, int(pc.rate*pacerBurst.Seconds()))
	for {
		due := int(time.Since(pc.start).Seconds() * pc.rate)
		if due-pc.sent > burst {
			pc.sent = due - burst
		}
		if pc.sent < due {
			pc.sent++
			return true
		}
		select {
		case <-pc.tick.C:
		case <-ctx.Done():
			return false
		}
	}
}

func (pc *pacer) stop() { pc.tick.Stop() }
