package natlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Config describes a lab. The zero value is a lab with a random prefix, no
// loss and the kernel's conntrack timeouts.
type Config struct {
	// Prefix starts the name of every namespace of the lab: 1 to 12
	// lower-case letters and digits, starting with a letter, not already in
	// use. Default: "wl" plus 4 random hex digits (DefaultPrefix), which
	// `natlab down` without argument finds.
	Prefix string

	// LossPercent is the share (0-100) of IPv4 packets dropped at random
	// each time one crosses the internet segment, in either direction, so a
	// request and its reply both arrive with probability (1-p/100)². ARP is
	// never dropped. Default 0. Lab.SetLoss changes it later.
	LossPercent int

	// UDPTimeout, if > 0, is the conntrack UDP timeout (unreplied and
	// stream alike, rounded up to whole seconds) in every router: a NAT
	// that forgets idle UDP mappings quickly. Default: the kernel's (30 s
	// unreplied, 120 s once a flow has seen replies for a while).
	UDPTimeout time.Duration

	// Detach makes a lab meant to outlive the process that built it
	// (`natlab up`): its background helpers (the traffic of symseq-busy
	// sites, uplink emulators) keep running after this process exits, and
	// Reap does not count it as orphaned. Otherwise the helpers stop by
	// themselves within 100 ms of this process exiting. Close and Cleanup
	// stop them either way. Default false.
	Detach bool

	// Profile is what every site's uplink does (delay, loss, rate, MTU;
	// see Profile and LookupProfile) unless AddSite is given WithProfile.
	// Default: the zero Profile, which like "lan" inserts no emulator.
	// It adds to LossPercent, which acts on the internet segment.
	Profile Profile

	// IPv6 makes the lab dual-stack: the internet segment gets
	// 2001:db8::/64 (the hub 2001:db8::1, the server ::2 and ::3, router
	// WANs and Open hosts 2001:db8::1:N beside their 203.0.113.N), and each
	// site with one NAT a routed 2001:db8:i::/64 behind its router, which
	// translates nothing but is a stateful firewall, as home routers ship
	// (RFC 6092): inbound new connections are dropped. Hosts get
	// 2001:db8:i::N beside 10.i.0.N (Host.Addr6). A double NAT's hosts
	// stay IPv4-only. Default false: IPv6 off on every device but
	// loopback.
	IPv6 bool
}

// DefaultPrefix is how every default Prefix starts; Cleanup(DefaultPrefix)
// removes every lab that used a default prefix.
const DefaultPrefix = "wl"

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)

// Verify reports the first problem with c, or nil.
func (c Config) Verify() error {
	if c.Prefix != "" && !prefixRE.MatchString(c.Prefix) {
		return fmt.Errorf("natlab: config: prefix %q: want 1-12 lower-case letters and digits, starting with a letter", c.Prefix)
	}
	if c.LossPercent < 0 || c.LossPercent > 100 {
		return fmt.Errorf("natlab: config: loss %d%%: want 0-100", c.LossPercent)
	}
	if c.UDPTimeout < 0 {
		return fmt.Errorf("natlab: config: negative UDP timeout %v", c.UDPTimeout)
	}
	return c.Profile.Verify()
}

// Internet addressing; see the package documentation.
var (
	internet    = netip.MustParsePrefix("203.0.113.0/24")
	hubAddr     = netip.MustParseAddr("203.0.113.1")
	serverAddrs = []netip.Addr{netip.MustParseAddr("203.0.113.2"), netip.MustParseAddr("203.0.113.3")}
)

const (
	firstPublic = 10  // last octet of the first router WAN / Open host address
	lastPublic  = 250 // and of the last
	maxSites    = 250 // site i uses 10.i.0.0/24 and 100.64.i.0/24
	busyOctet   = 200 // last octet of a busy host's address
	maxHosts    = busyOctet - 2
	// Site.Renumber hands out the last octets from renumberFirst to 254.
	renumberFirst = busyOctet + 1

	cleanupTimeout = 60 * time.Second
)

// Lab is a running lab: the internet segment, the server and the sites
// added so far. Its methods are safe for concurrent use; adding sites and
// hosts is serialised. Close it to remove everything.
type Lab struct {
	cfg    Config
	prefix string
	inet   string // namespace holding the internet bridge
	server *Host

	// done is cancelled by Close so that operations in flight stop early.
	done   context.Context
	cancel context.CancelFunc

	// mu guards all following fields, and is held for the whole of an
	// operation that builds something, so that a failed one can undo
	// exactly what it made.
	mu         sync.Mutex
	closed     bool
	namespaces []string          // every namespace made, in order
	names      map[string]bool   // site and host names in use
	sites      []*Site           // in order of creation
	nextPublic int               // last octet of the next public address
	ports      map[string]int    // per namespace: bridge ports made so far
	procs      []*exec.Cmd       // background helpers to kill on Close
	procDone   []<-chan struct{} // closed when the matching proc has been reaped
	uplinks    []*uplink         // emulators started, whose pipes to close
}

