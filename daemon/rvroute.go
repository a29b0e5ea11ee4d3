package daemon

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strings"

	"github.com/warren-p2p/warren/config"
	"github.com/warren-p2p/warren/punch"
	"github.com/warren-p2p/warren/rendezvous"
)

// newRendezvousDialer makes the dialer of every connection to the
// rendezvous server: the configured address, its fallback
// ([rendezvous] fallback_address, else the same host on 443), and the
// HTTP proxy of [rendezvous] proxy or, without one, of the environment.
func newRendezvousDialer(cfg *config.Config) (*rendezvous.Dialer, error) {
	proxy, err := rendezvousProxy(cfg.Rendezvous, os.Getenv)
	if err != nil {
		return nil, err
	}
	return &rendezvous.Dialer{Address: cfg.Rendezvous.Address, Fallback: cfg.Rendezvous.FallbackAddress, Proxy: proxy}, nil
}

// rendezvousProxy is the proxy to reach the server through: the config's,
// else the environment's as curl reads it for an https:// URL
// (HTTPS_PROXY or https_proxy, unless NO_PROXY or no_proxy names the
// server's host), or nil for none. A server on loopback is never
// proxied.
func rendezvousProxy(rc config.Rendezvous, getenv func(string) string) (*url.URL, error) {
	if rc.Proxy != "" {
		u, err := rendezvous.ParseProxy(rc.Proxy)
		if err != nil {
			return nil, fmt.Errorf("rendezvous.proxy: %w", err)
		}
		return u, nil
	}
	env := cmp.Or(getenv("HTTPS_PROXY"), getenv("https_proxy"))
	host, _, err := net.SplitHostPort(rc.Address)
	if env == "" || err != nil || noProxy(host, cmp.Or(getenv("NO_PROXY"), getenv("no_proxy"))) {
		return nil, nil
	}
	u, err := rendezvous.ParseProxy(env)
	if err != nil {
		return nil, fmt.Errorf("HTTPS_PROXY from the environment: %w", err)
	}
	return u, nil
}

// noProxy reports whether NO_PROXY's list (comma-separated: "*", host
// names that also cover their subdomains, with or without a leading dot,
// IP addresses) exempts host, or whether host is loopback.
func noProxy(host, list string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return true
	}
	for _, e := range strings.Split(list, ",") {
		e = strings.ToLower(strings.TrimPrefix(strings.TrimSpace(e), "."))
		if h, _, err := net.SplitHostPort(e); err == nil {
			e = h
		}
		switch {
		case e == "":
		case e == "*", host == e, strings.HasSuffix(host, "."+e):
			return true
		}
	}
	return false
}

// dialIPv4First connects from the shared punch port to the rendezvous
// server at addr, over IPv4 while any IPv4 route leads there: the NAT a
// daemon must classify, and whose mapping peers punch to, is on IPv4, and
// its IPv6 address is observed besides (rendezvous/observe6.go). A host
// name with AAAA records would otherwise be dialled over IPv6 first (RFC
// 6724), and a dual-stack daemon behind an IPv4 NAT would look to the
// server like one with no NAT. IPv6 is the way only when IPv4 fails at
// once (no A record, no route: an IPv6-only network) or addr is an IPv6
// literal.
func dialIPv4First(ctx context.Context, port int, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		return punch.Dialer(port).DialContext(ctx, "tcp6", addr)
	}
	c, err4 := punch.Dialer(port).DialContext(ctx, "tcp4", addr)
	if err4 == nil || ctx.Err() != nil {
		return c, err4
	}
	c, err6 := punch.Dialer(port).DialContext(ctx, "tcp6", addr)
	if err6 != nil {
		return nil, fmt.Errorf("%w; over IPv6: %w", err4, err6)
	}
	return c, nil
}
