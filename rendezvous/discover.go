package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/warren-p2p/warren/internal/conf"
	"github.com/warren-p2p/warren/punch"
)

// DiscoverConfig configures Discover. A zero field means its default; a
// negative one is an error (Verify; Discover refuses it).
type DiscoverConfig struct {
	// Servers are the rendezvous server's UDP probe endpoints, 1 to 3,
	// e.g. IP1:P1, IP1:P2, IP2:P2 (see ProbeEndpoints). With one, the
	// mapping behaviour stays unknown; with two or more, their differences
	// (port, IP or both) decide which dependences can be told apart.
	Servers []netip.AddrPort
	// Series is how many fresh sockets probe one endpoint (Servers[0], or
	// the first that answered) one after another to see how the NAT
	// allocates ports. Default 6: more than two, so that
	// one gap left by another user of a busy sequential NAT does not make
	// it look random.
	Series int
	// Timeout is how long to wait for one probe's answer before sending it
	// again; each probe is sent at most three times. Default 1s.
	Timeout time.Duration
	// ListenPacket opens the probing sockets. Default net.ListenPacket;
	// tests inject one that opens sockets inside a network namespace.
	ListenPacket func(network, addr string) (net.PacketConn, error)
	// LocalAddrs returns the machine's own addresses, to tell whether the
	// server saw one of them (no NAT). Default: every interface address.
	LocalAddrs func() []netip.Addr
}

// probeAttempts is how often one probe is sent: once and two retries.
const probeAttempts = 3

// Defaults of DiscoverConfig.
const (
	DefaultDiscoverSeries  = 6
	DefaultDiscoverTimeout = time.Second
)

// Verify reports whether c is usable.
func (c DiscoverConfig) Verify() error {
	return errors.Join(conf.NotNegative("discover: Series", c.Series), conf.NotNegative("discover: Timeout", c.Timeout))
}

func (c DiscoverConfig) withDefaults() DiscoverConfig {
	conf.Default(&c.Series, DefaultDiscoverSeries)
	conf.Default(&c.Timeout, DefaultDiscoverTimeout)
	if c.ListenPacket == nil {
		c.ListenPacket = net.ListenPacket
	}
	if c.LocalAddrs == nil {
		c.LocalAddrs = interfaceAddrs
	}
	return c
}

// Discover probes the rendezvous server's UDP endpoints to learn the NAT in
// front of this machine, and returns the verdict (see punch.Classify) with
// the samples it rests on: first the mapping socket's, then the series' in
// the order the series' sockets were opened.
//
//  1. Mapping: one socket probes every endpoint in Servers. Its probes go
//     out back to back and are answered together, so this costs one round
//     trip.
//  2. Allocation: Series fresh sockets are opened one after another, each
//     sending its probe to the first endpoint that answered in step 1
//     (Servers[0] when it did) before the next socket is opened. A
//     sequential NAT then hands them consecutive ports. The answers are
//     awaited in parallel: the order that matters is the order in which
//     the first packets reach the NAT, not that of the replies. This keeps
//     the series to about one round trip, so that the other users of a
//     busy NAT have little time to take ports in between.
//
// Every socket stays open until the series is done, so that the OS does not
// hand a closed socket's local port to the next one (which would make a
// port-preserving NAT look sequential, or reuse a mapping). Unanswered
// probes are resent every Timeout, up to three sends in all.
//
// Discover fails only if no probe at all was answered (or there is nothing
// to probe); a partial picture is classified with what there is. It returns
// early, with what it has, when ctx ends.
func Discover(ctx context.Context, cfg DiscoverConfig) (punch.NAT, []punch.Sample, error) {
	if len(cfg.Servers) == 0 {
		return punch.NAT{}, nil, errors.New("nat discovery: no probe endpoints")
	}
	if err := cfg.Verify(); err != nil {
		return punch.NAT{}, nil, err
	}
	cfg = cfg.withDefaults()
	network, laddr := probeNetwork(cfg.Servers)

	var probers []*prober
	defer func() {
		for _, p := range probers {
			p.pc.Close()
		}
	}()
	open := func() (*prober, error) {
		pc, err := cfg.ListenPacket(network, laddr)
		if err != nil {
			return nil, fmt.Errorf("nat discovery: open probe socket: %w", err)
		}
		p := newProber(pc)
		probers = append(probers, p)
		return p, nil
	}

	// 1. Mapping behaviour.
	m, err := open()
	if err != nil {
		return punch.NAT{}, nil, err
	}
	m.send(cfg.Servers...)
	samples := m.collect(ctx, cfg.Timeout)
	if len(samples) == 0 {
		if err := ctx.Err(); err != nil {
			return punch.NAT{}, nil, fmt.Errorf("nat discovery: %w", err)
		}
		return punch.NAT{}, nil, fmt.Errorf("nat discovery: no probe answered (%s)", m.errString())
	}
	// samples follow the order of Servers.
	target := samples[0].Server

	// 2. Port allocation.
	results := make([][]punch.Sample, cfg.Series)
	var wg sync.WaitGroup
	for i := range cfg.Series {
		if ctx.Err() != nil {
			break
		}
		p, err := open()
		if err != nil {
			// The verdict can rest on fewer sockets.
			break
		}
		// send returns once the datagram is handed to the kernel, which
		// queues it ahead of the next socket's.
		p.send(target)
		wg.Go(func() { results[i] = p.collect(ctx, cfg.Timeout) })
	}
	wg.Wait()
	for _, r := range results {
		samples = append(samples, r...)
	}
	return punch.Classify(cfg.LocalAddrs(), samples), samples, nil
}