// New builds the internet segment and the server host of a new lab. If it
// fails, or ctx ends first, it removes whatever it made.
func New(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.Verify(); err != nil {
		return nil, err
	}
	if err := Available(); err != nil {
		return nil, err
	}
	existing, err := listNamespaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("natlab: new lab: %w", err)
	}
	prefix := cfg.Prefix
	if prefix == "" {
		if prefix, err = randomPrefix(existing); err != nil {
			return nil, fmt.Errorf("natlab: new lab: %w", err)
		}
	} else if inUse(existing, prefix) {
		return nil, fmt.Errorf("natlab: new lab: prefix %q already in use (natlab down %s removes it)", prefix, prefix)
	}
	done, cancel := context.WithCancel(context.Background())
	l := &Lab{
		cfg:        cfg,
		prefix:     prefix,
		inet:       prefix + "-inet",
		done:       done,
		cancel:     cancel,
		names:      map[string]bool{"inet": true, "srv": true},
		nextPublic: firstPublic,
		ports:      map[string]int{},
	}
	if err := l.build(ctx); err != nil {
		cerr := l.Close()
		return nil, errors.Join(fmt.Errorf("natlab: new lab %s: %w", prefix, err), cerr)
	}
	return l, nil
}

// build makes the internet segment and the server.
func (l *Lab) build(ctx context.Context) error {
	ctx, stop := l.op(ctx)
	defer stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.addNamespaceLocked(ctx, l.inet); err != nil {
		return err
	}
	if err := ipn(ctx, l.inet, "link", "add", hubDev, "type", "bridge"); err != nil {
		return err
	}
	if err := ipn(ctx, l.inet, "addr", "add", netip.PrefixFrom(hubAddr, internet.Bits()).String(), "dev", hubDev); err != nil {
		return err
	}
	if err := ipn(ctx, l.inet, "link", "set", hubDev, "up"); err != nil {
		return err
	}
	// The hub's alias names the process that must Close the lab, so that
	// Reap can tell a lab whose owner crashed from one in use.
	owner := os.Getpid()
	if l.cfg.Detach {
		owner = 0
	}
	if err := ipn(ctx, l.inet, "link", "set", hubDev, "alias", ownerAlias(owner)); err != nil {
		return err
	}
	if err := nft(ctx, l.inet, inetRules+lossRules(l.cfg.LossPercent)); err != nil {
		return err
	}
	srv := &Host{name: l.prefix + "-srv", addrs: append([]netip.Addr(nil), serverAddrs...)}
	if err := l.addNamespaceLocked(ctx, srv.name); err != nil {
		return err
	}
	if err := l.attachLocked(ctx, srv.name, "eth0", l.inet, hubDev, internet.Bits(), srv.addrs, hubAddr, nil); err != nil {
		return err
	}
	if l.cfg.IPv6 {
		if err := l.build6Locked(ctx, srv); err != nil {
			return err
		}
	}
	l.server = srv
	return nil
}

// randomPrefix returns DefaultPrefix plus 4 random hex digits that no
// existing namespace uses.
func randomPrefix(existing []string) (string, error) {
	for range 100 {
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		p := DefaultPrefix + hex.EncodeToString(b[:])
		if !inUse(existing, p) {
			return p, nil
		}
	}
	return "", errors.New("no free random prefix")
}

func inUse(existing []string, prefix string) bool {
	for _, ns := range existing {
		if strings.HasPrefix(ns, prefix+"-") {
			return true
		}
	}
	return false
}

// Prefix returns the prefix of every namespace name of the lab.
func (l *Lab) Prefix() string { return l.prefix }

// Server returns the host on the internet segment meant for the rendezvous
// server. It has two addresses (203.0.113.2 and .3), so a client can tell
// an endpoint-independent mapping from a per-destination one.
func (l *Lab) Server() *Host { return l.server }

// Internet returns the internet segment's prefix (203.0.113.0/24).
func (l *Lab) Internet() netip.Prefix { return internet }

// Sites returns the sites added so far, in order.
func (l *Lab) Sites() []*Site {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Site(nil), l.sites...)
}

// Namespaces returns the names of the lab's namespaces, in order of
// creation.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.namespaces...)
}

// SetLoss changes the random loss on the internet segment (see
// Config.LossPercent).
func (l *Lab) SetLoss(ctx context.Context, percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("natlab: set loss %d%%: want 0-100", percent)
	}
	ctx, stop := l.op(ctx)
	defer stop()
	if err := nft(ctx, l.inet, lossRules(percent)); err != nil {
		return fmt.Errorf("natlab: set loss: %w", err)
	}
	return nil
}

// Cut drops every packet between public addresses a and b on the internet
// segment, both ways, until Mend: a path that dies while both ends stay
// up and reach everyone else.
func (l *Lab) Cut(ctx context.Context, a, b netip.Addr) error {
	ctx, stop := l.op(ctx)
	defer stop()
	rule := "add rule bridge natlab cut ip saddr %s ip daddr %s drop\n"
	if err := nft(ctx, l.inet, fmt.Sprintf(rule+rule, a, b, b, a)); err != nil {
		return fmt.Errorf("natlab: cut %s from %s: %w", a, b, err)
	}
	return nil
}

