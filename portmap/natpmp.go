package portmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// NAT-PMP wire format (RFC 6886). Every message starts with a version byte
// (0) and an opcode; a response's opcode is the request's plus 128 and is
// followed by a 16-bit result code and the router's epoch (seconds since
// its mappings were last lost).
//
//	public address request:  0 | 0
//	public address response: 0 | 128 | result(2) | epoch(4) | address(4)
//	map request:             0 | 1 udp, 2 tcp | 0(2) | internal port(2) | suggested external port(2) | lifetime(4)
//	map response:            0 | 128+op | result(2) | epoch(4) | internal port(2) | external port(2) | lifetime(4)
const (
	pmpPort         = 5351
	pmpVersion      = 0
	pmpOpAddress    = 0
	pmpOpMapUDP     = 1
	pmpOpMapTCP     = 2
	pmpReplyBit     = 128
	pmpAddressLen   = 12
	pmpMapLen       = 16
	pmpMapRequestSz = 12
)

// errIgnored marks an answer that is not an answer to this request (wrong
// version, opcode, nonce or length): it is dropped and the wait goes on,
// so that stray or forged packets cannot end a request.
var errIgnored = errors.New("not an answer to this request")

// pmpResultText gives RFC 6886 section 3.5's result codes.
var pmpResultText = map[int]string{
	1: "unsupported version",
	2: "not authorized/refused",
	3: "network failure",
	4: "out of resources",
	5: "unsupported opcode",
}

// ResultError is a router's refusal: a NAT-PMP or PCP result code, or a
// UPnP error code, with its meaning.
type ResultError struct {
	Protocol Protocol
	Code     int
	Text     string
}

func (e *ResultError) Error() string {
	return fmt.Sprintf("portmap: %s: router refused: %d (%s)", e.Protocol, e.Code, e.Text)
}

func pmpResult(code uint16) error { return refusal(NATPMP, int(code), pmpResultText) }

// refusal returns nil for result code 0, else the ResultError for code.
func refusal(p Protocol, code int, texts map[int]string) error {
	if code == 0 {
		return nil
	}
	text, ok := texts[code]
	if !ok {
		text = "unknown result code"
	}
	return &ResultError{Protocol: p, Code: code, Text: text}
}

func pmpOpcode(t Transport) byte {
	if t == TCP {
		return pmpOpMapTCP
	}
	return pmpOpMapUDP
}

// encodePMPAddressRequest returns the public address request.
func encodePMPAddressRequest() []byte { return []byte{pmpVersion, pmpOpAddress} }

// encodePMPMap returns a map request; lifetime 0 with external port 0
// deletes the mapping of internal.
func encodePMPMap(t Transport, internal, external uint16, lifetime time.Duration) []byte {
	b := make([]byte, pmpMapRequestSz)
	b[0], b[1] = pmpVersion, pmpOpcode(t)
	binary.BigEndian.PutUint16(b[4:], internal)
	binary.BigEndian.PutUint16(b[6:], external)
	binary.BigEndian.PutUint32(b[8:], seconds(lifetime))
	return b
}

// pmpHeader checks a response's version, opcode and length and returns
// its result as an error. It wraps errIgnored when b answers something
// else.
func pmpHeader(b []byte, op byte, size int) error {
	if len(b) < 4 || b[0] != pmpVersion || b[1] != op|pmpReplyBit {
		return fmt.Errorf("nat-pmp: %w (%d bytes)", errIgnored, len(b))
	}
	if err := pmpResult(binary.BigEndian.Uint16(b[2:])); err != nil {
		return err // a refusal may come without the body (RFC 6886 3.5)
	}
	if len(b) < size {
		return fmt.Errorf("nat-pmp: %w: %d bytes, want %d", errIgnored, len(b), size)
	}
	return nil
}

// decodePMPAddress decodes a public address response.
func decodePMPAddress(b []byte) (netip.Addr, error) {
	if err := pmpHeader(b, pmpOpAddress, pmpAddressLen); err != nil {
		return netip.Addr{}, err
	}
	a := netip.AddrFrom4([4]byte(b[8:12]))
	if a.IsUnspecified() {
		// RFC 6886 3.2: 0.0.0.0 means the router has no public address yet.
		return netip.Addr{}, &ResultError{Protocol: NATPMP, Code: 3, Text: "router has no public address"}
	}
	return a, nil
}

// pmpMapResult is a decoded map response.
type pmpMapResult struct {
	internal, external uint16
	lifetime           time.Duration
}

// decodePMPMap decodes the answer to a map request for internal port
// internal over t.
func decodePMPMap(b []byte, t Transport, internal uint16) (pmpMapResult, error) {
	if err := pmpHeader(b, pmpOpcode(t), pmpMapLen); err != nil {
		return pmpMapResult{}, err
	}
	r := pmpMapResult{
		internal: binary.BigEndian.Uint16(b[8:]),
		external: binary.BigEndian.Uint16(b[10:]),
		lifetime: time.Duration(binary.BigEndian.Uint32(b[12:])) * time.Second,
	}
	if r.internal != internal {
		return pmpMapResult{}, fmt.Errorf("nat-pmp: %w: internal port %d, asked for %d", errIgnored, r.internal, internal)
	}
	return r, nil
}

// seconds converts d to whole seconds for the wire, rounding up so that a
// short lease is never asked for as 0 (which deletes).
func seconds(d time.Duration) uint32 {
	if d <= 0 {
		return 0
	}
	s := (d + time.Second - 1) / time.Second
	return uint32(min(s, time.Duration(^uint32(0))))
}
