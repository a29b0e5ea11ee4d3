package transport

// Fuzz targets for how transport classifies and reads the datagrams that
// reach a punched socket: the demux's routing (FuzzDemuxRoute, beside
// FuzzDemux in demux_test.go), its control packets (FuzzParseControl), the
// KCP headers read for acknowledgement tracking (FuzzKCPSegments), and a
// QUIC socket's diversion of prefixed datagrams (FuzzQUICDivert).

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
)

func FuzzParseControl(f *testing.F) {
	for _, typ := range []byte{ctlPing, ctlFin, ctlRst, 0, 4, 0xff} {
		f.Add(appendControl(nil, typ, 0x01020304, 1<<40+5))
	}
	f.Add(appendControl(nil, ctlFin, 7, 9)[:controlFinLen-1])
	f.Add(append(appendControl(nil, ctlPing, 7, 0), "trailing"...))
	f.Add([]byte("WRK\x02\x01\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, pkt []byte) {
		typ, conv, length, ok := parseControl(pkt)
		if !ok {
			if typ != 0 || conv != 0 || length != 0 {
				t.Fatalf("refused %x but returned %d, %#x, %d", pkt, typ, conv, length)
			}
			return
		}
		if typ != ctlPing && typ != ctlFin && typ != ctlRst {
			t.Fatalf("accepted unknown type %d in %x", typ, pkt)
		}
		if typ != ctlFin && length != 0 {
			t.Fatalf("type %d carries length %d", typ, length)
		}
		// What is accepted is what the sender's encoder wrote, plus
		// whatever trails it.
		if enc := appendControl(nil, typ, conv, length); !bytes.HasPrefix(pkt, enc) {
			t.Fatalf("%x read as type %d conv %#x length %d, which encodes as %x", pkt, typ, conv, length, enc)
		}
	})
}

// fzSegments reads a datagram's KCP segment headers independently of
// segments: each as (cmd, sn, una, payload length), up to the first that
// does not fit.
func fzSegments(pkt []byte) (out [][4]uint64) {
	for len(pkt) >= kcpHeaderLen {
		n := uint64(binary.LittleEndian.Uint32(pkt[20:24]))
		if n > uint64(len(pkt)-kcpHeaderLen) {
			return out
		}
		out = append(out, [4]uint64{uint64(pkt[4]), uint64(binary.LittleEndian.Uint32(pkt[12:16])),
			uint64(binary.LittleEndian.Uint32(pkt[16:20])), n})
		pkt = pkt[kcpHeaderLen+n:]
	}
	return out
}

// kcpSegment builds one KCP segment.
func kcpSegment(conv uint32, cmd byte, sn, una uint32, payload string) []byte {
	b := binary.LittleEndian.AppendUint32(nil, conv)
	b = append(b, cmd, 0, 0, 1)
	b = binary.LittleEndian.AppendUint32(b, 0) // ts
	b = binary.LittleEndian.AppendUint32(b, sn)
	b = binary.LittleEndian.AppendUint32(b, una)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

// FuzzKCPSegments has a stream's packet view read arbitrary KCP packets
// from the peer (trackIn) and from its own sender (trackOut): the segment
// walk must see exactly the segments that fit, and the acknowledgement
// state (the peer's una, this side's next sequence number and sent bytes)
// may only move forward.
func FuzzKCPSegments(f *testing.F) {
	f.Add(kcpSegment(1, cmdPush, 0, 0, "hello"), kcpSegment(1, cmdPush, 0, 0, "hello"))
	f.Add(append(kcpSegment(1, 82, 0, 1, ""), kcpSegment(1, cmdPush, 1, 1, "x")...), kcpSegment(1, cmdPush, 1, 0, "xy"))
	f.Add(kcpSegment(1, 82, 0, 0xffffffff, ""), []byte{})
	bad := kcpSegment(1, cmdPush, 0, 3, "abc")
	binary.LittleEndian.PutUint32(bad[20:], 0xffffffff)
	f.Add(bad, bad[:kcpHeaderLen-1])
	f.Fuzz(func(t *testing.T, in, out []byte) {
		for _, pkt := range [][]byte{in, out} {
			var got [][4]uint64
			consumed := 0
			segments(pkt, func(cmd byte, sn, una uint32, n int) {
				if n < 0 || consumed+kcpHeaderLen+n > len(pkt) {
					t.Fatalf("segment of %d bytes at %d overruns the %d-byte packet", n, consumed, len(pkt))
				}
				consumed += kcpHeaderLen + n
				got = append(got, [4]uint64{uint64(cmd), uint64(sn), uint64(una), uint64(n)})
			})
			want := fzSegments(pkt)
			if len(got) != len(want) {
				t.Fatalf("%x: walked %d segments, want %d", pkt, len(got), len(want))
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%x: segment %d read as %v, want %v", pkt, i, got[i], want[i])
				}
			}
		}

		// The acknowledgement state moves only to what the segments say,
		// each step forward in sequence-number order (a peer can claim
		// anything: this is no proof, only bookkeeping).
		p := &packetConn{}
		una, sn, sent := uint32(0x80000000), uint32(0x7ffffff0), uint64(0)
		p.peerUna.Store(una)
		p.nextSN.Store(sn)
		for _, s := range fzSegments(in) {
			if int32(uint32(s[2])-una) > 0 {
				una = uint32(s[2])
			}
		}
		for _, s := range fzSegments(out) {
			if s[0] == cmdPush && uint32(s[1]) == sn {
				sn++
				sent += s[3]
			}
		}
		p.trackIn(in)
		p.trackOut(out)
		if p.peerUna.Load() != una || p.nextSN.Load() != sn || p.sentBytes.Load() != sent {
			t.Fatalf("una %#x, next sn %#x, sent %d; want %#x, %#x, %d",
				p.peerUna.Load(), p.nextSN.Load(), p.sentBytes.Load(), una, sn, sent)
		}
		if sent > uint64(len(out)) {
			t.Fatalf("counted %d bytes sent in a %d-byte packet", sent, len(out))
		}
		p.acked(p.sentBytes.Load())
	})
}

