package punch

// Fuzz targets for what punch reads from the network: the TCP punch hello
// (FuzzReadHello, and the shared port's acceptor as a whole in
// FuzzAcceptor), roam announcements (FuzzRoamAccept), the UDP punch exchange as a
// whole (FuzzPunchUDP) and the peer-reported NAT that port prediction and
// the strategy are computed from (FuzzPeerNAT). FuzzScopeCheck
// (scope_test.go) covers where a punch may send. FuzzOpenPacket (udp_test.go)
// covers the punch packet codec itself.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/warren-p2p/warren/internal/fuzztest"
)

// fzSession is a fixed session, so that inputs found once stay meaningful.
var fzSession = SessionID{0: 0x5e, 1: 0x55, 15: 0x01}

func FuzzReadHello(f *testing.F) {
	var hello bytes.Buffer
	writeHello(&hello, fzSession)
	f.Add(hello.Bytes())
	f.Add(append(bytes.Clone(hello.Bytes()), "\x16\x03\x01 and TLS after it"...))
	f.Add([]byte(helloMagic))
	f.Add([]byte("WRN\x02" + string(fzSession[:])))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		id, err := readHello(r)
		if consumed := len(in) - r.Len(); consumed > helloLen {
			t.Fatalf("read %d bytes, more than the %d-byte hello", consumed, helloLen)
		}
		valid := len(in) >= helloLen && string(in[:len(helloMagic)]) == helloMagic
		if (err == nil) != valid {
			t.Fatalf("readHello(%x) = %v, %v", in, id, err)
		}
		if err != nil {
			return
		}
		var re bytes.Buffer
		writeHello(&re, id)
		if !bytes.Equal(re.Bytes(), in[:helloLen]) {
			t.Fatalf("hello %x read as %v, which writes as %x", in[:helloLen], id, re.Bytes())
		}
	})
}

// FuzzRoamAccept: only announcements the peer's key sealed are accepted,
// each once, and never one this side made.
func FuzzRoamAccept(f *testing.F) {
	exp := fakeExporter([]byte("fuzz link"))
	peer, err := NewRoam(exp, true)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(peer.Announce())
	f.Add(sealPacket(peer.seal, udpRoam, []byte{0, 0, 0, 0, 0, 0, 0, 0}))
	f.Add(sealPacket(peer.seal, udpRoam, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}))
	f.Add(sealPacket(fzSession.udpKey(true), udpRoam, make([]byte, udpNonceLen)))
	f.Add([]byte(udpMagic + "\x04"))
	f.Fuzz(func(t *testing.T, p []byte) {
		me, err := NewRoam(exp, false)
		if err != nil {
			t.Fatal(err)
		}
		if me.Accept(me.Announce()) {
			t.Fatal("accepted its own announcement")
		}
		if !me.Accept(p) {
			return
		}
		if want := sealPacket(peer.seal, udpRoam, p[len(udpMagic)+1:len(udpMagic)+1+udpNonceLen]); !bytes.Equal(want, p) {
			t.Fatalf("accepted %x, which the peer's key did not seal (%x)", p, want)
		}
		if me.Accept(p) {
			t.Fatal("accepted the same announcement twice")
		}
	})
}

// fzLocal and fzRemote are the ends of every fake connection.
var (
	fzLocal  = &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 7000}
	fzRemote = &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 7001}
)

// newFzConn is a connection whose peer sent in and then nothing more.
func newFzConn(in []byte) *fuzztest.Conn { return fuzztest.NewConn(in, fzLocal, fzRemote) }