// Mend undoes every Cut.
func (l *Lab) Mend(ctx context.Context) error {
	ctx, stop := l.op(ctx)
	defer stop()
	if err := nft(ctx, l.inet, "flush chain bridge natlab cut\n"); err != nil {
		return fmt.Errorf("natlab: mend: %w", err)
	}
	return nil
}

// Close kills the background helpers the lab started and every process
// still running in its namespaces, then deletes all of the lab's
// namespaces, including any with its prefix that a failed operation left.
// Operations still in flight are cancelled. Close is idempotent; only the
// first call can return an error.
func (l *Lab) Close() error {
	l.cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if err := errors.Join(l.undoLocked(labMark{}), Cleanup(l.prefix+"-")); err != nil {
		return fmt.Errorf("natlab: close %s: %w", l.prefix, err)
	}
	return nil
}

// op returns a context for an operation: it ends with ctx or with Close.
func (l *Lab) op(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(l.done, cancel)
	return ctx, func() { stop(); cancel() }
}

// addNamespaceLocked makes namespace ns with loopback up, IPv6 off on every
// device made later and bridge netfilter off.
//
// The lab's NATs are IPv4 only: IPv6 link-local addresses on its devices
// would be a path around them (hosts of one LAN, routers on the internet
// segment), so only loopback keeps IPv6, for programs that use ::1. Bridge
// netfilter would pass bridged frames through the routers' IPv4 forward
// chain, which would drop traffic between hosts of one LAN.
func (l *Lab) addNamespaceLocked(ctx context.Context, ns string) error {
	// A cancelled `ip netns add` can be killed after the kernel made the
	// namespace, so a free name is claimed before the command runs and
	// undo removes whatever exists under it. A taken name is never
	// claimed: undo must not delete what this lab did not make.
	if !namespaceGone(ns) {
		return fmt.Errorf("namespace %s: already exists", ns)
	}
	l.namespaces = append(l.namespaces, ns)
	if _, err := run(ctx, "", "ip", "netns", "add", ns); err != nil {
		return err
	}
	if err := ipn(ctx, ns, "link", "set", "lo", "up"); err != nil {
		return err
	}
	err := writeSysctls(ns, []sysctl{
		{key: "net/ipv6/conf/default/disable_ipv6", value: "1", optional: true},
		{key: "net/bridge/bridge-nf-call-iptables", value: "0", optional: true},
		{key: "net/bridge/bridge-nf-call-ip6tables", value: "0", optional: true},
		{key: "net/bridge/bridge-nf-call-arptables", value: "0", optional: true},
	})
	if err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	return nil
}

// attachLocked connects namespace ns to the bridge brDev in namespace brNS
// with a veth pair (dev in ns, pN in brNS), gives dev the addresses addrs
// (prefix length bits) and routes everything else via gw. With up, the
// pair ends in the uplink's namespace, whose emulator it starts, and
// another pair joins that namespace to the bridge.
func (l *Lab) attachLocked(ctx context.Context, ns, dev, brNS, brDev string, bits int, addrs []netip.Addr, gw netip.Addr, up *uplink) error {
	var err error
	if up != nil {
		err = l.spliceLocked(ctx, ns, dev, brNS, brDev, up)
	} else {
		err = l.vethLocked(ctx, ns, dev, brNS, brDev)
	}
	if err != nil {
		return err
	}
	for _, a := range addrs {
		if err := ipn(ctx, ns, "addr", "add", netip.PrefixFrom(a, bits).String(), "dev", dev); err != nil {
			return err
		}
	}
	if err := ipn(ctx, ns, "link", "set", dev, "up"); err != nil {
		return err
	}
	if err := ipn(ctx, ns, "route", "add", "default", "via", gw.String(), "dev", dev); err != nil {
		return err
	}
	if up != nil {
		return l.startUplinkLocked(ctx, up)
	}
	return nil
}

// vethLocked plugs device dev of namespace ns straight into bridge brDev
// of namespace brNS.
func (l *Lab) vethLocked(ctx context.Context, ns, dev, brNS, brDev string) error {
	port := l.bridgePortLocked(brNS)
	// Both ends are created directly in their namespaces, so nothing,
	// not even a temporary name, ever appears in the root namespace.
	if _, err := run(ctx, "", "ip", "link", "add", dev, "netns", ns, "type", "veth", "peer", "name", port, "netns", brNS); err != nil {
		return err
	}
	return ipn(ctx, brNS, "link", "set", port, "master", brDev, "up")
}

// bridgePortLocked names the next bridge port of namespace brNS.
func (l *Lab) bridgePortLocked(brNS string) string {
	l.ports[brNS]++
	return fmt.Sprintf("p%d", l.ports[brNS])
}

// publicAddrLocked allocates the next address on the internet segment.
func (l *Lab) publicAddrLocked() (netip.Addr, error) {
	if l.nextPublic > lastPublic {
		return netip.Addr{}, errors.New("internet segment is full")
	}
	a := netip.AddrFrom4([4]byte{203, 0, 113, byte(l.nextPublic)})
	l.nextPublic++
	return a, nil
}
