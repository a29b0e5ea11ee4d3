package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// TargetPattern is a parsed entry of a peer's targets list: which host:port
// destinations that peer may ask this daemon to dial. The zero value
// matches nothing.
type TargetPattern struct {
	host   hostKind
	name   string       // lower case, no trailing dot; for "*.suffix" the suffix
	prefix netip.Prefix // for IP and CIDR patterns; single IPs are /32 or /128
	lo, hi uint16       // port range, inclusive
}

type hostKind uint8

const (
	hostNone   hostKind = iota // zero value: matches nothing
	hostAny                    // *
	hostName                   // example.com
	hostSuffix                 // *.example.com
	hostPrefix                 // 10.0.0.1, 10.0.0.0/8, [fd00::/8]
)

// ParseTargetPattern parses "host:port". Host is "*" (any), "*.suffix" (any
// name below suffix, at any depth, but not suffix itself), a host name, an
// IP address or a CIDR; IPv6 addresses and CIDRs go in brackets, as in
// "[fd00::/8]:22". Port is a number, a range "lo-hi" or "*". Names and
// suffixes may not end in a number (ValidHostname), so that no name
// pattern matches an IPv4 address spelled as text ("*.0.1" would match
// "127.0.0.1").
func ParseTargetPattern(s string) (TargetPattern, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return TargetPattern{}, fmt.Errorf("invalid target pattern %q: %w", s, addrSyntaxError(err))
	}
	var t TargetPattern
	if t.lo, t.hi, err = parsePortPattern(port); err != nil {
		return TargetPattern{}, fmt.Errorf("invalid target pattern %q: %w", s, err)
	}
	if err = t.parseHost(host, strings.HasPrefix(s, "[")); err != nil {
		return TargetPattern{}, fmt.Errorf("invalid target pattern %q: %w", s, err)
	}
	return t, nil
}

func (t *TargetPattern) parseHost(host string, bracketed bool) error {
	switch {
	case host == "":
		return errors.New(`missing host (use "*" for any host)`)
	case bracketed:
		return t.parseIPv6(host)
	case host == "*":
		t.host = hostAny
	case strings.HasPrefix(host, "*."):
		suffix := host[2:]
		if strings.Contains(suffix, "*") || !ValidHostname(suffix) {
			return fmt.Errorf("%q is not \"*.\" followed by a domain name", host)
		}
		t.host, t.name = hostSuffix, normalizeName(suffix)
	case strings.Contains(host, "*"):
		return errors.New(`"*" may only be the whole host or lead it as in "*.example.com"`)
	case strings.Contains(host, "/"):
		p, err := netip.ParsePrefix(host)
		if err != nil {
			return fmt.Errorf("%q is not a valid CIDR", host)
		}
		t.host, t.prefix = hostPrefix, unmapPrefix(p)
	default:
		if ip, err := netip.ParseAddr(host); err == nil {
			return t.setIP(ip)
		}
		if !ValidHostname(host) {
			return fmt.Errorf("%q is not a host name, IP address or CIDR", host)
		}
		t.host, t.name = hostName, normalizeName(host)
	}
	return nil
}

// parseIPv6 handles a bracketed host, which can only be an IPv6 address
// or CIDR.
func (t *TargetPattern) parseIPv6(host string) error {
	if strings.Contains(host, "/") {
		p, err := netip.ParsePrefix(host)
		if err != nil || !p.Addr().Is6() {
			return fmt.Errorf("[%s] is not a valid IPv6 CIDR", host)
		}
		t.host, t.prefix = hostPrefix, unmapPrefix(p)
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Is6() {
		return fmt.Errorf("[%s] is not an IPv6 address (brackets are only for IPv6)", host)
	}
	return t.setIP(ip)
}

func (t *TargetPattern) setIP(ip netip.Addr) error {
	if ip.Zone() != "" {
		return fmt.Errorf("%q: zoned IPv6 addresses are not supported in patterns", ip)
	}
	ip = ip.Unmap()
	t.host, t.prefix = hostPrefix, netip.PrefixFrom(ip, ip.BitLen())
	return nil
}

// unmapPrefix turns ::ffff:10.0.0.0/104 into 10.0.0.0/8 so that it matches
// the unmapped addresses Match compares against, and clears host bits so
// that 10.1.2.3/8 means 10.0.0.0/8.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

func parsePortPattern(s string) (lo, hi uint16, err error) {
	if s == "*" {
		return 0, 65535, nil
	}
	if a, b, isRange := strings.Cut(s, "-"); isRange {
		if lo, err = parsePort(a); err != nil {
			return 0, 0, err
		}
		if hi, err = parsePort(b); err != nil {
			return 0, 0, err
		}
		if lo > hi {
			return 0, 0, fmt.Errorf("port range %q is backwards", s)
		}
		return lo, hi, nil
	}
	lo, err = parsePort(s)
	return lo, lo, err
}

// parsePort parses a port number from 1 to 65535.
func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// Match reports whether the pattern allows dialling host:port. ip is host's
// address when host is an IP literal or the caller has already resolved it,
// and the zero netip.Addr otherwise. Name patterns compare against host,
// ignoring case and a trailing dot; IP and CIDR patterns compare against ip
// only, after unmapping IPv4-mapped IPv6 addresses. A name pattern thus
// never matches an IP literal, and a CIDR pattern never matches an
// unresolved name.
func (t TargetPattern) Match(host string, ip netip.Addr, port uint16) bool {
	if port < t.lo || port > t.hi {
		return false
	}
	switch t.host {
	case hostAny:
		return true
	case hostName:
		return strings.EqualFold(strings.TrimSuffix(host, "."), t.name)
	case hostSuffix:
		h := strings.TrimSuffix(host, ".")
		n := len(h) - len(t.name)
		return n > 1 && h[n-1] == '.' && strings.EqualFold(h[n:], t.name)
	case hostPrefix:
		return ip.IsValid() && t.prefix.Contains(ip.Unmap().WithZone(""))
	}
	return false
}

// String returns the pattern in canonical form, as accepted by
// ParseTargetPattern.
func (t TargetPattern) String() string {
	var host string
	switch t.host {
	case hostNone:
		return ""
	case hostAny:
		host = "*"
	case hostName:
		host = t.name
	case hostSuffix:
		host = "*." + t.name
	case hostPrefix:
		host = t.prefix.String()
		if t.prefix.IsSingleIP() {
			host = t.prefix.Addr().String()
		}
		if t.prefix.Addr().Is6() {
			host = "[" + host + "]"
		}
	}
	port := strconv.Itoa(int(t.lo))
	switch {
	case t.lo == 0 && t.hi == 65535:
		port = "*"
	case t.lo != t.hi:
		port += "-" + strconv.Itoa(int(t.hi))
	}
	return host + ":" + port
}

func normalizeName(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}