// FuzzAcceptor sends one inbound connection with arbitrary bytes to the
// shared port's acceptor, which has one session registered. Only a
// connection that opens with that session's hello may reach the session,
// answered with the hello and with every byte after it (the peer's TLS)
// still unread; anything else is closed without a byte in answer.
func FuzzAcceptor(f *testing.F) {
	var hello bytes.Buffer
	writeHello(&hello, fzSession)
	f.Add(hello.Bytes())
	f.Add(append(bytes.Clone(hello.Bytes()), "\x16\x03\x01"...))
	f.Add(hello.Bytes()[:helloLen-1])
	f.Add([]byte(helloMagic + string(make([]byte, 16)))) // nobody's session
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		// Long enough for a registered session's lookup to be certain, short
		// enough that a hello for nobody's session costs little.
		a := NewAcceptor(nil, &Config{HelloTimeout: 20 * time.Millisecond})
		ln := fuzztest.NewListener(fzLocal, 1)
		a.ln = ln
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out := make(chan net.Conn, 1)
		defer a.Register(ctx, fzSession, out)()
		served := make(chan error, 1)
		go func() { served <- a.Serve(ctx) }()
		c := newFzConn(in)
		ln.Conns <- c

		want := len(in) >= helloLen && bytes.Equal(in[:helloLen], hello.Bytes())
		select {
		case got := <-out:
			if !want {
				t.Fatalf("connection opening %x delivered to session %v", in, fzSession)
			}
			if got != c {
				t.Fatal("another connection delivered")
			}
			if w := c.Written(); !bytes.Equal(w, hello.Bytes()) {
				t.Fatalf("answered %x, want the hello %x", w, hello.Bytes())
			}
			if n := c.Unread(); n != len(in)-helloLen {
				t.Fatalf("%d bytes left unread after the hello, want %d", n, len(in)-helloLen)
			}
		case <-c.Closed():
			if want {
				t.Fatalf("the session's own hello %x was refused", in)
			}
			if w := c.Written(); len(w) > 0 {
				t.Fatalf("a stranger (%x) was answered %x", in, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the acceptor neither delivered nor closed the connection")
		}
		cancel()
		if err := <-served; err != nil {
			t.Fatal(err)
		}
	})
}

// fzDatagram is one datagram to or from a fake packet conn.
type fzDatagram struct {
	b    []byte
	addr netip.AddrPort
}

// fzPacketConn hands out its datagrams in order and then blocks until a
// past read deadline or Close; writes are recorded, and onWrite sees each.
type fzPacketConn struct {
	mu      sync.Mutex
	in      []fzDatagram
	writes  []fzDatagram
	onWrite func(to netip.AddrPort)
	wake    chan struct{} // closed while a past read deadline is set
	closed  chan struct{}
	once    sync.Once
}

func newFzPacketConn(in []fzDatagram, onWrite func(netip.AddrPort)) *fzPacketConn {
	return &fzPacketConn{in: in, onWrite: onWrite, wake: make(chan struct{}), closed: make(chan struct{})}
}

func (c *fzPacketConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	c.mu.Lock()
	if len(c.in) > 0 {
		d := c.in[0]
		c.in = c.in[1:]
		c.mu.Unlock()
		return copy(b, d.b), d.addr, nil
	}
	wake := c.wake
	c.mu.Unlock()
	select {
	case <-wake:
		return 0, netip.AddrPort{}, errors.New("fake read deadline")
	case <-c.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

func (c *fzPacketConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, fzDatagram{bytes.Clone(b), to})
	c.mu.Unlock()
	if c.onWrite != nil {
		c.onWrite(to)
	}
	return len(b), nil
}

func (c *fzPacketConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	past := !t.IsZero() && t.Before(time.Now())
	select {
	case <-c.wake:
		if !past {
			c.wake = make(chan struct{})
		}
	default:
		if past {
			close(c.wake)
		}
	}
	return nil
}

func (c *fzPacketConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// fzPunchInput decodes a fuzz input into datagrams from the peer's side.
// Each record is an op byte followed by its data: op < 0x80 is a raw
// datagram of op bytes; op >= 0x80 is a packet sealed with the session's
// key, of type op&7 and with the next 8 bytes as nonce (so that the fuzzer
// can build authentic exchanges it cannot compute tags for). Bit 0x08
// makes a sealed packet's source IPv4-mapped IPv6. Datagram i comes from
// port 1000+i, so each reply names the datagram it answers.
func fzPunchInput(key, in []byte) []fzDatagram {
	var out []fzDatagram
	for i := 0; len(in) > 0; i++ {
		op := in[0]
		in = in[1:]
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, 7}), uint16(1000+i))
		var b []byte
		if op < 0x80 {
			n := min(int(op), len(in))
			b, in = bytes.Clone(in[:n]), in[n:]
		} else {
			nonce := make([]byte, udpNonceLen)
			n := copy(nonce, in)
			in = in[n:]
			b = sealPacket(key, op&7, nonce)
			if op&0x08 != 0 {
				from = netip.AddrPortFrom(netip.AddrFrom16(from.Addr().As16()), from.Port())
			}
		}
		out = append(out, fzDatagram{b, from})
	}
	return out
}

