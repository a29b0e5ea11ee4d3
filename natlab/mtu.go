package natlab

import (
	"encoding/binary"
	"net/netip"
)

// This file is the uplink MTU: IPv4 packets larger than the uplink carries
// are fragmented (without Don't Fragment) or dropped and, unless the path
// is a black hole, answered with ICMP "fragmentation needed" (RFC 792,
// RFC 1191). The lab's NATs are IPv4 only, so IPv6 frames, which it never
// carries, pass untouched. Pure functions on Ethernet frames.

const (
	ethHeaderLen  = 14
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	ipv4MinHeader = 20
	ipFlagDF      = 0x4000
	ipFlagMF      = 0x2000
	ipOffsetMask  = 0x1fff
	protoICMP     = 1
	icmpUnreach   = 3 // destination unreachable
	icmpFragNeed  = 4 // its code "fragmentation needed and DF set"
)

// carriesIP reports whether Ethernet frame f holds an IPv4 or IPv6 packet,
// the traffic that crosses a WAN, as opposed to ARP and other link-local
// protocols.
func carriesIP(f []byte) bool {
	if len(f) < ethHeaderLen {
		return false
	}
	t := binary.BigEndian.Uint16(f[12:])
	return t == etherTypeIPv4 || t == etherTypeIPv6
}

// ipv4 returns the IPv4 packet inside an Ethernet frame and its header
// length, or ok false for anything else or a malformed header.
func ipv4(f []byte) (pkt []byte, ihl int, ok bool) {
	if len(f) < ethHeaderLen+ipv4MinHeader || binary.BigEndian.Uint16(f[12:]) != etherTypeIPv4 {
		return nil, 0, false
	}
	pkt = f[ethHeaderLen:]
	ihl = int(pkt[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(pkt[2:]))
	if pkt[0]>>4 != 4 || ihl < ipv4MinHeader || total < ihl || total > len(pkt) {
		return nil, 0, false
	}
	return pkt[:total], ihl, true
}

// mtuVerdict says what the uplink does with a frame.
type mtuVerdict uint8

const (
	fits      mtuVerdict = iota
	tooBigDF             // drop; answer with ICMP unless a black hole
	fragments            // split with fragment
)

// checkMTU classifies frame f for an uplink of MTU mtu (0: no limit).
func checkMTU(f []byte, mtu int) mtuVerdict {
	if mtu <= 0 {
		return fits
	}
	pkt, _, ok := ipv4(f)
	if !ok || len(pkt) <= mtu {
		return fits
	}
	if binary.BigEndian.Uint16(pkt[6:])&ipFlagDF != 0 {
		return tooBigDF
	}
	return fragments
}

// fragment splits the IPv4 packet of frame f into frames whose packets fit
// mtu, calling emit with each (a scratch buffer, valid during the call).
// Options are copied into every fragment: the lab sends none.
func fragment(f []byte, mtu int, emit func([]byte)) {
	pkt, ihl, ok := ipv4(f)
	if !ok {
		return
	}
	chunk := (mtu - ihl) &^ 7
	if chunk <= 0 {
		return
	}
	flags := binary.BigEndian.Uint16(pkt[6:])
	baseOff := int(flags & ipOffsetMask)
	payload := pkt[ihl:]
	buf := make([]byte, ethHeaderLen+ihl+chunk)
	for off := 0; off < len(payload); off += chunk {
		end := min(off+chunk, len(payload))
		n := copy(buf, f[:ethHeaderLen+ihl])
		n += copy(buf[n:], payload[off:end])
		h := buf[ethHeaderLen:]
		binary.BigEndian.PutUint16(h[2:], uint16(ihl+end-off))
		ff := uint16(baseOff + off/8)
		if end < len(payload) || flags&ipFlagMF != 0 {
			ff |= ipFlagMF
		}
		binary.BigEndian.PutUint16(h[6:], ff)
		setChecksum(h[:ihl], 10)
		emit(buf[:n])
	}
}

// fragNeeded returns the frame of an ICMP "fragmentation needed" from
// address from, telling the sender of frame f that the next hop's MTU is
// mtu, sent back the way f came; or nil where RFC 1122 forbids an answer
// (f is a non-first fragment or itself an ICMP error).
func fragNeeded(f []byte, mtu int, from netip.Addr) []byte {
	pkt, ihl, ok := ipv4(f)
	if !ok || binary.BigEndian.Uint16(pkt[6:])&ipOffsetMask != 0 {
		return nil
	}
	if pkt[9] == protoICMP && len(pkt) > ihl {
		switch pkt[ihl] { // error types: unreachable, quench, redirect, time exceeded, parameter problem
		case 3, 4, 5, 11, 12:
			return nil
		}
	}
	quote := pkt[:min(len(pkt), ihl+8)]
	out := make([]byte, ethHeaderLen+ipv4MinHeader+8+len(quote))
	copy(out[0:6], f[6:12]) // to the sender's MAC
	copy(out[6:12], f[0:6]) // from the one it addressed
	binary.BigEndian.PutUint16(out[12:], etherTypeIPv4)
	ip := out[ethHeaderLen:]
	ip[0] = 0x45
	ip[1] = 0xc0 // internetwork control, as routers send errors
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[8] = 64
	ip[9] = protoICMP
	src := from.As4()
	copy(ip[12:16], src[:])
	copy(ip[16:20], pkt[12:16])
	setChecksum(ip[:ipv4MinHeader], 10)
	icmp := ip[ipv4MinHeader:]
	icmp[0], icmp[1] = icmpUnreach, icmpFragNeed
	binary.BigEndian.PutUint16(icmp[6:], uint16(mtu))
	copy(icmp[8:], quote)
	setChecksum(icmp, 2)
	return out
}

// setChecksum writes the Internet checksum (RFC 1071) of b into b[at:at+2].
func setChecksum(b []byte, at int) {
	b[at], b[at+1] = 0, 0
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(b[at:], ^uint16(sum))
}
