package rendezvous

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/punch"
)

// RelayToken binds one side of a punch session's relay to the key the
// session was issued to as that side. The server sends each side its own
// in the punch instruction, over the side's TLS control connection, and
// the side presents it in its relay header: the session ID alone crosses
// the wire in clear (in UDP probes), the token never does, so whoever
// learnt a session ID still cannot open either side, relay on a peer's
// rate, or spend its budget. It also frees a relay from the source its key
// registered from (a carrier-grade NAT may give a peer's connections
// different public addresses).
type RelayToken [16]byte

// relaySecret is the key of a server's relay tokens, made at start: the
// sessions tokens serve live in the server's memory only, so a restart
// that forgets the secret forgets nothing else.
type relaySecret [32]byte

func newRelaySecret() (relaySecret, error) {
	var s relaySecret
	if _, err := rand.Read(s[:]); err != nil {
		return s, fmt.Errorf("relay secret: %w", err)
	}
	return s, nil
}

// token is HMAC-SHA256(secret, session ‖ side ‖ key), cut to 16 bytes.
func (s *relaySecret) token(id punch.SessionID, side int, key identity.PublicKey) RelayToken {
	m := hmac.New(sha256.New, s[:])
	m.Write(id[:])
	m.Write([]byte{byte(side)})
	m.Write(key[:])
	var t RelayToken
	copy(t[:], m.Sum(nil))
	return t
}

// valid reports, in constant time, whether t is side's token of session
// id issued to key.
func (s *relaySecret) valid(t RelayToken, id punch.SessionID, side int, key identity.PublicKey) bool {
	want := s.token(id, side, key)
	return subtle.ConstantTimeCompare(want[:], t[:]) == 1
}

// String is the token as the punch instruction carries it: 32 hex digits.
func (t RelayToken) String() string { return hex.EncodeToString(t[:]) }

// parseRelayToken reads a token in String's form.
func parseRelayToken(s string) (RelayToken, error) {
	var t RelayToken
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(t) {
		return t, fmt.Errorf("relay token %q: want %d hex digits", s, 2*len(t))
	}
	copy(t[:], b)
	return t, nil
}

// relayHeaderLen is a relay header's length.
const relayHeaderLen = tcpProbeLen + len(RelayToken{})

// relayHeader returns a relay connection's 37-byte header: relayMagic,
// session ID (16), side (1) and the side's token (16).
func relayHeader(id punch.SessionID, side int, t RelayToken) []byte {
	return append(header(relayMagic, id, side), t[:]...)
}
