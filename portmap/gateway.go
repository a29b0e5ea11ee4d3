package portmap

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ErrNoGateway means no default gateway was found.
var ErrNoGateway = errors.New("portmap: no default IPv4 gateway")

// Gateway returns the default IPv4 route's gateway: from /proc/net/route
// on Linux; elsewhere, or when that has none, the .1 of the first private
// IPv4 network of an interface that is up, which is where home routers
// sit.
func Gateway() (netip.Addr, error) {
	if gw, err := gatewayFromSystem(); err == nil {
		return gw, nil
	}
	return guessGateway()
}

// parseProcRoute returns the gateway of the default route in the format
// of Linux's /proc/net/route: a header line, then per route the interface,
// destination, gateway (hex, in host byte order, little-endian on every
// platform Linux runs warren on), flags, ... and mask.
func parseProcRoute(r io.Reader) (netip.Addr, error) {
	const rtfUp, rtfGateway = 0x1, 0x2
	s := bufio.NewScanner(r)
	s.Scan() // header
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err := strconv.ParseUint(f[3], 16, 32)
		if err != nil || flags&(rtfUp|rtfGateway) != rtfUp|rtfGateway {
			continue
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 4 {
			continue
		}
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], binary.LittleEndian.Uint32(b))
		if gw := netip.AddrFrom4(a); !gw.IsUnspecified() {
			return gw, nil
		}
	}
	if err := s.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: read routes: %w", err)
	}
	return netip.Addr{}, ErrNoGateway
}

// guessGateway returns the .1 of the first private IPv4 /8-/30 network on
// an interface that is up and not loopback.
func guessGateway() (netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: list interfaces: %w", err)
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			p, ok := netip.AddrFromSlice(n.IP)
			ones, _ := n.Mask.Size()
			if !ok || !p.Unmap().Is4() || !p.IsPrivate() || ones < 8 || ones > 30 {
				continue
			}
			return netip.PrefixFrom(p.Unmap(), ones).Masked().Addr().Next(), nil
		}
	}
	return netip.Addr{}, ErrNoGateway
}
