package punch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// Roam announcements keep an established UDP path following its peer when
// the peer's NAT hands it a new endpoint: each side says "I am here" every
// so often, and the other side moves the path to wherever an authentic,
// fresh announcement came from. Moving a path is the one thing a packet can
// do to an established link, so nothing anyone but the two ends of the
// link could know may key it: not the punch session (the rendezvous server
// issued it, and it crosses the wire in clear in probes and relay
// headers), not a clock. The keys come from the link's own TLS session
// through an exporter (RFC 5705, RFC 8446 section 7.5), one per direction,
// and each direction numbers its announcements with a counter.
//
// The packet: "WRU\x01" | 0x04 | counter (8, big-endian) | tag (16), where
// tag is the first 16 bytes of HMAC-SHA256(key, everything before it).

// Exporter labels of the roam keys. RFC 5705 leaves labels that start with
// "EXPERIMENTAL" to private use.
const (
	roamLabelControlling = "EXPERIMENTAL warren roam controlling"
	roamLabelControlled  = "EXPERIMENTAL warren roam controlled"
	roamKeyLen           = 32
)

// Exporter derives keying material from a TLS session; it has the
// signature of tls.ConnectionState.ExportKeyingMaterial.
type Exporter func(label string, context []byte, length int) ([]byte, error)

// ErrRoamKeys is returned by NewRoam when the exporter fails.
var ErrRoamKeys = errors.New("cannot derive roam keys from the link's TLS session")

// Roam makes and checks the roam announcements of one established UDP
// path. Its methods are safe for concurrent use.
type Roam struct {
	seal, open []byte // this side's key, the peer's

	// mu guards the counters.
	mu   sync.Mutex
	sent uint64 // the last counter this side sent
	seen uint64 // the highest counter accepted from the peer
}

// NewRoam derives the roam keys of a path from export, the exporter of the
// link's TLS session that runs over it. controlling tells the two ends
// apart (it is the link's controlling end), so each direction has a key of
// its own and an end never accepts its own announcement.
func NewRoam(export Exporter, controlling bool) (*Roam, error) {
	mine, theirs := roamLabelControlled, roamLabelControlling
	if controlling {
		mine, theirs = theirs, mine
	}
	seal, err := export(mine, nil, roamKeyLen)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRoamKeys, err)
	}
	open, err := export(theirs, nil, roamKeyLen)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRoamKeys, err)
	}
	return &Roam{seal: seal, open: open}, nil
}

// Announce returns the next announcement, its counter one above the last.
func (r *Roam) Announce() []byte {
	r.mu.Lock()
	r.sent++
	n := r.sent
	r.mu.Unlock()
	return sealPacket(r.seal, udpRoam, binary.BigEndian.AppendUint64(nil, n))
}

// Accept reports whether p is an authentic announcement from the peer
// with a counter above every one accepted before; a replayed or reordered
// announcement is refused, so it cannot move the path.
func (r *Roam) Accept(p []byte) bool {
	typ, ok := openPacket(r.open, p)
	if !ok || typ != udpRoam {
		return false
	}
	n := binary.BigEndian.Uint64(p[len(udpMagic)+1:])
	r.mu.Lock()
	defer r.mu.Unlock()
	if n <= r.seen {
		return false
	}
	r.seen = n
	return true
}