// FuzzDemuxRoute routes arbitrary datagrams, from a stream's peer or from a
// stranger, through a demux with a handler and an open stream, and checks
// where each went (by the demux's counters) against an independent reading
// of the rules: prefixed datagrams to their handler or dropped, control
// packets to their stream if well-formed and from its peer, KCP packets of
// a plausible size to the stream they name.
func FuzzDemuxRoute(f *testing.F) {
	const conv = 0x11223344
	f.Add([]byte("WRU\x01punch"), false)
	f.Add(appendControl(nil, ctlPing, conv, 0), false)
	f.Add(appendControl(nil, ctlFin, conv, 3), true)
	f.Add(appendControl(nil, ctlRst, conv+1, 0), false)
	f.Add(kcpSegment(conv, cmdPush, 0, 0, "data"), false)
	f.Add(kcpSegment(conv, cmdPush, 0, 0, "data"), true)
	f.Add(append([]byte{0x44}, make([]byte, maxKCPPacket)...), false)
	f.Add([]byte("WRK\x01"), false)
	f.Add([]byte{}, false)
	d := newDemux(f)
	prefix := []byte("WRU\x01")
	var handled [][]byte
	if err := d.Handle(prefix, func(pkt []byte, from netip.AddrPort) {
		handled = append(handled, bytes.Clone(pkt))
	}); err != nil {
		f.Fatal(err)
	}
	peer := netip.MustParseAddrPort("192.0.2.1:9") // nothing answers
	stranger := netip.MustParseAddrPort("192.0.2.2:9")
	cfg := &Config{CloseTimeout: 10 * time.Millisecond}
	if _, err := d.Dial(peer, conv, cfg); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, fromStranger bool) {
		if d.lookup(sessionKey{peer, conv}) == nil {
			// A reset or FIN from the fuzzer ended the last one (which
			// the demux's Close closes, as it does this one).
			d.Dial(peer, conv, cfg)
		}
		from := peer
		if fromStranger {
			from = stranger
		}
		before := d.Stats()
		handled = handled[:0]
		var target uint32 // the stream the packet names, if any
		switch {
		case len(pkt) >= controlLen && bytes.HasPrefix(pkt, controlMagic):
			target = binary.LittleEndian.Uint32(pkt[5:])
		case len(pkt) >= 4:
			target = binary.LittleEndian.Uint32(pkt)
		}
		had := d.lookup(sessionKey{from, target}) != nil
		d.route(pkt, from)
		has := d.lookup(sessionKey{from, target}) != nil
		if had != has {
			return // the stream ended meanwhile (a reset): either count is right
		}
		after := d.Stats()
		delta := DemuxStats{
			Handled: after.Handled - before.Handled, Unhandled: after.Unhandled - before.Unhandled,
			KCP: after.KCP - before.KCP, Control: after.Control - before.Control,
			NoSession: after.NoSession - before.NoSession, QueueFull: after.QueueFull - before.QueueFull,
			Malformed: after.Malformed - before.Malformed,
		}

		var want DemuxStats
		switch {
		case len(pkt) == 0:
			want.Malformed = 1
		case bytes.HasPrefix(pkt, controlMagic):
			typ := byte(0)
			if len(pkt) > 4 {
				typ = pkt[4]
			}
			wellFormed := len(pkt) >= controlLen && (typ == ctlPing || typ == ctlRst || typ == ctlFin && len(pkt) >= controlFinLen)
			switch {
			case !wellFormed:
				want.Malformed = 1
			case has:
				want.Control = 1
			default:
				want.NoSession = 1
			}
		case pkt[0] == PrefixByte && bytes.HasPrefix(pkt, prefix):
			want.Handled = 1
			if len(handled) != 1 || !bytes.Equal(handled[0], pkt) {
				t.Fatalf("the handler got %x for %x", handled, pkt)
			}
		case pkt[0] == PrefixByte:
			want.Unhandled = 1
		case len(pkt) < kcpHeaderLen || len(pkt) > maxKCPPacket:
			want.Malformed = 1
		case has:
			want.KCP = 1
			if delta.QueueFull == 1 { // as good: the stream's queue was full
				want.KCP, want.QueueFull = 0, 1
			}
		default:
			want.NoSession = 1
		}
		if want.Handled == 0 && len(handled) > 0 {
			t.Fatalf("the handler got %x", handled)
		}
		if delta != want {
			t.Fatalf("%x from %v: counted %+v, want %+v", pkt, from, delta, want)
		}
	})
}