// FuzzPunchUDP runs a whole UDP punch (RoleDirect) on a socket that
// receives arbitrary datagrams, raw or authentic, from the peer's side. The
// punch must end exactly as the first authentic packet that ends it says
// (a pong for the controlling side, a nomination for the other), and must
// answer nothing that is not authentic: a forged or stray packet must
// neither complete the punch nor make it send a single packet anywhere but
// the peer's endpoint.
func FuzzPunchUDP(f *testing.F) {
	nonce := func(b byte) string { return string(append([]byte{b}, make([]byte, udpNonceLen-1)...)) }
	f.Add(false, byte('k'), []byte("\x81"+nonce(0)+"\x83"+nonce('q')))                // ping, nominate
	f.Add(true, byte('q'), []byte("\x81"+nonce(0)+"\x82"+nonce(0)))                   // ping, pong
	f.Add(false, byte('k'), []byte("\x0eWRU\x01\x03garbage!"+"\x8b"+nonce('q')))      // forgery, mapped nominate
	f.Add(true, byte('q'), []byte("\x84"+nonce(9)+"\x83"+nonce(1)+"\x05WRU\x01\x02")) // roam, nominate (wrong side), short
	f.Fuzz(func(t *testing.T, controlling bool, stream byte, in []byte) {
		key, ours := fzSession.udpKey(!controlling), fzSession.udpKey(controlling)
		datagrams := fzPunchInput(key, in)
		// The sentinel: an authentic ping after the input. The punch's
		// answer to it shows that everything before it was handled.
		sentinel := netip.MustParseAddrPort("198.51.100.7:65000")
		datagrams = append(datagrams, fzDatagram{sealPacket(key, udpPing, make([]byte, udpNonceLen)), sentinel})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		sock := newFzPacketConn(datagrams, func(to netip.AddrPort) {
			if to == sentinel {
				cancel()
			}
		})
		peer := netip.MustParseAddrPort("198.51.100.7:4000")
		res, err := PunchUDP(ctx, &UDPConfig{Interval: time.Hour}, UDPSession{
			ID: fzSession, Controlling: controlling, Role: RoleDirect, PeerEndpoint: peer, Stream: stream,
			Scope: Scope{Public: peer.Addr()},
		}, sock)
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("the punch hung: it never answered the sentinel ping")
		}

		// What the punch should have made of the input, from an
		// independent reading of it.
		final, answers := udpNominate, map[netip.AddrPort]byte{} // pongs and nominations due, by address
		pingedBack := map[netip.AddrPort]bool{}                  // sources of pings the controlling side may ping
		if controlling {
			final = udpPong
		}
		var end *fzDatagram
		for i := range datagrams {
			d := &datagrams[i]
			p := d.b
			if len(p) != udpPacketLen || !bytes.Equal(sealPacket(key, p[len(udpMagic)], p[len(udpMagic)+1:udpPacketLen-udpTagLen]), p) {
				continue
			}
			from := netip.AddrPortFrom(d.addr.Addr().Unmap(), d.addr.Port())
			typ := p[len(udpMagic)]
			if typ == udpPing {
				answers[from] = udpPong
				if controlling {
					pingedBack[from] = true // a triggered check
				}
			}
			if typ == final {
				if controlling {
					answers[from] = udpNominate
				}
				end = &fzDatagram{p, from}
				break
			}
		}
		switch {
		case end == nil && err == nil:
			t.Fatalf("punch completed (%v) on an input with no authentic %d packet", res.Remote, final)
		case end == nil:
		case err != nil:
			t.Fatalf("authentic %d packet from %v did not end the punch: %v", final, end.addr, err)
		case res.Remote != end.addr:
			t.Fatalf("punch ended at %v, want %v", res.Remote, end.addr)
		case !controlling && res.Stream != end.b[len(udpMagic)+1]:
			t.Fatalf("agreed stream %q, want the nomination's %q", res.Stream, end.b[len(udpMagic)+1])
		case controlling && res.Stream != stream:
			t.Fatalf("agreed stream %q, want this side's %q", res.Stream, stream)
		}
		if err == nil && res.Conn != sock {
			t.Fatal("the result is not the punch's socket")
		}

		sock.mu.Lock()
		writes := sock.writes
		sock.mu.Unlock()
		for _, w := range writes {
			typ, ok := openPacket(ours, w.b)
			if !ok {
				t.Fatalf("sent an unauthentic packet %x to %v", w.b, w.addr)
			}
			switch {
			case w.addr == peer && typ == udpPing:
			case pingedBack[w.addr] && typ == udpPing:
			case w.addr == sentinel && typ == udpPong:
			case answers[w.addr] == typ || typ == udpPong && answers[w.addr] == udpNominate:
			default:
				t.Fatalf("sent a type %d packet to %v, which sent nothing authentic that asks for it", typ, w.addr)
			}
		}
	})
}