// prober is one probing socket and the probes it sent.
type prober struct {
	pc    net.PacketConn
	local netip.AddrPort
	reqs  []probeReq
	// errs keeps the first few errors, for the message when nothing
	// answered.
	errs []string
}

// probeReq is one probe: its request (resent unchanged, so that a late
// answer to an earlier send still counts) and, once answered, what the
// server saw.
type probeReq struct {
	server netip.AddrPort
	req    []byte
	mapped netip.AddrPort
}

func newProber(pc net.PacketConn) *prober {
	p := &prober{pc: pc}
	if ua, ok := pc.LocalAddr().(*net.UDPAddr); ok {
		p.local = unmap(ua.AddrPort())
	} else if ap, err := netip.ParseAddrPort(pc.LocalAddr().String()); err == nil {
		p.local = ap
	}
	return p
}

func (p *prober) fail(err error) {
	if len(p.errs) < 3 {
		p.errs = append(p.errs, err.Error())
	}
}

func (p *prober) errString() string {
	if len(p.errs) == 0 {
		return "timed out"
	}
	return strings.Join(p.errs, "; ")
}

// send sends one new probe to each server, in order.
func (p *prober) send(servers ...netip.AddrPort) {
	for _, s := range servers {
		p.reqs = append(p.reqs, probeReq{server: s, req: plainProbe()})
		p.write(&p.reqs[len(p.reqs)-1])
	}
}

func (p *prober) write(r *probeReq) {
	if err := writeProbe(p.pc, r.req, net.UDPAddrFromAddrPort(r.server)); err != nil {
		p.fail(fmt.Errorf("udp probe %s: %w", r.server, err))
	}
}

// collect reads answers until every probe is answered, resending the
// unanswered ones every timeout, and returns the answered ones as samples
// in the order they were sent. It gives up after probeAttempts sends or
// when ctx ends.
func (p *prober) collect(ctx context.Context, timeout time.Duration) []punch.Sample {
	stop := context.AfterFunc(ctx, func() { p.pc.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 256)
	for attempt := 1; p.pending() > 0 && ctx.Err() == nil; {
		deadline := time.Now().Add(timeout)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		p.pc.SetReadDeadline(deadline)
		if ctx.Err() != nil {
			// AfterFunc may have fired before the line above.
			break
		}
		n, _, err := p.pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				p.fail(err)
				break
			}
			if attempt++; attempt > probeAttempts {
				break
			}
			for i := range p.reqs {
				if !p.reqs[i].mapped.IsValid() {
					p.write(&p.reqs[i])
				}
			}
			continue
		}
		p.answer(buf[:n])
	}
	var out []punch.Sample
	for _, r := range p.reqs {
		if r.mapped.IsValid() {
			out = append(out, punch.Sample{Local: p.local, Server: r.server, Mapped: r.mapped})
		}
	}
	return out
}

