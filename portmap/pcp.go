package portmap

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// PCP wire format (RFC 6887), MAP opcode over IPv4. Addresses are 16
// bytes, IPv4 as IPv4-mapped IPv6.
//
//	request header (24):  version 2 | R=0,opcode | 0(2) | lifetime(4) | client address(16)
//	response header (24): version 2 | R=1,opcode | 0 | result | lifetime(4) | epoch(4) | 0(12)
//	MAP data (36):        nonce(12) | protocol | 0(3) | internal port(2) | external port(2) | external address(16)
//
// In a request the external port and address are suggestions; in a
// response they are what was assigned. ANNOUNCE (opcode 0, no data) is the
// probe: a PCP server answers it with success.
const (
	pcpVersion    = 2
	pcpOpAnnounce = 0
	pcpOpMap      = 1
	pcpReplyBit   = 0x80
	pcpHeaderLen  = 24
	pcpMapLen     = pcpHeaderLen + 36
	pcpNonceLen   = 12
	protoTCP      = 6
	protoUDP      = 17
)

// pcpResultText gives RFC 6887 section 7.4's result codes.
var pcpResultText = map[int]string{
	1: "unsupported version", 2: "not authorized", 3: "malformed request",
	4: "unsupported opcode", 5: "unsupported option", 6: "malformed option",
	7: "network failure", 8: "no resources", 9: "unsupported protocol",
	10: "user exceeded quota", 11: "cannot provide external", 12: "address mismatch",
	13: "excessive remote peers",
}

func pcpResult(code byte) error { return refusal(PCP, int(code), pcpResultText) }

func pcpProtocol(t Transport) byte {
	if t == TCP {
		return protoTCP
	}
	return protoUDP
}

// pcpRequest is what a MAP request asks for.
type pcpRequest struct {
	client   netip.Addr // this host's address towards the router
	nonce    [pcpNonceLen]byte
	t        Transport
	internal uint16
	external netip.AddrPort // suggestion; the zero value means any
	lifetime time.Duration  // 0 deletes
}

func putAddr16(b []byte, a netip.Addr) {
	if !a.IsValid() {
		a = netip.IPv4Unspecified()
	}
	a16 := a.As16() // an IPv4 address comes out IPv4-mapped, as PCP wants
	copy(b, a16[:])
}

// encodePCPAnnounce returns the ANNOUNCE request from client.
func encodePCPAnnounce(client netip.Addr) []byte {
	b := make([]byte, pcpHeaderLen)
	b[0], b[1] = pcpVersion, pcpOpAnnounce
	putAddr16(b[8:], client)
	return b
}

// encodePCPMap returns the MAP request for r.
func encodePCPMap(r pcpRequest) []byte {
	b := make([]byte, pcpMapLen)
	b[0], b[1] = pcpVersion, pcpOpMap
	binary.BigEndian.PutUint32(b[4:], seconds(r.lifetime))
	putAddr16(b[8:], r.client)
	d := b[pcpHeaderLen:]
	copy(d, r.nonce[:])
	d[12] = pcpProtocol(r.t)
	binary.BigEndian.PutUint16(d[16:], r.internal)
	binary.BigEndian.PutUint16(d[18:], r.external.Port())
	putAddr16(d[20:], r.external.Addr())
	return b
}

// pcpHeader checks a response's version, opcode and length, and returns
// its lifetime and result. It wraps errIgnored when b answers something
// else. A NAT-PMP-only router answers a PCP request with a version-0
// "unsupported version" (RFC 6887 section 9), returned as that refusal.
func pcpHeader(b []byte, op byte, size int) (time.Duration, error) {
	if len(b) >= 4 && b[0] == pmpVersion && b[1]&pcpReplyBit != 0 {
		if err := pmpResult(binary.BigEndian.Uint16(b[2:])); err != nil {
			return 0, &ResultError{Protocol: PCP, Code: 1, Text: "unsupported version (a NAT-PMP router)"}
		}
	}
	if len(b) < pcpHeaderLen || b[0] != pcpVersion || b[1] != op|pcpReplyBit {
		return 0, fmt.Errorf("pcp: %w (%d bytes)", errIgnored, len(b))
	}
	if err := pcpResult(b[3]); err != nil {
		return 0, err
	}
	if len(b) < size {
		return 0, fmt.Errorf("pcp: %w: %d bytes, want %d", errIgnored, len(b), size)
	}
	return time.Duration(binary.BigEndian.Uint32(b[4:])) * time.Second, nil
}

// decodePCPAnnounce checks the answer to ANNOUNCE.
func decodePCPAnnounce(b []byte) error {
	_, err := pcpHeader(b, pcpOpAnnounce, pcpHeaderLen)
	return err
}

// decodePCPMap decodes the answer to MAP request r: the assigned external
// endpoint and lifetime. An answer with another nonce, protocol or
// internal port is not an answer to r (RFC 6887 section 11.3).
func decodePCPMap(b []byte, r pcpRequest) (netip.AddrPort, time.Duration, error) {
	life, err := pcpHeader(b, pcpOpMap, pcpMapLen)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	d := b[pcpHeaderLen:]
	switch {
	case !bytes.Equal(d[:pcpNonceLen], r.nonce[:]):
		return netip.AddrPort{}, 0, fmt.Errorf("pcp: %w: wrong nonce", errIgnored)
	case d[12] != pcpProtocol(r.t):
		return netip.AddrPort{}, 0, fmt.Errorf("pcp: %w: protocol %d", errIgnored, d[12])
	case binary.BigEndian.Uint16(d[16:]) != r.internal:
		return netip.AddrPort{}, 0, fmt.Errorf("pcp: %w: internal port %d", errIgnored, binary.BigEndian.Uint16(d[16:]))
	}
	ext := netip.AddrFrom16([16]byte(d[20:36])).Unmap()
	port := binary.BigEndian.Uint16(d[18:])
	if r.lifetime > 0 && (!ext.Is4() || ext.IsUnspecified() || port == 0) {
		return netip.AddrPort{}, 0, fmt.Errorf("pcp: router assigned an unusable external endpoint %v:%d", ext, port)
	}
	return netip.AddrPortFrom(ext, port), life, nil
}