// FuzzPeerNAT decodes a NAT as it arrives from the rendezvous server (the
// peer's own report, in JSON) and computes from it what a punch does:
// the strategy, which both sides must agree on, and the predicted ports.
func FuzzPeerNAT(f *testing.F) {
	for _, n := range []NAT{
		{},
		{Behind: true, Mapping: MappingEndpointIndependent, Allocation: AllocationPreserved, PublicIP: netip.MustParseAddr("198.51.100.1"), LastPort: 4000},
		{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationSequential, Delta: 1, PublicIP: netip.MustParseAddr("2001:db8::1"), LastPort: 65535},
		{Behind: true, Mapping: MappingAddressDependent, Allocation: AllocationSequential, Delta: -2},
		{Behind: true, Mapping: MappingAddressAndPortDependent, Allocation: AllocationRandom},
	} {
		b, err := json.Marshal(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint16(40000), uint16(32), uint8(0))
	}
	f.Add([]byte(`{"Allocation":"sequential","Delta":65535}`), uint16(1), uint16(1024), uint8(3))
	f.Add([]byte(`{"Allocation":"sequential","Delta":-9223372036854775808}`), uint16(65535), uint16(7), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, base, count uint16, spread uint8) {
		var peer NAT
		if err := json.Unmarshal(data, &peer); err != nil {
			return
		}
		_ = peer.String()
		// JSON is how it travels on: it must survive another hop.
		again, err := json.Marshal(peer)
		if err != nil {
			t.Fatalf("marshal %+v: %v", peer, err)
		}
		var back NAT
		if err := json.Unmarshal(again, &back); err != nil || back != peer {
			t.Fatalf("%+v went through JSON as %+v (%v)", peer, back, err)
		}

		self := NAT{Behind: true, Mapping: MappingEndpointIndependent, Allocation: AllocationPreserved}
		for _, self := range []NAT{{}, self, peer} {
			a, b := Choose(self, peer), Choose(peer, self)
			if (a.UDP == RoleNone) != (b.UDP == RoleNone) || (a.UDP == RoleSprayRandom) != (b.UDP == RoleManySockets) ||
				(a.UDP == RoleManySockets) != (b.UDP == RoleSprayRandom) ||
				(a.TCP == TCPNone) != (b.TCP == TCPNone) || (a.TCP == TCPSprayWindow) != (b.TCP == TCPConnectFixed) {
				t.Fatalf("the two sides disagree: %+v against %+v chooses %+v, the other side %+v", self, peer, a, b)
			}
		}

		// The windows a punch asks for are at most a few thousand ports.
		n, s := int(count%4097), int(spread%9)
		ports := PredictPorts(peer, base, n, s)
		if !peer.predictable() || n == 0 {
			if ports != nil {
				t.Fatalf("predicted %d ports for %+v", len(ports), peer)
			}
			return
		}
		if len(ports) == 0 || len(ports) > n*(2*s+1) || len(ports) > portRing {
			t.Fatalf("%d ports predicted for count %d, spread %d", len(ports), n, s)
		}
		if first := portAdd(base, peer.Delta); ports[0] != first {
			t.Fatalf("first prediction %d, want base %d + delta %d = %d", ports[0], base, peer.Delta, first)
		}
		seen := make(map[uint16]bool, len(ports))
		for _, p := range ports {
			if p == 0 || seen[p] {
				t.Fatalf("port %d predicted (zero or twice) in %v", p, ports)
			}
			seen[p] = true
		}
	})
}
