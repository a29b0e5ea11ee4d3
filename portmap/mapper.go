package portmap

import (
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"time"
)

// mapper is one protocol's way of making and deleting a mapping.
type mapper interface {
	protocol() Protocol
	// probe reports whether the router answers this protocol at all,
	// without mapping anything.
	probe(ctx context.Context) error
	// add makes (or, with req.prev, renews) a mapping.
	add(ctx context.Context, req mapRequest) (lease, error)
	// remove deletes the mapping l of port internal.
	remove(ctx context.Context, t Transport, internal uint16, l lease) error
}

// mapRequest is what add is asked for.
type mapRequest struct {
	t        Transport
	internal uint16
	local    netip.Addr // this host's address towards the router
	lifetime time.Duration
	prev     *lease // the lease being renewed, or nil
}

// lease is a mapping as the router granted it.
type lease struct {
	external netip.AddrPort
	lifetime time.Duration // 0: permanent (an old UPnP router)
	nonce    [pcpNonceLen]byte
}

// natpmpMapper speaks NAT-PMP to the gateway.
type natpmpMapper struct{ gw netip.AddrPort }

func (m natpmpMapper) protocol() Protocol { return NATPMP }

func (m natpmpMapper) probe(ctx context.Context) error {
	_, err := m.address(ctx)
	return err
}

func (m natpmpMapper) address(ctx context.Context) (netip.Addr, error) {
	var a netip.Addr
	err := exchange(ctx, m.gw, encodePMPAddressRequest(), func(b []byte) (err error) {
		a, err = decodePMPAddress(b)
		return err
	})
	return a, err
}

func (m natpmpMapper) add(ctx context.Context, req mapRequest) (lease, error) {
	ip, err := m.address(ctx)
	if err != nil {
		return lease{}, err
	}
	ext := req.internal
	if req.prev != nil {
		ext = req.prev.external.Port()
	}
	var r pmpMapResult
	err = exchange(ctx, m.gw, encodePMPMap(req.t, req.internal, ext, req.lifetime), func(b []byte) (err error) {
		r, err = decodePMPMap(b, req.t, req.internal)
		return err
	})
	if err != nil {
		return lease{}, err
	}
	if r.external == 0 {
		return lease{}, errors.New("nat-pmp: router mapped to external port 0")
	}
	return lease{external: netip.AddrPortFrom(ip, r.external), lifetime: r.lifetime}, nil
}

func (m natpmpMapper) remove(ctx context.Context, t Transport, internal uint16, _ lease) error {
	// RFC 6886 3.4: lifetime 0 and external port 0 delete the mapping.
	return exchange(ctx, m.gw, encodePMPMap(t, internal, 0, 0), func(b []byte) error {
		_, err := decodePMPMap(b, t, internal)
		return err
	})
}

// pcpMapper speaks PCP to the gateway from address local.
type pcpMapper struct {
	gw    netip.AddrPort
	local netip.Addr
}

func (m pcpMapper) protocol() Protocol { return PCP }

func (m pcpMapper) probe(ctx context.Context) error {
	return exchange(ctx, m.gw, encodePCPAnnounce(m.local), decodePCPAnnounce)
}

func (m pcpMapper) add(ctx context.Context, req mapRequest) (lease, error) {
	r := pcpRequest{client: req.local, t: req.t, internal: req.internal, lifetime: req.lifetime,
		external: netip.AddrPortFrom(netip.IPv4Unspecified(), req.internal)}
	if req.prev != nil {
		// A renewal repeats the nonce and suggests what was assigned
		// (RFC 6887 section 11.2.1).
		r.nonce, r.external = req.prev.nonce, req.prev.external
	}
	if r.nonce == ([pcpNonceLen]byte{}) {
		// A new mapping, or one that replaces another protocol's lease.
		_, _ = rand.Read(r.nonce[:]) // crypto/rand.Read never fails
	}
	var l lease
	err := exchange(ctx, m.gw, encodePCPMap(r), func(b []byte) (err error) {
		l.external, l.lifetime, err = decodePCPMap(b, r)
		return err
	})
	l.nonce = r.nonce
	return l, err
}

func (m pcpMapper) remove(ctx context.Context, t Transport, internal uint16, l lease) error {
	r := pcpRequest{client: m.local, nonce: l.nonce, t: t, internal: internal, external: l.external}
	return exchange(ctx, m.gw, encodePCPMap(r), func(b []byte) error {
		_, _, err := decodePCPMap(b, r)
		return err
	})
}
