package natlab

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// udpFrame returns an Ethernet frame holding an IPv4 UDP packet of total
// length size, with DF if df.
func udpFrame(size int, df bool) []byte {
	f := make([]byte, ethHeaderLen+size)
	copy(f[0:6], []byte{2, 0, 0, 0, 0, 1}) // to
	copy(f[6:12], []byte{2, 0, 0, 0, 0, 2})
	binary.BigEndian.PutUint16(f[12:], etherTypeIPv4)
	ip := f[ethHeaderLen:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(size))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	if df {
		binary.BigEndian.PutUint16(ip[6:], ipFlagDF)
	}
	ip[8], ip[9] = 64, 17
	copy(ip[12:], []byte{10, 1, 0, 2, 203, 0, 113, 2})
	setChecksum(ip[:20], 10)
	for i := 20; i < size; i++ {
		ip[i] = byte(i)
	}
	return f
}

// checksumOK reports whether b's Internet checksum verifies.
func checksumOK(b []byte) bool {
	c := append([]byte(nil), b...)
	var sum uint32
	for i := 0; i+1 < len(c); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(c[i:]))
	}
	if len(c)%2 == 1 {
		sum += uint32(c[len(c)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func TestCheckMTU(t *testing.T) {
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	for _, c := range []struct {
		frame []byte
		mtu   int
		want  mtuVerdict
	}{
		{udpFrame(1500, true), 0, fits},
		{udpFrame(1500, true), 1500, fits},
		{udpFrame(1400, true), 1400, fits},
		{udpFrame(1401, true), 1400, tooBigDF},
		{udpFrame(1401, false), 1400, fragments},
		{arp, 576, fits},
	} {
		if got := checkMTU(c.frame, c.mtu); got != c.want {
			t.Errorf("checkMTU(%d-byte frame, %d) = %v, want %v", len(c.frame), c.mtu, got, c.want)
		}
	}
}

func TestCarriesIP(t *testing.T) {
	arp := make([]byte, 42)
	binary.BigEndian.PutUint16(arp[12:], 0x0806)
	ip6 := make([]byte, 54)
	binary.BigEndian.PutUint16(ip6[12:], 0x86dd)
	if !carriesIP(udpFrame(100, false)) || !carriesIP(ip6) || carriesIP(arp) || carriesIP(arp[:10]) {
		t.Error("carriesIP tells IP from ARP wrongly")
	}
}

func TestFragment(t *testing.T) {
	orig := udpFrame(1500, false)
	var payload []byte
	var frags [][]byte
	fragment(orig, 1280, func(b []byte) { frags = append(frags, append([]byte(nil), b...)) })
	if len(frags) != 2 {
		t.Fatalf("%d fragments, want 2", len(frags))
	}
	for i, f := range frags {
		pkt, ihl, ok := ipv4(f)
		if !ok || len(pkt) > 1280 || !checksumOK(pkt[:ihl]) {
			t.Fatalf("fragment %d: ok %v, length %d, checksum ok %v", i, ok, len(pkt), checksumOK(pkt[:ihl]))
		}
		flags := binary.BigEndian.Uint16(pkt[6:])
		if off := int(flags&ipOffsetMask) * 8; off != len(payload) {
			t.Fatalf("fragment %d at offset %d, want %d", i, off, len(payload))
		}
		if more := flags&ipFlagMF != 0; more != (i == 0) {
			t.Fatalf("fragment %d: more fragments %v", i, more)
		}
		if !bytes.Equal(f[:12], orig[:12]) || binary.BigEndian.Uint16(pkt[4:]) != 0x1234 {
			t.Fatalf("fragment %d lost its addresses or ID", i)
		}
		payload = append(payload, pkt[ihl:]...)
	}
	if !bytes.Equal(payload, orig[ethHeaderLen+20:]) {
		t.Fatal("fragments do not add up to the packet")
	}
}

func TestFragNeeded(t *testing.T) {
	from := netip.MustParseAddr("203.0.113.1")
	orig := udpFrame(1500, true)
	f := fragNeeded(orig, 1400, from)
	pkt, ihl, ok := ipv4(f)
	if !ok || !checksumOK(pkt[:ihl]) || !checksumOK(pkt[ihl:]) {
		t.Fatalf("ICMP frame malformed or with bad checksums: %x", f)
	}
	if !bytes.Equal(f[0:6], orig[6:12]) || !bytes.Equal(f[6:12], orig[0:6]) {
		t.Error("ICMP frame is not addressed back to the sender's MAC")
	}
	if src, dst := netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20])); src != from || dst != netip.MustParseAddr("10.1.0.2") {
		t.Errorf("ICMP from %s to %s, want from %s to the sender", src, dst, from)
	}
	icmp := pkt[ihl:]
	if icmp[0] != 3 || icmp[1] != 4 || binary.BigEndian.Uint16(icmp[6:]) != 1400 {
		t.Errorf("ICMP type %d code %d MTU %d, want 3/4/1400", icmp[0], icmp[1], binary.BigEndian.Uint16(icmp[6:]))
	}
	if !bytes.Equal(icmp[8:], orig[ethHeaderLen:ethHeaderLen+28]) {
		t.Error("ICMP does not quote the header and 8 bytes of the packet")
	}
	// Never an error about an error, nor about a later fragment.
	if fragNeeded(f, 576, from) != nil {
		t.Error("answered an ICMP error")
	}
	later := udpFrame(1500, true)
	binary.BigEndian.PutUint16(later[ethHeaderLen+6:], ipFlagDF|10)
	if fragNeeded(later, 1400, from) != nil {
		t.Error("answered a non-first fragment")
	}
}