func (p *prober) pending() int {
	n := 0
	for _, r := range p.reqs {
		if !r.mapped.IsValid() {
			n++
		}
	}
	return n
}

// answer records a reply if it answers one of p's probes; anything else
// (strays, duplicates) is ignored.
func (p *prober) answer(b []byte) {
	for i := range p.reqs {
		r := &p.reqs[i]
		if r.mapped.IsValid() {
			continue
		}
		if mapped, ok, err := parseReply(r.req, b); ok {
			if err == nil {
				r.mapped = unmap(mapped)
			}
			return
		}
	}
}

// probeNetwork picks the socket type that reaches every server: IPv4 or
// IPv6 only when they agree, dual-stack otherwise.
func probeNetwork(servers []netip.AddrPort) (network, laddr string) {
	var v4, v6 bool
	for _, s := range servers {
		if s.Addr().Unmap().Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	switch {
	case v4 && !v6:
		return "udp4", "0.0.0.0:0"
	case v6 && !v4:
		return "udp6", "[::]:0"
	}
	return "udp", ":0"
}

// interfaceAddrs returns the machine's interface addresses; on error, none
// (then every observed address counts as someone else's: behind a NAT).
func interfaceAddrs() []netip.Addr {
	addrs, _ := punch.InterfaceAddrs()
	return addrs
}

// ProbeEndpoints returns the addresses on which a server run with -listen
// listen and -alt-listen alt (may be empty) should answer UDP probes, so
// that clients can tell the NAT mapping behaviours apart:
//
//   - listen;
//   - alt, unless it is listen again;
//   - when alt differs from listen in both IP and port, also listen's IP
//     with alt's port. With only IP1:P1 and IP2:P2, a client whose mapping
//     changes between them cannot tell whether the IP or the port changed
//     it; IP1:P2 differs from IP1:P1 in the port alone and from IP2:P2 in
//     the IP alone, so the three separate address-dependent from
//     address-and-port-dependent mapping.
//
// The third endpoint is left out when either host is a wildcard (empty,
// 0.0.0.0, ::), since binding it would collide with the other listener's
// port, or when either port is 0, since an ephemeral port is not alt's.
// Hosts are compared as IPs when both are IPs, else as names.
func ProbeEndpoints(listen, alt string) ([]string, error) {
	lh, lp, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", listen, err)
	}
	out := []string{listen}
	if alt == "" {
		return out, nil
	}
	ah, ap, err := net.SplitHostPort(alt)
	if err != nil {
		return nil, fmt.Errorf("alt listen address %q: %w", alt, err)
	}
	sameHost, samePort := sameHost(lh, ah), samePort(lp, ap)
	if sameHost && samePort {
		return out, nil
	}
	out = append(out, alt)
	if !sameHost && !samePort && !wildcardHost(lh) && !wildcardHost(ah) && !zeroPort(lp) && !zeroPort(ap) {
		out = append(out, net.JoinHostPort(lh, ap))
	}
	return out, nil
}

func sameHost(a, b string) bool {
	ia, errA := netip.ParseAddr(a)
	ib, errB := netip.ParseAddr(b)
	if errA == nil && errB == nil {
		return ia.Unmap() == ib.Unmap()
	}
	return strings.EqualFold(a, b)
}

func samePort(a, b string) bool {
	pa, errA := strconv.ParseUint(a, 10, 16)
	pb, errB := strconv.ParseUint(b, 10, 16)
	if errA == nil && errB == nil {
		return pa == pb
	}
	return a == b
}

func wildcardHost(h string) bool {
	ip, err := netip.ParseAddr(h)
	return h == "" || err == nil && ip.IsUnspecified()
}

func zeroPort(p string) bool {
	n, err := strconv.ParseUint(p, 10, 16)
	return p == "" || err == nil && n == 0
}
