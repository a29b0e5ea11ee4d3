package portmap

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
)

// Client asks the router for port mappings and owns the mappings it made:
// Close deletes them. Its methods are safe for concurrent use.
type Client struct {
	cfg Config
	log logrus.FieldLogger
	// The protocols' ports on the router; tests point them at fakes.
	pmpPort, ssdpPort uint16

	// mu guards all following fields.
	mu       sync.Mutex
	closed   bool
	mappings map[*Mapping]struct{}
	upnp     *upnpMapper // kept so that an IGD found once is not searched again
}

// New returns a client for cfg (see Config for the defaults of its zero
// fields). log may be nil.
func New(cfg Config, log logrus.FieldLogger) (*Client, error) {
	if err := cfg.Verify(); err != nil {
		return nil, err
	}
	if log == nil {
		l := logrus.New()
		l.SetOutput(discard{})
		log = l
	}
	return &Client{cfg: cfg.withDefaults(), log: log.WithField("component", "portmap"),
		pmpPort: pmpPort, ssdpPort: ssdpPort, mappings: map[*Mapping]struct{}{}}, nil
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

// Offer is what a router answered to a probe.
type Offer struct {
	Gateway netip.Addr
	// Protocols are those that answered, first answer first.
	Protocols []Protocol
	// Errors says why each other protocol gave no answer.
	Errors map[Protocol]error
	// UPnPService is the IGD's WAN connection service when UPnP
	// answered, e.g. "WANIPConnection:2".
	UPnPService string
}

// Probe asks the router which protocols it speaks, without mapping
// anything, waiting up to the probe timeout for every protocol.
func (c *Client) Probe(ctx context.Context) (Offer, error) {
	env, err := c.env(ctx)
	if err != nil {
		return Offer{}, err
	}
	o := Offer{Gateway: env.gw, Errors: map[Protocol]error{}}
	c.race(ctx, env.mappers, func(m mapper, err error) bool {
		if err != nil {
			o.Errors[m.protocol()] = err
		} else {
			o.Protocols = append(o.Protocols, m.protocol())
		}
		if u, ok := m.(*upnpMapper); ok && err == nil {
			o.UPnPService = u.serviceName()
		}
		return false
	})
	return o, nil
}

// env is what requests need to know about the network.
type env struct {
	gw      netip.Addr
	local   netip.Addr
	mappers []mapper
}

func (c *Client) env(ctx context.Context) (env, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	switch {
	case c.cfg.Disabled:
		return env{}, ErrDisabled
	case closed:
		return env{}, ErrClosed
	}
	gw := c.cfg.Gateway
	if !gw.IsValid() {
		var err error
		if gw, err = Gateway(); err != nil {
			return env{}, err
		}
	}
	local, err := localAddr(ctx, gw)
	if err != nil {
		return env{}, fmt.Errorf("portmap: local address towards %v: %w", gw, err)
	}
	e := env{gw: gw, local: local}
	pmp := netip.AddrPortFrom(gw, c.pmpPort)
	for _, p := range c.cfg.Protocols {
		switch p {
		case UPnP:
			e.mappers = append(e.mappers, c.upnpFor(gw))
		case NATPMP:
			e.mappers = append(e.mappers, natpmpMapper{gw: pmp})
		case PCP:
			e.mappers = append(e.mappers, pcpMapper{gw: pmp, local: local})
		}
	}
	return e, nil
}

// upnpFor returns the client's UPnP mapper for gateway gw, keeping the IGD
// found before if the gateway is the same.
func (c *Client) upnpFor(gw netip.Addr) *upnpMapper {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.upnp == nil || c.upnp.gw != gw {
		c.upnp = &upnpMapper{gw: gw, ssdpPort: c.ssdpPort}
	}
	return c.upnp
}

// race probes every mapper at once and calls each with every result in
// the order they come in, until each returns true or all have answered or
// the probe timeout passed. A UPnP mapper that found its IGD before skips
// its probe.
func (c *Client) race(ctx context.Context, ms []mapper, each func(mapper, error) bool) {
	pctx, cancel := context.WithTimeout(ctx, c.cfg.ProbeTimeout)
	type result struct {
		m   mapper
		err error
	}
	ch := make(chan result, len(ms))
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if u, ok := m.(*upnpMapper); ok {
				if _, err := u.igd(); err == nil {
					ch <- result{m: m}
					return
				}
			}
			ch <- result{m: m, err: m.probe(pctx)}
		}()
	}
	for range ms {
		r := <-ch
		if each(r.m, r.err) {
			return
		}
	}
}

