package natlab

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
)

// Site is a place on the lab's internet: a NAT router (two for a double
// NAT) with hosts behind it, or for Kind Open a public host with no router.
// Its methods are safe for concurrent use.
type Site struct {
	lab   *Lab
	name  string
	kind  Kind // the outer NAT's kind for a double NAT
	inner Kind // the home NAT's kind for a double NAT, else ""
	index int  // site number: the i of 10.i.0.0/24

	routers []*Host // outermost first; none for Open
	lanNS   string  // namespace holding the hosts' LAN bridge (innermost router)
	uplink  *uplink // the emulator on the site's uplink, nil for none

	v6only bool // IPv6Only: no IPv4 route beyond the LAN

	// hosts and renumbered are guarded by lab.mu.
	hosts      []*Host
	renumbered int // addresses handed out by Renumber
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)

// Name returns the site's name (also the name of its first host).
func (s *Site) Name() string { return s.name }

// Kind returns the site's NAT kind; for a double NAT, the outer (carrier)
// NAT's kind, the one the internet sees. See InnerKind.
func (s *Site) Kind() Kind { return s.kind }

// InnerKind returns the home NAT's kind of a double NAT, or "" for a site
// with one NAT or none.
func (s *Site) InnerKind() Kind { return s.inner }

// Host returns the site's first host, named like the site.
func (s *Site) Host() *Host {
	s.lab.mu.Lock()
	defer s.lab.mu.Unlock()
	return s.hosts[0]
}

// Hosts returns the site's hosts in order of creation (background busy
// hosts excluded).
func (s *Site) Hosts() []*Host {
	s.lab.mu.Lock()
	defer s.lab.mu.Unlock()
	return append([]*Host(nil), s.hosts...)
}

// Routers returns the site's routers as hosts, outermost first: none for
// Open, the carrier router then the home router for a double NAT. A
// router's Addrs are its WAN then its LAN address.
func (s *Site) Routers() []*Host { return append([]*Host(nil), s.routers...) }

// PublicAddr returns the address the internet sees the site's hosts come
// from: the (outer) router's WAN address, or an Open host's own address.
func (s *Site) PublicAddr() netip.Addr {
	if len(s.routers) == 0 {
		return s.Host().Addr()
	}
	return s.routers[0].Addr()
}

// Forget flushes the conntrack table of the site's router(s), as a NAT
// that reboots or drops its mappings would: existing flows get new
// mappings on their next outbound packet, and inbound packets to old ones
// are dropped. It does nothing for an Open site.
func (s *Site) Forget(ctx context.Context) error {
	ctx, stop := s.lab.op(ctx)
	defer stop()
	for _, r := range s.routers {
		if _, err := r.Run(ctx, "conntrack", "-F"); err != nil {
			return err // names the router and the command
		}
	}
	return nil
}

// Exec runs a program in the site's (outer) router namespace and returns
// its combined output, e.g. Exec(ctx, "conntrack", "-L") or
// Exec(ctx, "nft", "list", "ruleset"). For an Open site, which has no
// router, it runs on the host, the site's edge.
func (s *Site) Exec(ctx context.Context, args ...string) ([]byte, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("natlab: site %s: exec: no command", s.name)
	}
	edge := s.Host()
	if len(s.routers) > 0 {
		edge = s.routers[0]
	}
	ctx, stop := s.lab.op(ctx)
	defer stop()
	return edge.Run(ctx, args[0], args[1:]...)
}

