package rendezvous

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Protocol version spoken by this package.
const Version = 1

// MaxMessage is the largest control frame either end accepts.
const MaxMessage = 64 << 10

// Message types.
const (
	TypeRegister   = "register"
	TypeRegistered = "registered"
	TypeConnect    = "connect"
	TypePunch      = "punch"
	TypeError      = "error"
	TypePing       = "ping"
	TypePong       = "pong"
	TypeNAT        = "nat"
	TypeUDP        = "udp"
	TypeAsk        = "ask"
	TypeConsent    = "consent"
)

// Error codes carried by TypeError messages.
const (
	CodeBadToken    = "bad_token"
	CodeNotAdmitted = "not_admitted"
	CodePeerOffline = "peer_offline"
	CodeProtocol    = "protocol"
	CodeRateLimited = "rate_limited"
	CodeReplaced    = "replaced"
)

// Message is one control frame. Which fields are set depends on Type (see
// spec.md); one flat struct keeps the codec small and easy to fuzz.
type Message struct {
	Type        string     `json:"type"`
	UDP         []string   `json:"udp,omitempty"`           // registered: the server's UDP probe endpoints
	NAT         *NATReport `json:"nat,omitempty"`           // nat: the sender's NAT; punch: the peer's
	Side        int        `json:"side,omitempty"`          // punch: which side of the session the receiver is (0 or 1)
	PeerUDP     string     `json:"peer_udp,omitempty"`      // udp: the peer's session socket as the server saw it
	DelayMs     int        `json:"delay_ms,omitempty"`      // udp: wait this long before punching, to start together
	PeerLANPort int        `json:"peer_lan_port,omitempty"` // udp: the peer's session socket's local port, for its LAN addresses
	PeerTCP     string     `json:"peer_tcp,omitempty"`      // udp: the peer's TCP session probe as the server saw it
	RTTMs       float64    `json:"rtt_ms,omitempty"`        // ping: the sender's last measured round trip; punch: the server's estimate of the peers' round trip
	Version     int        `json:"version,omitempty"`
	Token       string     `json:"token,omitempty"`
	LAN         []string   `json:"lan,omitempty"`
	Observed    string     `json:"observed,omitempty"`
	Peer        string     `json:"peer,omitempty"`
	Session     string     `json:"session,omitempty"`
	Public      string     `json:"public,omitempty"`
	Code        string     `json:"code,omitempty"`
	Text        string     `json:"message,omitempty"`
	RelayToken  string     `json:"relay_token,omitempty"` // punch: the receiver's relay token (32 hex)
	Relay       string     `json:"relay,omitempty"`       // punch: the relay's host:port, when not the server the receiver registered with (a cluster)
	RelayAuth   string     `json:"relay_auth,omitempty"`  // punch: the receiver's relay authorisation at another node (base64url)
	Seq         uint64     `json:"seq,omitempty"`         // ping, pong: the round; ask, consent: the ask
	Observe     string     `json:"observe,omitempty"`     // registered: the token of an IPv6 observation (32 hex)
	Observe6    []string   `json:"observe6,omitempty"`    // registered: the server's IPv6 endpoints for it
	Public6     string     `json:"public6,omitempty"`     // punch: the peer's IPv6 endpoint as the server saw it, when both peers have one
	Node        string     `json:"node,omitempty"`        // registered: the cluster node's name (a server alone sends none)

	// RTTs (register) are the peer's round trips to the nodes of a
	// cluster it lists, in ms by address as it lists them.
	RTTs map[string]float64 `json:"rtts,omitempty"`
}

// ErrProtocol wraps every malformed-input error from ReadMessage.
var ErrProtocol = errors.New("rendezvous protocol error")

// WriteMessage writes m as one frame.
func WriteMessage(w io.Writer, m *Message) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(body) > MaxMessage {
		return fmt.Errorf("message %s of %d bytes exceeds %d", m.Type, len(body), MaxMessage)
	}
	buf := make([]byte, 4+len(body))
	binary.BigEndian.PutUint32(buf, uint32(len(body)))
	copy(buf[4:], body)
	_, err = w.Write(buf)
	return err
}

// ReadMessage reads one frame. Oversized or malformed frames and unknown
// types return an error wrapping ErrProtocol.
func ReadMessage(r io.Reader) (*Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxMessage {
		return nil, fmt.Errorf("%w: frame of %d bytes exceeds %d", ErrProtocol, n, MaxMessage)
	}
	body, err := readBody(r, int(n))
	if err != nil {
		return nil, err
	}
	var m Message
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	switch m.Type {
	case TypeRegister, TypeRegistered, TypeConnect, TypePunch, TypeError, TypePing, TypePong, TypeNAT, TypeUDP, TypeAsk, TypeConsent:
		return &m, nil
	}
	return nil, fmt.Errorf("%w: unknown message type %q", ErrProtocol, m.Type)
}

// smallFrame is the largest frame body ReadMessage allocates whole before
// reading it. Larger ones grow with what arrives, so that a header
// announcing 64 KiB, followed by a trickle, costs the server what the
// trickle brought rather than 64 KiB per connection.
const smallFrame = 4 << 10

func readBody(r io.Reader, n int) ([]byte, error) {
	if n <= smallFrame {
		body := make([]byte, n)
		_, err := io.ReadFull(r, body)
		return body, err
	}
	var b bytes.Buffer
	b.Grow(smallFrame)
	if _, err := io.CopyN(&b, r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b.Bytes(), nil
}