// Map asks the router for a mapping of local port port over t, with the
// protocol that answers the probe first (falling back to the next ones if
// it refuses), and keeps it renewed until Close.
func (c *Client) Map(ctx context.Context, t Transport, port uint16) (*Mapping, error) {
	if t != UDP && t != TCP {
		return nil, fmt.Errorf("portmap: map: unknown transport %v", t)
	}
	if port == 0 {
		return nil, errors.New("portmap: map: port 0")
	}
	m := &Mapping{c: c, t: t, internal: port, changes: make(chan netip.AddrPort, 1), done: make(chan struct{})}
	if err := m.acquire(ctx, nil); err != nil {
		return nil, err
	}
	// The renewals outlive ctx, which was only for the request: Close
	// ends them.
	rctx, stop := context.WithCancel(context.Background())
	m.stop = stop
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		stop()
		return nil, errors.Join(ErrClosed, m.delete(context.Background()))
	}
	c.mappings[m] = struct{}{}
	c.mu.Unlock()
	go m.run(rctx)
	m.logger().WithField("expires", m.Expires().Format(time.RFC3339)).Info("router mapped port")
	return m, nil
}

// acquire makes a new mapping with whichever protocol answers first.
func (m *Mapping) acquire(ctx context.Context, prev *lease) error {
	c := m.c
	e, err := c.env(ctx)
	if err != nil {
		return err
	}
	var errs []error
	got := false
	c.race(ctx, e.mappers, func(mp mapper, err error) bool {
		if err == nil {
			rctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
			var l lease
			l, err = mp.add(rctx, mapRequest{t: m.t, internal: m.internal, local: e.local, lifetime: c.cfg.Lifetime, prev: prev})
			cancel()
			if err == nil {
				if err = m.checkPublic(ctx, mp, l); err == nil {
					m.set(mp, l)
					got = true
					return true
				}
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", mp.protocol(), err))
		return false
	})
	if !got {
		return fmt.Errorf("%w: %s port %d via %v: %w", ErrNoRouter, m.t, m.internal, e.gw, errors.Join(errs...))
	}
	return nil
}

// checkPublic returns nil if l's external address is public. Otherwise
// the router is itself behind a NAT (a double NAT, a carrier's NAT): the
// mapping would not reach the internet, so it is deleted again.
func (m *Mapping) checkPublic(ctx context.Context, mp mapper, l lease) error {
	a := l.external.Addr()
	if a.Is4() && !a.IsPrivate() && !a.IsLoopback() && !a.IsLinkLocalUnicast() &&
		!a.IsMulticast() && !a.IsUnspecified() && !sharedSpace.Contains(a) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.c.cfg.CloseTimeout)
	defer cancel()
	return errors.Join(fmt.Errorf("%w: %v", ErrNotPublic, l.external), mp.remove(ctx, m.t, m.internal, l))
}

// sharedSpace is RFC 6598's carrier-grade NAT range.
var sharedSpace = netip.MustParsePrefix("100.64.0.0/10")

// Close deletes every mapping the client still holds, all within the
// close timeout, and makes Map fail from then on.
func (c *Client) Close(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	ms := make([]*Mapping, 0, len(c.mappings))
	for m := range c.mappings {
		ms = append(ms, m)
	}
	c.mu.Unlock()
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.Close(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