// AddSite adds a site named name (1-12 lower-case letters and digits,
// starting with a letter, unique in the lab) with a NAT of kind kind and
// one host, also named name, behind it at 10.i.0.2; for Open, the host sits
// on the internet segment instead. If it fails, or ctx ends first, it
// removes whatever it made for the site. The site's uplink (the router's
// WAN, or an Open site's first host) gets the lab's Config.Profile, or the
// one given WithProfile.
func (l *Lab) AddSite(ctx context.Context, name string, kind Kind, opts ...SiteOption) (*Site, error) {
	if !kind.Valid() {
		return nil, fmt.Errorf("natlab: add site %s: unknown kind %q", name, kind)
	}
	s, err := l.addSite(ctx, name, opts, func(ctx context.Context, s *Site) error {
		s.kind = kind
		if kind == Open {
			if s.v6only {
				return errors.New("an Open site cannot be IPv6-only: its host is on the IPv4 internet")
			}
			return nil
		}
		wan, err := l.publicAddrLocked()
		if err != nil {
			return err
		}
		r, err := l.addRouterLocked(ctx, l.prefix+"-"+name+"-r", kind,
			l.inet, hubDev, internet.Bits(), wan, hubAddr, s.lanPrefix(), s.uplink)
		if err != nil {
			return err
		}
		s.routers = []*Host{r}
		s.lanNS = r.name
		if l.cfg.IPv6 {
			return l.routeSite6Locked(ctx, s, r, wan)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("natlab: add site %s (%s): %w", name, kind, err)
	}
	return s, nil
}

// AddDoubleNAT adds a site whose hosts sit behind a home NAT of kind inner,
// whose WAN side (100.64.i.2) sits behind a carrier NAT of kind outer on
// the internet; neither may be Open. Hairpinning is not offered by either.
// As for AddSite, it removes what it made if it fails; the profile applies
// to the carrier NAT's uplink.
func (l *Lab) AddDoubleNAT(ctx context.Context, name string, outer, inner Kind, opts ...SiteOption) (*Site, error) {
	for _, k := range []Kind{outer, inner} {
		if !k.Valid() || k == Open {
			return nil, fmt.Errorf("natlab: add double NAT %s: kind %q: want a NAT kind", name, k)
		}
	}
	s, err := l.addSite(ctx, name, opts, func(ctx context.Context, s *Site) error {
		s.kind, s.inner = outer, inner
		if s.v6only {
			return errors.New("a double NAT cannot be IPv6-only: its hosts have no IPv6")
		}
		wan, err := l.publicAddrLocked()
		if err != nil {
			return err
		}
		carrier := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, byte(s.index), 1}), 24)
		cgn, err := l.addRouterLocked(ctx, l.prefix+"-"+name+"-cgn", outer,
			l.inet, hubDev, internet.Bits(), wan, hubAddr, carrier, s.uplink)
		if err != nil {
			return err
		}
		home, err := l.addRouterLocked(ctx, l.prefix+"-"+name+"-r", inner,
			cgn.name, lanDev, carrier.Bits(), carrier.Addr().Next(), carrier.Addr(), s.lanPrefix(), nil)
		if err != nil {
			return err
		}
		s.routers = []*Host{cgn, home}
		s.lanNS = home.name
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("natlab: add double NAT %s (%s/%s): %w", name, outer, inner, err)
	}
	return s, nil
}

// addSite does what AddSite and AddDoubleNAT share: checks, the lock,
// building routers (with build) and the first host, undoing on failure.
func (l *Lab) addSite(ctx context.Context, name string, opts []SiteOption, build func(context.Context, *Site) error) (*Site, error) {
	o, err := l.siteOptions(opts)
	if err != nil {
		return nil, err
	}
	ctx, stop := l.op(ctx)
	defer stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.checkNameLocked(name); err != nil {
		return nil, err
	}
	if len(l.sites) >= maxSites {
		return nil, fmt.Errorf("lab has the maximum of %d sites", maxSites)
	}
	if o.v6only && !l.cfg.IPv6 {
		return nil, errors.New("an IPv6-only site needs a lab with Config.IPv6")
	}
	s := &Site{lab: l, name: name, index: len(l.sites) + 1, uplink: l.newUplink(name, o.profile), v6only: o.v6only}
	mark := l.markLocked()
	err = build(ctx, s)
	if err == nil {
		_, err = l.addHostLocked(ctx, s, name)
	}
	if err != nil {
		return nil, errors.Join(err, l.undoLocked(mark))
	}
	l.names[name] = true
	l.sites = append(l.sites, s)
	return s, nil
}

// AddHost adds another host named name behind the site's NAT (at the next
// LAN address), or for an Open site another public host. Hosts behind the
// same NAT reach each other directly on the LAN; the NAT does not hairpin.
func (s *Site) AddHost(ctx context.Context, name string) (*Host, error) {
	l := s.lab
	ctx, stop := l.op(ctx)
	defer stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.checkNameLocked(name); err != nil {
		return nil, fmt.Errorf("natlab: site %s: add host %s: %w", s.name, name, err)
	}
	mark := l.markLocked()
	h, err := l.addHostLocked(ctx, s, name)
	if err != nil {
		return nil, fmt.Errorf("natlab: site %s: add host %s: %w", s.name, name, errors.Join(err, l.undoLocked(mark)))
	}
	l.names[name] = true
	return h, nil
}

