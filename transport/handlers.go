package transport

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
)

// maxPrefix bounds a handler prefix; matching is a linear scan.
const maxPrefix = 16

// handlerTable routes datagrams by prefix. Lookups run per packet on the
// read path, so the table is copy-on-write and read without a lock.
type handlerTable struct {
	mu     sync.Mutex // serializes set
	routes atomic.Pointer[[]route]
}

// route is one registered handler.
type route struct {
	prefix []byte
	fn     func(pkt []byte, from netip.AddrPort)
}

func (t *handlerTable) init() { t.routes.Store(&[]route{}) }

// set registers fn for prefix (nil fn removes it). Prefixes may not
// overlap each other, so every datagram has at most one destination.
func (t *handlerTable) set(prefix []byte, fn func(pkt []byte, from netip.AddrPort)) error {
	if len(prefix) == 0 || len(prefix) > maxPrefix {
		return fmt.Errorf("%w: %q", ErrBadPrefix, prefix)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.routes.Load()
	next := make([]route, 0, len(old)+1)
	for _, r := range old {
		if bytes.Equal(r.prefix, prefix) {
			continue // replaced or removed below
		}
		if overlaps(r.prefix, prefix) {
			return fmt.Errorf("%w: %q overlaps registered prefix %q", ErrBadPrefix, prefix, r.prefix)
		}
		next = append(next, r)
	}
	if fn != nil {
		next = append(next, route{prefix: bytes.Clone(prefix), fn: fn})
	}
	t.routes.Store(&next)
	return nil
}

// lookup returns the handler for pkt, or nil.
func (t *handlerTable) lookup(pkt []byte) func(pkt []byte, from netip.AddrPort) {
	for _, r := range *t.routes.Load() {
		if bytes.HasPrefix(pkt, r.prefix) {
			return r.fn
		}
	}
	return nil
}

// overlaps reports whether one of a and b is a prefix of the other.
func overlaps(a, b []byte) bool { return bytes.HasPrefix(a, b) || bytes.HasPrefix(b, a) }
