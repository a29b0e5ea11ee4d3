package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

var punchPrefix = []byte("WRU\x01")

// recorder is a prefix handler that keeps copies of what it gets.
type recorder struct {
	mu   sync.Mutex
	pkts [][]byte
	from []netip.AddrPort
}

func (r *recorder) handle(pkt []byte, from netip.AddrPort) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pkts = append(r.pkts, bytes.Clone(pkt))
	r.from = append(r.from, from)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pkts)
}

// TestRoutingPrefixAndKCP interleaves punch packets with a KCP transfer on
// the same sockets: every punch packet reaches the handler and nothing
// else does, and the stream is unaffected.
func TestRoutingPrefixAndKCP(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	var ra, rb recorder
	if err := a.Handle(punchPrefix, ra.handle); err != nil {
		t.Fatal(err)
	}
	if err := b.Handle(punchPrefix, rb.handle); err != nil {
		t.Fatal(err)
	}
	ca, cb := dialPair(t, a, b, 0x1234, nil)

	const punches = 200
	go func() {
		for i := range punches {
			pkt := append(bytes.Clone(punchPrefix), byte(i), byte(i>>8))
			if _, err := a.WriteTo(pkt, addrOf(b)); err != nil {
				t.Error(err)
			}
			if _, err := b.WriteTo(pkt, addrOf(a)); err != nil {
				t.Error(err)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	intact, err := sendRandom(ca, cb, 4<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !intact {
		t.Fatal("stream corrupted by interleaved punch packets")
	}
	waitFor(t, "all punch packets", func() bool { return ra.count() == punches && rb.count() == punches })

	for _, r := range []*recorder{&ra, &rb} {
		r.mu.Lock()
		for _, p := range r.pkts {
			if !bytes.HasPrefix(p, punchPrefix) || len(p) != len(punchPrefix)+2 {
				t.Errorf("handler got a non-punch packet: %x", p)
			}
		}
		r.mu.Unlock()
	}
	rb.mu.Lock()
	if rb.from[0] != addrOf(a) {
		t.Errorf("handler saw source %v, want %v", rb.from[0], addrOf(a))
	}
	rb.mu.Unlock()

	sa, sb := a.Stats(), b.Stats()
	if sa.Handled != punches || sb.Handled != punches {
		t.Errorf("Handled = %d, %d; want %d each", sa.Handled, sb.Handled, punches)
	}
	if sb.KCP == 0 || sb.Malformed != 0 || sb.Unhandled != 0 {
		t.Errorf("unexpected routing stats: %+v", sb)
	}
	t.Logf("a: %+v", sa)
	t.Logf("b: %+v", sb)
}

// TestUnhandledPrefixDropped: 'W' packets without a handler, or after the
// handler was removed, are dropped and counted.
func TestUnhandledPrefixDropped(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	var r recorder
	if err := b.Handle(punchPrefix, r.handle); err != nil {
		t.Fatal(err)
	}
	a.WriteTo([]byte("WRU\x01hello"), addrOf(b))
	waitFor(t, "handled packet", func() bool { return r.count() == 1 })
	if err := b.Handle(punchPrefix, nil); err != nil {
		t.Fatal(err)
	}
	a.WriteTo([]byte("WRU\x01again"), addrOf(b))
	a.WriteTo([]byte("WXYZ"), addrOf(b))
	waitFor(t, "unhandled packets", func() bool { return b.Stats().Unhandled == 2 })
	if r.count() != 1 {
		t.Errorf("removed handler still called")
	}
}

// garbage is a table of datagrams that must be dropped without harm.
func garbage(rng *rand.Rand, conv uint32) map[string][]byte {
	kcpLike := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		binary.LittleEndian.PutUint32(b, conv)
		return b
	}
	badLen := kcpLike(kcpHeaderLen)
	binary.LittleEndian.PutUint32(badLen[20:], 0xffffffff) // claims a huge payload
	return map[string][]byte{
		"one byte":           {0x01},
		"W alone":            {'W'},
		"short non-W":        bytes.Repeat([]byte{0x42}, kcpHeaderLen-1),
		"control magic only": bytes.Clone(controlMagic),
		"control bad type":   append(bytes.Clone(controlMagic), 99, 1, 0, 0, 0),
		"fin truncated":      appendControl(nil, ctlFin, conv, 5)[:controlLen+3],
		"fin unknown conv":   appendControl(nil, ctlFin, conv+1, 0),
		"kcp unknown conv":   kcpLike(100)[:0:0],
		"kcp random body":    kcpLike(200),
		"kcp huge length":    badLen,
		"kcp header only":    kcpLike(kcpHeaderLen),
		"oversized":          kcpLike(maxKCPPacket + 1),
		"big W packet":       append([]byte{'W'}, make([]byte, 9000)...),
	}
}

// TestGarbageDropped throws a table of malformed and random datagrams at a
// demux with a live stream (from the stream's own peer address, the worst
// case) and checks nothing crashes, no handler or stream sees them as
// theirs, and the stream still works.
func TestGarbageDropped(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	var r recorder
	if err := b.Handle(punchPrefix, r.handle); err != nil {
		t.Fatal(err)
	}
	const conv = 0x0a0b0c0d
	ca, cb := dialPair(t, a, b, conv, nil)

	rng := rand.New(rand.NewPCG(1, 2))
	table := garbage(rng, conv)
	// Random bodies under a *wrong* conv: KCP would reject a wrong conv,
	// but they must not even reach the stream.
	for i := range 200 {
		p := make([]byte, 1+rng.IntN(1600))
		for j := range p {
			p[j] = byte(rng.Uint32())
		}
		if p[0] == PrefixByte {
			p[0] = 0
		}
		if len(p) >= 4 && binary.LittleEndian.Uint32(p) == conv {
			p[1]++
		}
		table["random "+string(rune('a'+i%26))+string(rune('0'+i/26))] = p
	}
	// From a third socket, everything (even a well-formed FIN for the
	// stream) is for no session: streams are keyed by remote address too.
	stranger := listenLoopback(t)
	stranger.WriteToUDPAddrPort(appendControl(nil, ctlRst, conv, 0), addrOf(b))

	// The demux under test is b; a's socket is the stream's peer, so send
	// through a (WriteTo insists on 'W', so use the raw socket).
	for name, p := range table {
		if len(p) == 0 {
			continue
		}
		if _, err := a.conn.WriteToUDPAddrPort(p, addrOf(b)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// Also feed route directly with the empty datagram.
	b.route(nil, addrOf(a))

	msg := []byte("after the storm")
	go ca.Write(msg)
	got := make([]byte, len(msg))
	cb.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(cb, got); err != nil {
		t.Fatal(err)
	}
	// "kcp random body" and friends share conv and source with the stream
	// and so reach it; KCP rejects them (unknown command) except by rare
	// chance, which TLS above would catch. The point here is that the
	// stream survived.
	if !bytes.Equal(got, msg) {
		t.Logf("stream data changed by random KCP-looking packets (possible without TLS): %q", got)
	}
	if r.count() != 0 {
		t.Errorf("handler got %d garbage packets", r.count())
	}
	s := b.Stats()
	t.Logf("b: %+v", s)
	if s.Malformed == 0 || s.NoSession == 0 || s.Unhandled == 0 {
		t.Errorf("garbage not counted as dropped: %+v", s)
	}
	if _, err := cb.Write([]byte("x")); err != nil {
		t.Errorf("stream broken by garbage (a stranger's RST must be ignored): %v", err)
	}
}

// FuzzDemux feeds arbitrary datagrams to the router of a demux with a
// handler and an open stream.
func FuzzDemux(f *testing.F) {
	const conv = 0x01020304
	for _, p := range garbage(rand.New(rand.NewPCG(3, 4)), conv) {
		f.Add(p)
	}
	f.Add([]byte("WRU\x01punch"))
	f.Add(appendControl(nil, ctlPing, conv, 0))
	a, b := newDemux(f), newDemux(f)
	if err := b.Handle(punchPrefix, func(pkt []byte, _ netip.AddrPort) {
		if !bytes.HasPrefix(pkt, punchPrefix) {
			panic("handler got a packet without its prefix")
		}
	}); err != nil {
		f.Fatal(err)
	}
	cfg := &Config{CloseTimeout: 10 * time.Millisecond}
	if _, err := a.Dial(addrOf(b), conv, cfg); err != nil {
		f.Fatal(err)
	}
	if _, err := b.Dial(addrOf(a), conv, cfg); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		b.route(pkt, addrOf(a))
	})
}

// TestDialAndHandleValidation covers the rules that keep KCP packets and
// prefixed packets apart.
func TestDialAndHandleValidation(t *testing.T) {
	a, b := newDemux(t), newDemux(t)
	nop := func([]byte, netip.AddrPort) {}

	if _, err := a.Dial(addrOf(b), 0x11223357, nil); !errors.Is(err, ErrReservedConv) {
		t.Errorf("conv with low byte 'W': %v; want ErrReservedConv", err)
	}
	if c := MakeConv(0x11223357); byte(c) == PrefixByte || c != 0x11223356 {
		t.Errorf("MakeConv(0x11223357) = %#x", c)
	}
	if c := MakeConv(0x11223344); c != 0x11223344 {
		t.Errorf("MakeConv changed a valid conv: %#x", c)
	}
	c, err := a.Dial(addrOf(b), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := a.Dial(addrOf(b), 1, nil); !errors.Is(err, ErrSessionExists) {
		t.Errorf("duplicate Dial: %v; want ErrSessionExists", err)
	}
	if _, err := a.Dial(addrOf(b), 2, &Config{MTU: 9000}); err == nil {
		t.Error("Dial accepted MTU 9000")
	}
	if _, err := a.Dial(netip.AddrPort{}, 3, nil); err == nil {
		t.Error("Dial accepted an invalid address")
	}

	for _, p := range []string{"", "X", "WRK", "WRK\x01", "WRK\x01more", "W234567890123456789"} {
		if err := a.Handle([]byte(p), nop); !errors.Is(err, ErrBadPrefix) {
			t.Errorf("Handle(%q): %v; want ErrBadPrefix", p, err)
		}
	}
	if err := a.Handle([]byte("WRU\x01"), nop); err != nil {
		t.Fatal(err)
	}
	if err := a.Handle([]byte("WRU\x01"), nop); err != nil {
		t.Errorf("replacing a handler: %v", err)
	}
	for _, p := range []string{"WRU", "WRU\x01\x02", "W"} {
		if err := a.Handle([]byte(p), nop); !errors.Is(err, ErrBadPrefix) {
			t.Errorf("overlapping Handle(%q): %v; want ErrBadPrefix", p, err)
		}
	}
	if err := a.Handle([]byte("WRU\x02"), nop); err != nil {
		t.Errorf("disjoint prefix refused: %v", err)
	}
	if _, err := a.WriteTo([]byte{0x01, 2, 3}, addrOf(b)); err == nil {
		t.Error("WriteTo sent a datagram that would look like KCP")
	}

	a.Close()
	if _, err := a.Dial(addrOf(b), 9, nil); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Dial on closed demux: %v; want net.ErrClosed", err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read on a stream of a closed demux: %v; want net.ErrClosed", err)
	}
}

func TestConfig(t *testing.T) {
	if err := (*Config)(nil).Verify(); err != nil {
		t.Errorf("nil config: %v", err)
	}
	if err := DefaultConfig().Verify(); err != nil {
		t.Errorf("default config: %v", err)
	}
	for _, c := range []Config{
		{MTU: 100}, {MTU: 1501}, {SendWindow: -1}, {RecvWindow: 40000},
		{Interval: time.Millisecond}, {Interval: time.Minute},
		{KeepAliveInterval: -1}, {IdleTimeout: time.Second, KeepAliveInterval: 2 * time.Second},
	} {
		if err := c.Verify(); err == nil {
			t.Errorf("Verify accepted %+v", c)
		}
	}
}
