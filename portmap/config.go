package portmap

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Protocol names the way a mapping was obtained.
type Protocol string

// The protocols Map tries, in the order Config.Protocols defaults to.
const (
	UPnP   Protocol = "upnp"
	NATPMP Protocol = "nat-pmp"
	PCP    Protocol = "pcp"
)

// Transport is the transport protocol of the port to map.
type Transport int

// The transports a mapping can be for.
const (
	UDP Transport = iota + 1
	TCP
)

func (t Transport) String() string {
	switch t {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	}
	return fmt.Sprintf("transport(%d)", int(t))
}

// Defaults of Config's zero fields.
const (
	DefaultLifetime       = 2 * time.Hour // RFC 6886 section 3.3 recommends 7200 s
	DefaultProbeTimeout   = 1 * time.Second
	DefaultRequestTimeout = 3 * time.Second
	DefaultCloseTimeout   = 2 * time.Second
)

// Config configures a Client. The zero value is the default: enabled, all
// three protocols, a two-hour lease, the gateway found from the routing
// table. Zero durations mean their default; negative ones are an error.
type Config struct {
	// Disabled turns port mapping off: Map and Probe return ErrDisabled.
	// The zero value (enabled) matches Tailscale's and iroh's default.
	Disabled bool
	// Protocols are the protocols tried; nil means UPnP, NAT-PMP and PCP.
	Protocols []Protocol
	// Lifetime is the lease asked for; it is renewed at half of what the
	// router grants. Default DefaultLifetime.
	Lifetime time.Duration
	// ProbeTimeout bounds the parallel probe of the protocols: those that
	// have not answered by then are not used. Default DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// RequestTimeout bounds one mapping request, retransmissions included.
	// Default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// CloseTimeout bounds the deletion of the mappings on Close, so that a
	// router gone silent cannot hold up shutdown. Default DefaultCloseTimeout.
	CloseTimeout time.Duration
	// Gateway is the router to ask; the zero Addr means the default
	// route's gateway (see Gateway).
	Gateway netip.Addr
}

// Verify reports the first problem with c, or nil.
func (c Config) Verify() error {
	for name, d := range map[string]time.Duration{
		"lifetime": c.Lifetime, "probe timeout": c.ProbeTimeout,
		"request timeout": c.RequestTimeout, "close timeout": c.CloseTimeout,
	} {
		if d < 0 {
			return fmt.Errorf("portmap: %s %v is negative", name, d)
		}
	}
	if c.Lifetime != 0 && (c.Lifetime < 2*time.Second || c.Lifetime > maxLifetime) {
		return fmt.Errorf("portmap: lifetime %v: want 2s to %v", c.Lifetime, maxLifetime)
	}
	for _, p := range c.Protocols {
		if !slices.Contains(allProtocols, p) {
			return fmt.Errorf("portmap: unknown protocol %q (want %s, %s or %s)", p, UPnP, NATPMP, PCP)
		}
	}
	if c.Gateway.IsValid() && !c.Gateway.Is4() {
		return fmt.Errorf("portmap: gateway %v: only IPv4 gateways are supported", c.Gateway)
	}
	return nil
}

// maxLifetime keeps lifetimes within NAT-PMP's and PCP's 32-bit seconds
// and UPnP's ui4, with room to spare.
const maxLifetime = 7 * 24 * time.Hour

var allProtocols = []Protocol{UPnP, NATPMP, PCP}

// withDefaults returns c with its zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Protocols == nil {
		c.Protocols = allProtocols
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Lifetime, DefaultLifetime)
	def(&c.ProbeTimeout, DefaultProbeTimeout)
	def(&c.RequestTimeout, DefaultRequestTimeout)
	def(&c.CloseTimeout, DefaultCloseTimeout)
	return c
}

// Errors callers test for.
var (
	// ErrDisabled is returned by Map and Probe when Config.Disabled is set.
	ErrDisabled = errors.New("portmap: port mapping is disabled")
	// ErrNoRouter means no protocol answered within the probe timeout.
	ErrNoRouter = errors.New("portmap: the router offers no port mapping")
	// ErrNotPublic means the router mapped the port on an address that is
	// not public (private or carrier-grade NAT space): it sits behind
	// another NAT, and the mapping, deleted again, would not help.
	ErrNotPublic = errors.New("portmap: the router's external address is not public")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("portmap: client closed")
)
