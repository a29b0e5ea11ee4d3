package forward

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// UDP travels over a stream as datagram frames: a uint16 length and that
// many bytes (spec.md, "Datagram streams"). A frame of an association
// (KindUDPAssociate) starts with the address the datagram goes to or came
// from, encoded as in a SOCKS5 UDP request (RFC 1928 section 7): ATYP,
// address, port.

// maxDatagram is the largest datagram a frame carries.
const maxDatagram = 65535

// datagramBuf is a buffer that holds any frame's body.
func datagramBuf() []byte { return make([]byte, maxDatagram) }

// datagramWriter writes datagram frames to w, each in one Write call (one
// link frame), reusing its buffer: one per writing goroutine.
type datagramWriter struct {
	w   io.Writer
	buf []byte
}

func (d *datagramWriter) write(b []byte) error {
	if len(b) > maxDatagram {
		return fmt.Errorf("datagram of %d bytes over %d", len(b), maxDatagram)
	}
	d.buf = binary.BigEndian.AppendUint16(d.buf[:0], uint16(len(b)))
	d.buf = append(d.buf, b...)
	_, err := d.w.Write(d.buf)
	return err
}

// readDatagram reads one frame's body into buf (at least maxDatagram
// long) and returns it. It returns io.EOF only at a frame boundary.
func readDatagram(r io.Reader, buf []byte) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if n > len(buf) {
		return nil, fmt.Errorf("%w: datagram of %d bytes over the %d-byte buffer", ErrProtocol, n, len(buf))
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return nil, noEOF(err)
	}
	return buf[:n], nil
}

// SOCKS5 address types.
const (
	atypIPv4 = 1
	atypName = 3
	atypIPv6 = 4
)

// udpAddr is a datagram's address in an association: an IP or a name
// (resolved by the exit), and a port.
type udpAddr struct {
	ip   netip.Addr
	name string
	port uint16
}

// String is host:port, as a KindTarget payload spells it.
func (a udpAddr) String() string {
	host := a.name
	if a.ip.IsValid() {
		host = a.ip.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(a.port)))
}

// appendUDPAddr appends the SOCKS5 encoding of ip:port.
func appendUDPAddr(b []byte, ap netip.AddrPort) []byte {
	ip := ap.Addr().Unmap()
	if ip.Is4() {
		b = append(b, atypIPv4)
	} else {
		b = append(b, atypIPv6)
	}
	b = append(b, ip.AsSlice()...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

// parseUDPAddr splits a SOCKS5-encoded address off the front of b.
func parseUDPAddr(b []byte) (udpAddr, []byte, error) {
	if len(b) < 1 {
		return udpAddr{}, nil, fmt.Errorf("%w: empty datagram", ErrProtocol)
	}
	var a udpAddr
	var n int
	switch b[0] {
	case atypIPv4, atypIPv6:
		n = 4
		if b[0] == atypIPv6 {
			n = 16
		}
		if len(b) < 1+n+2 {
			return udpAddr{}, nil, fmt.Errorf("%w: datagram address cut short", ErrProtocol)
		}
		a.ip, _ = netip.AddrFromSlice(b[1 : 1+n])
		a.ip = a.ip.Unmap()
		n++
	case atypName:
		if len(b) < 2 || len(b) < 2+int(b[1])+2 || b[1] == 0 {
			return udpAddr{}, nil, fmt.Errorf("%w: datagram host name cut short", ErrProtocol)
		}
		a.name = string(b[2 : 2+int(b[1])])
		n = 2 + int(b[1])
	default:
		return udpAddr{}, nil, fmt.Errorf("%w: datagram address type %d", ErrProtocol, b[0])
	}
	a.port = binary.BigEndian.Uint16(b[n:])
	if a.port == 0 {
		return udpAddr{}, nil, fmt.Errorf("%w: datagram port 0", ErrProtocol)
	}
	return a, b[n+2:], nil
}