// FuzzQUICDivert offers a QUIC socket's read path arbitrary datagrams,
// from the peer or from where it roamed to. Exactly those starting with a
// registered prefix go to its handler (with the sender's address, IPv4
// unmapped); everything else goes to quic-go, as from the endpoint quic-go
// connected to if it came from the peer's new one.
func FuzzQUICDivert(f *testing.F) {
	f.Add([]byte("WRU\x01punch"), uint8(0))
	f.Add([]byte("WRR\x01"), uint8(1))
	f.Add([]byte("WR"), uint8(2))
	f.Add([]byte{0x40, 'R', 1, 2, 3}, uint8(1)) // a short-header packet
	f.Add([]byte{0xc0, 0, 0, 0, 1}, uint8(3))   // a long-header packet
	s := &QUICSocket{}
	s.handlers.init()
	var got [][]byte
	var gotFrom []netip.AddrPort
	prefixes := [][]byte{[]byte("WRU\x01"), []byte("WRX")}
	for _, p := range prefixes {
		if err := s.Handle(p, func(pkt []byte, from netip.AddrPort) {
			got = append(got, bytes.Clone(pkt))
			gotFrom = append(gotFrom, from)
		}); err != nil {
			f.Fatal(err)
		}
	}
	if err := s.Handle([]byte("Q"), func([]byte, netip.AddrPort) {}); err == nil {
		f.Fatal("a prefix outside the reserved one was registered")
	}
	orig := netip.MustParseAddrPort("198.51.100.1:4000")
	moved := netip.MustParseAddrPort("198.51.100.1:4001")
	senders := []netip.AddrPort{
		orig, moved,
		netip.MustParseAddrPort("[::ffff:198.51.100.1]:4001"),
		netip.MustParseAddrPort("[2001:db8::1]:4000"),
	}
	p := (*quicPacketConn)(s)
	f.Fuzz(func(t *testing.T, pkt []byte, sender uint8) {
		from := senders[int(sender)%len(senders)]
		s.Rebind(orig, moved)
		got, gotFrom = got[:0], gotFrom[:0]
		diverted := p.divert(pkt, net.UDPAddrFromAddrPort(from))
		want := false
		for _, pre := range prefixes {
			want = want || bytes.HasPrefix(pkt, pre)
		}
		if diverted != want {
			t.Fatalf("%x diverted: %v, want %v", pkt, diverted, want)
		}
		if diverted {
			unmapped := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
			if len(got) != 1 || !bytes.Equal(got[0], pkt) || gotFrom[0] != unmapped {
				t.Fatalf("handler got %x from %v for %x from %v", got, gotFrom, pkt, from)
			}
			return
		}
		if len(got) > 0 {
			t.Fatalf("handler got %x, which went to quic-go", got)
		}
		seen := unmap(seenFrom(net.UDPAddrFromAddrPort(from), s.alias.Load()).AddrPort())
		if want := unmap(from); want == moved && seen != orig || want != moved && seen != want {
			t.Fatalf("quic-go sees %v as %v", from, seen)
		}
		if back := unmap(p.to(net.UDPAddrFromAddrPort(orig)).AddrPort()); back != moved {
			t.Fatalf("quic-go's packets for %v go to %v, want %v", orig, back, moved)
		}
	})
}