// Renumber gives host h, behind the site's NAT, a new LAN address in place
// of its old one, as a new DHCP lease would: sockets bound to the old
// address are stranded, and the NAT sees the host's traffic come from a
// new inside address. It returns the new address.
func (s *Site) Renumber(ctx context.Context, h *Host) (netip.Addr, error) {
	l := s.lab
	ctx, stop := l.op(ctx)
	defer stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	fail := func(err error) (netip.Addr, error) {
		return netip.Addr{}, fmt.Errorf("natlab: site %s: renumber %s: %w", s.name, h.name, err)
	}
	switch {
	case s.kind == Open:
		return fail(errors.New("a public host keeps its address"))
	case !slices.Contains(s.hosts, h):
		return fail(errors.New("not a host of this site"))
	case renumberFirst+s.renumbered > 254:
		return fail(errors.New("no renumbering addresses left"))
	}
	a := netip.AddrFrom4([4]byte{10, byte(s.index), 0, byte(renumberFirst + s.renumbered)})
	s.renumbered++
	lan := s.lanPrefix()
	// Flushing takes the routes with the old address; the default route
	// comes back with the new one.
	for _, args := range [][]string{
		{"-4", "addr", "flush", "dev", "eth0"},
		{"addr", "add", netip.PrefixFrom(a, lan.Bits()).String(), "dev", "eth0"},
		{"route", "add", "default", "via", lan.Addr().String(), "dev", "eth0"},
	} {
		if err := ipn(ctx, h.name, args...); err != nil {
			return fail(err)
		}
	}
	h.mu.Lock()
	h.addrs[0] = a // the IPv6 address, if any, stays
	h.mu.Unlock()
	return a, nil
}

func (l *Lab) checkNameLocked(name string) error {
	if l.closed {
		return errors.New("lab is closed")
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("name %q: want 1-12 lower-case letters and digits, starting with a letter", name)
	}
	if l.names[name] {
		return fmt.Errorf("name %q already used in this lab", name)
	}
	return nil
}

// lanPrefix is the site's LAN with the router's address: 10.i.0.1/24.
func (s *Site) lanPrefix() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(s.index), 0, 1}), 24)
}

// addHostLocked makes host name at site s and appends it to s.hosts.
func (l *Lab) addHostLocked(ctx context.Context, s *Site, name string) (*Host, error) {
	h := &Host{name: l.prefix + "-" + name}
	var err error
	if s.kind == Open {
		var a netip.Addr
		if a, err = l.publicAddrLocked(); err != nil {
			return nil, err
		}
		h.addrs = []netip.Addr{a}
		// The site's uplink is its first host's; others are plain.
		var up *uplink
		if len(s.hosts) == 0 {
			up = s.uplink
		}
		if err = l.addNamespaceLocked(ctx, h.name); err == nil {
			err = l.attachLocked(ctx, h.name, "eth0", l.inet, hubDev, internet.Bits(), h.addrs, hubAddr, up)
		}
	} else {
		if len(s.hosts) >= maxHosts {
			return nil, fmt.Errorf("site has the maximum of %d hosts", maxHosts)
		}
		lan := s.lanPrefix()
		a := netip.AddrFrom4([4]byte{10, byte(s.index), 0, byte(2 + len(s.hosts))})
		h.addrs = []netip.Addr{a}
		if err = l.addNamespaceLocked(ctx, h.name); err == nil {
			err = l.attachLocked(ctx, h.name, "eth0", s.lanNS, lanDev, lan.Bits(), h.addrs, lan.Addr(), nil)
		}
	}
	if err == nil && l.cfg.IPv6 {
		err = l.addHost6Locked(ctx, s, h)
	}
	if err == nil && s.v6only {
		err = ipn(ctx, h.name, "-4", "route", "del", "default")
	}
	if err != nil {
		return nil, err
	}
	s.hosts = append(s.hosts, h)
	return h, nil
}

// addRouterLocked makes router namespace ns, a NAT of kind kind whose WAN
// (wan0, address wan/bits, default route via gw) hangs off bridge wanBr in
// namespace wanNS and whose LAN is a bridge lan0 with address lan. For
// SymSeqBusy it also makes the busy host on that LAN. With up, the WAN
// reaches the bridge through that uplink emulator.
func (l *Lab) addRouterLocked(ctx context.Context, ns string, kind Kind,
	wanNS, wanBr string, bits int, wan, gw netip.Addr, lan netip.Prefix, up *uplink) (*Host, error) {
	r := &Host{name: ns, addrs: []netip.Addr{wan, lan.Addr()}}
	if err := l.addNamespaceLocked(ctx, ns); err != nil {
		return nil, err
	}
	sysctls := []sysctl{{key: "net/ipv4/ip_forward", value: "1"}}
	if l.cfg.UDPTimeout > 0 {
		secs := strconv.Itoa(max(1, int(math.Ceil(l.cfg.UDPTimeout.Seconds()))))
		sysctls = append(sysctls,
			sysctl{key: "net/netfilter/nf_conntrack_udp_timeout", value: secs},
			sysctl{key: "net/netfilter/nf_conntrack_udp_timeout_stream", value: secs})
	}
	if err := writeSysctls(ns, sysctls); err != nil {
		return nil, fmt.Errorf("router %s: %w", ns, err)
	}
	if err := ipn(ctx, ns, "link", "add", lanDev, "type", "bridge"); err != nil {
		return nil, err
	}
	if err := ipn(ctx, ns, "addr", "add", lan.String(), "dev", lanDev); err != nil {
		return nil, err
	}
	if err := ipn(ctx, ns, "link", "set", lanDev, "up"); err != nil {
		return nil, err
	}
	if err := l.attachLocked(ctx, ns, wanDev, wanNS, wanBr, bits, []netip.Addr{wan}, gw, up); err != nil {
		return nil, err
	}
	rules, err := routerRules(kind, wan.String())
	if err != nil {
		return nil, err
	}
	if err := nft(ctx, ns, rules); err != nil {
		return nil, fmt.Errorf("router %s: nft: %w", ns, err)
	}
	if kind.busy() {
		if err := l.addBusyLocked(ctx, ns+"-busy", ns, lan); err != nil {
			return nil, err
		}
	}
	if kind == ProxyOnly {
		if err := l.startProxyLocked(ctx, ns, lan); err != nil {
			return nil, fmt.Errorf("router %s: %w", ns, err)
		}
	}
	return r, nil
}

