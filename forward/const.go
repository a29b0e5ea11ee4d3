package forward

// Wire constants of the stream request protocol; see spec.md.
const (
	// Version is the only protocol version spoken. It is the first byte of
	// every request.
	Version byte = 1

	// MaxPayload bounds a request's payload (service name or host:port).
	MaxPayload = 1024
	// MaxMessage bounds a reply's message. Longer messages are truncated by
	// WriteReply (at a UTF-8 boundary) and rejected by ReadReply.
	MaxMessage = 1024

	// requestHeaderLen is version + kind + uint16 payload length.
	requestHeaderLen = 4
	// replyHeaderLen is code + uint16 message length.
	replyHeaderLen = 3
)

// Request kinds.
const (
	// KindService asks for an exposed service by name.
	KindService Kind = 1
	// KindTarget asks the exit to dial a TCP host:port.
	KindTarget Kind = 2
	// KindUDPService asks for an exposed UDP service by name; datagram
	// frames follow the reply.
	KindUDPService Kind = 3
	// KindUDPTarget asks the exit to send datagrams to a UDP host:port.
	KindUDPTarget Kind = 4
	// KindUDPAssociate asks the exit to relay datagrams to and from any
	// address its ACL allows, each frame naming its address (SOCKS5 UDP
	// ASSOCIATE). The payload is "*".
	KindUDPAssociate Kind = 5
)

// Reply codes. They are the SOCKS5 (RFC 1928) reply codes, so a SOCKS5
// listener can hand the exit's verdict to its client unchanged.
const (
	CodeSucceeded           byte = 0
	CodeGeneralFailure      byte = 1
	CodeNotAllowed          byte = 2 // connection not allowed by ruleset
	CodeNetworkUnreachable  byte = 3
	CodeHostUnreachable     byte = 4 // also: name did not resolve
	CodeConnectionRefused   byte = 5
	CodeTTLExpired          byte = 6 // the exit's dial timed out
	CodeCommandNotSupported byte = 7 // not sent by the exit; SOCKS5 only
	CodeAddrNotSupported    byte = 8 // malformed or unsupported host:port
)

// CodeText describes a reply code in the words of RFC 1928.
func CodeText(code byte) string {
	switch code {
	case CodeSucceeded:
		return "succeeded"
	case CodeGeneralFailure:
		return "general failure"
	case CodeNotAllowed:
		return "connection not allowed by ruleset"
	case CodeNetworkUnreachable:
		return "network unreachable"
	case CodeHostUnreachable:
		return "host unreachable"
	case CodeConnectionRefused:
		return "connection refused"
	case CodeTTLExpired:
		return "TTL expired"
	case CodeCommandNotSupported:
		return "command not supported"
	case CodeAddrNotSupported:
		return "address type not supported"
	default:
		return "unknown code"
	}
}
