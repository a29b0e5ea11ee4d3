package forward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/warren-p2p/warren/config"
)

// ErrProtocol is wrapped by every error caused by a malformed request or
// reply on the wire (bad version, kind or length).
var ErrProtocol = errors.New("stream protocol error")

// Kind says what a Request asks for.
type Kind byte

func (k Kind) String() string {
	switch k {
	case KindService:
		return "service"
	case KindTarget:
		return "target"
	case KindUDPService:
		return "udp service"
	case KindUDPTarget:
		return "udp target"
	case KindUDPAssociate:
		return "udp associate"
	default:
		return "kind(" + strconv.Itoa(int(k)) + ")"
	}
}

// Request is what the opener of a stream asks the peer at the other end.
type Request struct {
	Kind Kind
	// Payload is the service name (KindService) or "host:port"
	// (KindTarget; host is a DNS name, an IPv4 address or a bracketed IPv6
	// address). 1 to MaxPayload bytes.
	Payload string
}

// ServiceRequest asks for the exposed service called name.
func ServiceRequest(name string) Request { return Request{Kind: KindService, Payload: name} }

// TargetRequest asks the exit to dial hostport.
func TargetRequest(hostport string) Request { return Request{Kind: KindTarget, Payload: hostport} }

// AssociateRequest asks the exit to relay datagrams for a SOCKS5 UDP
// association.
func AssociateRequest() Request { return Request{Kind: KindUDPAssociate, Payload: "*"} }

// udp reports whether r asks for a datagram stream.
func (r Request) udp() bool { return r.Kind >= KindUDPService && r.Kind <= KindUDPAssociate }

// service reports whether r names an exposed service.
func (r Request) service() bool { return r.Kind == KindService || r.Kind == KindUDPService }

// String is a short form for logs: "service NAME", "host:port", "udp
// service NAME", "udp host:port" or "udp associate".
func (r Request) String() string {
	switch r.Kind {
	case KindService:
		return "service " + r.Payload
	case KindUDPService:
		return "udp service " + r.Payload
	case KindUDPTarget:
		return "udp " + r.Payload
	case KindUDPAssociate:
		return "udp associate"
	}
	return r.Payload
}

// Validate checks what the wire format requires: a known kind and a
// payload of 1 to MaxPayload bytes. It does not parse host:port; the exit
// does, and answers CodeAddrNotSupported if it cannot.
func (r Request) Validate() error { return checkRequest(r.Kind, len(r.Payload)) }

// checkRequest checks a request's kind and payload length, for both ends.
func checkRequest(k Kind, n int) error {
	if k < KindService || k > KindUDPAssociate {
		return fmt.Errorf("%w: unknown request kind %d", ErrProtocol, byte(k))
	}
	if n == 0 || n > MaxPayload {
		return fmt.Errorf("%w: request payload length %d not in 1..%d", ErrProtocol, n, MaxPayload)
	}
	return nil
}

// WriteRequest writes r, and then the stream's first bytes if any, in one
// Write call.
func WriteRequest(w io.Writer, r Request, then ...byte) error {
	if err := r.Validate(); err != nil {
		return err
	}
	b := make([]byte, requestHeaderLen, requestHeaderLen+len(r.Payload)+len(then))
	b[0] = Version
	b[1] = byte(r.Kind)
	binary.BigEndian.PutUint16(b[2:], uint16(len(r.Payload)))
	b = append(b, r.Payload...)
	b = append(b, then...)
	_, err := w.Write(b)
	return err
}

// ReadRequest reads one request, and not a byte more. Malformed input
// yields an error wrapping ErrProtocol; a short read yields an error
// wrapping io.ErrUnexpectedEOF (or io.EOF if nothing at all was read).
func ReadRequest(rd io.Reader) (Request, error) {
	var h [requestHeaderLen]byte
	if _, err := io.ReadFull(rd, h[:]); err != nil {
		return Request{}, fmt.Errorf("read request header: %w", err)
	}
	if h[0] != Version {
		return Request{}, fmt.Errorf("%w: unsupported version %d", ErrProtocol, h[0])
	}
	r := Request{Kind: Kind(h[1])}
	n := int(binary.BigEndian.Uint16(h[2:]))
	if err := checkRequest(r.Kind, n); err != nil {
		return Request{}, err
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(rd, p); err != nil {
		return Request{}, fmt.Errorf("read request payload: %w", noEOF(err))
	}
	r.Payload = string(p)
	return r, nil
}

// Reply is the exit's answer to a Request.
type Reply struct {
	// Code is CodeSucceeded or a failure code (see const.go).
	Code byte
	// Msg explains a failure to a human; UTF-8, at most MaxMessage bytes.
	Msg string
}

// WriteReply writes r in one Write call, truncating Msg to MaxMessage
// bytes at a UTF-8 boundary and replacing invalid UTF-8.
func WriteReply(w io.Writer, r Reply) error {
	msg := truncateUTF8(strings.ToValidUTF8(r.Msg, "\uFFFD"), MaxMessage)
	b := make([]byte, replyHeaderLen, replyHeaderLen+len(msg))
	b[0] = r.Code
	binary.BigEndian.PutUint16(b[1:], uint16(len(msg)))
	b = append(b, msg...)
	_, err := w.Write(b)
	return err
}

// ReadReply reads one reply, and not a byte more. Invalid UTF-8 in the
// message is replaced; a message longer than MaxMessage is an error
// wrapping ErrProtocol.
func ReadReply(rd io.Reader) (Reply, error) {
	var h [replyHeaderLen]byte
	if _, err := io.ReadFull(rd, h[:]); err != nil {
		return Reply{}, fmt.Errorf("read reply header: %w", err)
	}
	n := int(binary.BigEndian.Uint16(h[1:]))
	if n > MaxMessage {
		return Reply{}, fmt.Errorf("%w: reply message length %d over %d", ErrProtocol, n, MaxMessage)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(rd, p); err != nil {
		return Reply{}, fmt.Errorf("read reply message: %w", noEOF(err))
	}
	return Reply{Code: h[0], Msg: strings.ToValidUTF8(string(p), "\uFFFD")}, nil
}

// RefusedError is a non-zero reply: the peer would not or could not
// connect the stream. Code is one of the Code constants.
type RefusedError struct {
	Code   byte
	Msg    string
	Peer   string
	Target string
}

func (e *RefusedError) Error() string {
	s := fmt.Sprintf("peer %s: %s: %s", e.Peer, e.Target, CodeText(e.Code))
	if e.Msg != "" && e.Msg != CodeText(e.Code) {
		s += ": " + e.Msg
	}
	return s
}

// splitTarget parses a KindTarget payload. host is returned as written
// (without brackets); addr is valid if host is an IP literal, and then
// already unmapped (::ffff:a.b.c.d becomes a.b.c.d).
func splitTarget(hostport string) (host string, addr netip.Addr, port uint16, err error) {
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", netip.Addr{}, 0, err
	}
	p, err := strconv.ParseUint(ps, 10, 16)
	if err != nil || p == 0 {
		return "", netip.Addr{}, 0, fmt.Errorf("bad port %q", ps)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" {
			return "", netip.Addr{}, 0, fmt.Errorf("zoned address %q not supported", host)
		}
		return host, a.Unmap(), uint16(p), nil
	}
	if !config.ValidHostname(host) {
		return "", netip.Addr{}, 0, fmt.Errorf("bad host name %q", host)
	}
	return host, netip.Addr{}, uint16(p), nil
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF: it is only used once a
// header has been read, so the message was cut short.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
