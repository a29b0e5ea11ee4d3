package rendezvous

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/warren-p2p/warren/identity"
	"github.com/warren-p2p/warren/punch"
)

// A relay authorisation lets one side of a session relay through a node
// of the cluster other than the one that issued the session (doc.go,
// "Clustering"). The issuing node signs it with the server key every node
// holds, so the chosen node verifies it from the bytes alone, asking no
// one. On the wire it follows relayAuthMagic, the session ID and the side
// (spec.md, "Relay"): both keys by side, the expiry and the signature.
const (
	relayAuthMagic = "WRR\x03"
	// relayAuthLen is the authorisation after the 21-byte header: keys
	// (2 × 32), expiry (8, Unix ms) and signature (64).
	relayAuthLen = 2*len(identity.PublicKey{}) + 8 + ed25519.SignatureSize
	// relayAuthContext starts every signed message, so that a signature
	// over a relay authorisation can never be mistaken for one the key
	// makes elsewhere (TLS 1.3's CertificateVerify has a context of its
	// own, which this is not a prefix of).
	relayAuthContext = "warren relay authorisation v1\x00"
	// maxRelayAuthAhead bounds how far in the future an authorisation
	// may expire: the spent sessions a node remembers (against replays)
	// it keeps until their authorisation expires.
	maxRelayAuthAhead = 10 * time.Minute
)

// relayAuth is one side's authorisation to relay session at node.
type relayAuth struct {
	session punch.SessionID
	side    byte
	keys    [2]identity.PublicKey
	expiry  time.Time
	sig     [ed25519.SignatureSize]byte
}

// signed is the message the signature covers: everything the
// authorisation binds, the chosen node's name included.
func (a *relayAuth) signed(node string) []byte {
	b := make([]byte, 0, len(relayAuthContext)+len(node)+1+16+1+64+8)
	b = append(b, relayAuthContext...)
	b = append(b, node...)
	b = append(b, 0)
	b = append(b, a.session[:]...)
	b = append(b, a.side)
	b = append(b, a.keys[0][:]...)
	b = append(b, a.keys[1][:]...)
	return binary.BigEndian.AppendUint64(b, uint64(a.expiry.UnixMilli()))
}

// signRelayAuth makes side's authorisation of session between keys (by
// side) to relay at node until expiry.
func signRelayAuth(key identity.PrivateKey, node string, id punch.SessionID, side int, keys [2]identity.PublicKey, expiry time.Time) relayAuth {
	a := relayAuth{session: id, side: byte(side), keys: keys, expiry: time.UnixMilli(expiry.UnixMilli())}
	copy(a.sig[:], ed25519.Sign(key.Signer(), a.signed(node)))
	return a
}

// encode is the authorisation as the punch instruction carries it (the
// bytes after the 21-byte relay header, in base64url): opaque to the
// daemon, which copies it into its relay header.
func (a *relayAuth) encode() string {
	b := make([]byte, 0, relayAuthLen)
	b = append(b, a.keys[0][:]...)
	b = append(b, a.keys[1][:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(a.expiry.UnixMilli()))
	b = append(b, a.sig[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// parseRelayAuth reads the bytes after a relayAuthMagic header.
func parseRelayAuth(id punch.SessionID, side byte, b []byte) (relayAuth, error) {
	a := relayAuth{session: id, side: side}
	if len(b) != relayAuthLen {
		return a, fmt.Errorf("relay authorisation of %d bytes, want %d", len(b), relayAuthLen)
	}
	copy(a.keys[0][:], b[0:32])
	copy(a.keys[1][:], b[32:64])
	a.expiry = time.UnixMilli(int64(binary.BigEndian.Uint64(b[64:72])))
	copy(a.sig[:], b[72:])
	return a, nil
}

// verify returns the key a's side relays for at node, or the reason to
// refuse it: a signature by pub over what a binds and this node's name
// (an authorisation for another node, or altered, fails), and an expiry
// not passed, nor further than maxRelayAuthAhead.
func (a *relayAuth) verify(pub identity.PublicKey, node string, now time.Time) (identity.PublicKey, string) {
	if !ed25519.Verify(ed25519.PublicKey(pub[:]), a.signed(node), a.sig[:]) {
		return identity.PublicKey{}, refusedRelayToken
	}
	if now.After(a.expiry) || a.expiry.Sub(now) > maxRelayAuthAhead {
		return identity.PublicKey{}, refusedRelayExpired
	}
	return a.keys[a.side], ""
}

// spentSessions are the sessions a node relayed on authorisations,
// until those expire: an authorisation serves one pair, once, like an
// issued session, though the node that verifies it never issued it.
type spentSessions struct {
	// mu guards the fields below.
	mu    sync.Mutex
	until map[punch.SessionID]time.Time
	peak  int
}

// spend records session id as relayed until expiry; false if it was
// already, or if the node holds maxSpent sessions (it refuses rather
// than forget one whose replay it must refuse).
func (s *spentSessions) spend(id punch.SessionID, expiry time.Time, maxSpent int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.until[id]; ok || over(len(s.until), maxSpent) {
		return false
	}
	s.until[id] = expiry
	s.peak = max(s.peak, len(s.until))
	return true
}

// spent reports whether session id was relayed already.
func (s *spentSessions) spent(id punch.SessionID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.until[id]
	return ok
}

// sweep forgets sessions whose authorisations have expired: replaying
// them is refused for that.
func (s *spentSessions) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.until {
		if now.After(t) {
			delete(s.until, id)
		}
	}
	s.until = shrink(s.until, &s.peak)
}

// DialRelayAuth is DialRelay for a relay at another node of a cluster,
// opened with the authorisation auth (Punch.RelayAuth) instead of a
// token.
func DialRelayAuth(ctx context.Context, conn net.Conn, session punch.SessionID, side int, auth []byte) (net.Conn, error) {
	if len(auth) != relayAuthLen {
		conn.Close()
		return nil, fmt.Errorf("relay: authorisation of %d bytes, want %d", len(auth), relayAuthLen)
	}
	return dialRelay(ctx, conn, append(header(relayAuthMagic, session, side), auth...))
}

// decodeRelayAuth reads a punch instruction's relay_auth; a malformed one
// is no authorisation.
func decodeRelayAuth(s string) []byte {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != relayAuthLen {
		return nil
	}
	return b
}

// readRelayClaim reads the rest of a relay header whose first 21 bytes
// (magic, session, side) were read: the token, or the authorisation.
func readRelayClaim(br *bufio.Reader, magic string, id punch.SessionID, side byte) (relayClaim, error) {
	cl := relayClaim{id: id, side: side}
	if magic == relayMagic {
		if _, err := io.ReadFull(br, cl.tok[:]); err != nil {
			return cl, fmt.Errorf("relay token: %w", err)
		}
		return cl, nil
	}
	var b [relayAuthLen]byte
	if _, err := io.ReadFull(br, b[:]); err != nil {
		return cl, fmt.Errorf("relay authorisation: %w", err)
	}
	a, err := parseRelayAuth(id, side, b[:])
	cl.auth = &a
	return cl, err
}
