package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// addrUse says what an address is for, which decides what it may contain.
type addrUse bool

const (
	dialAddr   addrUse = false // needs a host and a port from 1 to 65535
	listenAddr addrUse = true  // may leave the host empty (all interfaces) or use port 0 (any free port)
)

// checkAddr validates host:port syntax without resolving anything. Hosts
// may be names, IPv4 addresses or bracketed IPv6 addresses; the port must
// be numeric, since a service name would need a lookup.
func checkAddr(addr string, use addrUse) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port: %w", addr, addrSyntaxError(err))
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 && use == dialAddr {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", addr, port)
	}
	switch {
	case host == "" && use == listenAddr:
		return nil
	case host == "":
		return fmt.Errorf("%q: missing host", addr)
	case strings.HasPrefix(addr, "["):
		if ip, err := netip.ParseAddr(host); err != nil || !ip.Is6() {
			return fmt.Errorf("%q: brackets are only for IPv6 addresses", addr)
		}
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil || ValidHostname(host) {
		return nil
	}
	return fmt.Errorf("%q: %q is not a host name or IP address", addr, host)
}

// addrSyntaxError trims net.SplitHostPort's error down to its reason and
// adds the usual fix for the usual mistake.
func addrSyntaxError(err error) error {
	var ae *net.AddrError
	if !errors.As(err, &ae) {
		return err
	}
	if strings.Contains(ae.Err, "too many colons") {
		return errors.New("IPv6 addresses need brackets, as in [fd00::1]:22")
	}
	return errors.New(ae.Err)
}

// sameAddr normalizes a valid host:port for spotting duplicates, so that
// "[::1]:80" and "[0:0::1]:80" compare equal. Names compare as written.
func sameAddr(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap.String()
	}
	return strings.ToLower(addr)
}

// ValidHostname checks DNS name syntax loosely: at most 253 bytes (a
// trailing dot aside) of dot-separated labels of letters, digits, '-' and
// '_' (which real networks use despite RFC 952), the last of which is not
// a number. The exit checks names peers send it with it too.
//
// A name that ends in a number (127.1, 0x7f.1, 2130706433, 0177.0.0.1,
// 10.0.0.1.) is an IPv4 address in disguise: glibc's getaddrinfo, which
// the exit uses when built with cgo, reads it as one (inet_aton), while
// Go's own resolver asks DNS for it. What it means must not depend on how
// the exit was built, nor may a name pattern match an IPv4 address spelled
// as text, so it is no name, as in the WHATWG URL standard (and no TLD is
// numeric, RFC 3696 section 2).
func ValidHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 || endsInNumber(s) {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// endsInNumber reports whether the last label of s is a number as
// inet_aton reads one: decimal digits, or "0x" and hex digits (octal is
// decimal digits too).
func endsInNumber(s string) bool {
	last := s[strings.LastIndexByte(s, '.')+1:]
	if len(last) >= 2 && (last[:2] == "0x" || last[:2] == "0X") {
		last = last[2:]
		return strings.Trim(last, "0123456789abcdefABCDEF") == ""
	}
	return last != "" && strings.Trim(last, "0123456789") == ""
}

// checkPublicKey checks the syntax of an Ed25519 public key as warren
// prints them: 32 bytes in unpadded base64url. Package identity owns
// parsing keys; this only catches typos early, with a hint for the common
// ones.
func checkPublicKey(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil && len(b) == 32 {
		return b, nil
	}
	var hint string
	switch {
	case strings.ContainsAny(s, "+/"):
		hint = `; use "-" and "_" instead of "+" and "/"`
	case strings.HasSuffix(s, "="):
		hint = `; leave out the "=" padding`
	case len(s) != 43:
		hint = fmt.Sprintf("; got %d", len(s))
	}
	return nil, fmt.Errorf("not a valid Ed25519 public key (want 43 base64url characters%s)", hint)
}