// addBusyLocked makes a background host on the LAN bridge of router
// namespace routerNS that opens a new UDP flow to the internet every 75 ms,
// each to a new port of the hub (which drops them), so that the NAT keeps
// handing out mappings as it would for other customers.
func (l *Lab) addBusyLocked(ctx context.Context, ns, routerNS string, lan netip.Prefix) error {
	a := lan.Addr().As4()
	a[3] = busyOctet
	if err := l.addNamespaceLocked(ctx, ns); err != nil {
		return err
	}
	if err := l.attachLocked(ctx, ns, "eth0", routerNS, lanDev, lan.Bits(), []netip.Addr{netip.AddrFrom4(a)}, lan.Addr(), nil); err != nil {
		return err
	}
	parent := os.Getpid()
	if l.cfg.Detach {
		parent = 0
	}
	cmd := exec.Command("ip", "netns", "exec", ns, "bash", "-c", busyScript(parent, hubAddr))
	cmd.SysProcAttr = ownSession()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("busy host %s: %w", ns, err)
	}
	l.ownLocked(cmd)
	return nil
}

// ownLocked takes charge of a started background helper: Close (or the
// undo of a failed operation) kills it and waits for it. A detached lab's
// helpers are released instead, to outlive this process; Close and
// Cleanup still kill them with the rest of their namespace's processes.
func (l *Lab) ownLocked(cmd *exec.Cmd) {
	if l.cfg.Detach {
		_ = cmd.Process.Release()
		return
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait() // killed by Close, or gone with its namespace
		close(done)
	}()
	l.procs = append(l.procs, cmd)
	l.procDone = append(l.procDone, done)
}

// busyScript is the busy host's loop. Each `echo >/dev/udp/...` is a new
// socket to a new destination port: a new flow, so a new mapping at a
// symmetric NAT. With parent > 0 the loop ends once that process is gone,
// so a test binary that dies without Close leaves no traffic behind.
func busyScript(parent int, dst netip.Addr) string {
	return fmt.Sprintf(`parent=%d
i=0
while :; do
	if [ "$parent" -gt 0 ] && ! kill -0 "$parent" 2>/dev/null; then exit 0; fi
	echo busy 2>/dev/null >/dev/udp/%s/$((40000 + i))
	i=$(( (i + 1) %% 20000 ))
	sleep 0.075
done
`, parent, dst)
}

// labMark records how much a lab had made, for undoLocked.
type labMark struct{ namespaces, procs, uplinks int }

func (l *Lab) markLocked() labMark {
	return labMark{namespaces: len(l.namespaces), procs: len(l.procs), uplinks: len(l.uplinks)}
}

// undoLocked removes what was made since m: a failed operation leaves the
// lab as it was.
func (l *Lab) undoLocked(m labMark) error {
	for i := m.procs; i < len(l.procs); i++ {
		_ = l.procs[i].Process.Kill()
		<-l.procDone[i]
	}
	l.procs, l.procDone = l.procs[:m.procs], l.procDone[:m.procs]
	for _, u := range l.uplinks[m.uplinks:] {
		u.close()
	}
	l.uplinks = l.uplinks[:m.uplinks]
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	// Newest first, so hosts before routers before the internet: removing
	// a namespace destroys its veth ends, and doing the hub last keeps the
	// rest of the lab intact until its own turn.
	for i := len(l.namespaces) - 1; i >= m.namespaces; i-- {
		errs = append(errs, deleteNamespace(ctx, l.namespaces[i]))
		delete(l.ports, l.namespaces[i])
	}
	l.namespaces = l.namespaces[:m.namespaces]
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("undo: %w", err)
	}
	return nil
}
